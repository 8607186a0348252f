"""Training-step speed: steps/s and achieved GFLOP/s of a method on a synthetic dataset.

FLOPs are counted with torch.utils.flop_counter on one step (matmuls and convolutions, the
work that dominates these MLPs). For LSPC the straightforward step (algorithms/
lspc_reference.py) is timed in the same run, interleaved with the fused one, so the ratio
survives a noisy shared machine. The machine's fp32 matmul peak is measured too.

With precision "bf16" our step in bf16 (algorithms/nets.py, "Precision") is timed beside the
same method's fp32 step (a second model from the same weights) and the fp32 reference, all
interleaved in one run; the bf16 matmul peak is measured beside the fp32 one.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from algorithms import build_config, get_method
from bench import osrl_reference
from bench.graphs import training_step, uses_cuda_graph
from tasks.samplers import make_sampler
from tasks.registry import get_task


def synthetic_arrays(spec, size: int = 50_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Random transitions with the task's shapes (speed does not depend on the values)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(size, spec.obs_dim)).astype(np.float32)
    return {"observations": obs, "next_observations": np.roll(obs, -1, axis=0),
            "actions": rng.uniform(-1, 1, (size, spec.act_dim)).astype(np.float32),
            "rewards": rng.normal(size=size).astype(np.float32),
            "costs": (rng.random(size) < 0.1).astype(np.float32),
            "terminals": np.zeros(size, np.float32),
            "timeouts": (np.arange(size) % spec.max_episode_steps == 0).astype(np.float32)}


def count_flops(step, batch) -> float:
    """FLOPs of one step. The counter sees only the calling thread, so a method that spreads
    its step over threads (LSPC's parallel_updates) is counted in its serial form: the same
    operations, run one after the other."""
    owner = getattr(step, "__self__", None)
    parallel = getattr(owner, "parallel_updates", False)
    if parallel:
        owner.parallel_updates = False
    try:
        with FlopCounterMode(display=False) as counter:
            step(batch)
    finally:
        if parallel:
            owner.parallel_updates = True
    return float(counter.get_total_flops())


def matmul_peak_gflops(size: int = 2048, repeats: int = 10,
                       dtype: torch.dtype = torch.float32) -> float:
    """Best GEMM throughput on the CPU with the current thread count (fp32, or `dtype`), on
    square matrices of `size`, or of the first side from 256 up whose product takes over
    0.1 s: a processor without bf16 arithmetic takes a minute for one 2048 product in bf16."""
    side = min(size, 256)
    while True:
        a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
        t0 = time.perf_counter()
        torch.mm(a, b)  # the first product also warms the kernel up
        if side >= size or time.perf_counter() - t0 > 0.1:
            break
        side *= 2
    size = side
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def bf16_matmul_slowdown(size: int = 256, repeats: int = 5) -> float:
    """How many times longer a bf16 matmul takes than an fp32 one on this CPU (best of
    `repeats`, one small GEMM each): below 1 where the processor has bfloat16 arithmetic (AMX,
    AVX512-BF16), near 1 where oneDNN converts on AVX-512, and 50 to 100 where torch falls back
    to a scalar loop (an AVX2-only processor; docs/performance.md, Precision). On one thread:
    threads that wait for a busy core would slow the fp32 matmul by more than the ratio."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return (matmul_peak_gflops(size, repeats) /
                matmul_peak_gflops(size, repeats, dtype=torch.bfloat16))
    finally:
        torch.set_num_threads(threads)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _time_steps(step, sampler, steps: int, device: str = "cpu") -> float:
    """Seconds for `steps` steps. On a GPU the kernels run behind the Python loop, so the
    clock stops only when the queue has drained; else it times the launches."""
    batches = [sampler.sample() for _ in range(steps)]
    _synchronize(device)
    t0 = time.perf_counter()
    for batch in batches:
        step(batch)
    _synchronize(device)
    return time.perf_counter() - t0


def contenders(method: str = "LSPC", task: str = "AntRun", batch_size: int | None = None,
               device: str = "cpu", reference: bool = True, precision: str = "fp32"):
    """(method name, config, sampler, {"fused": our step, and the others}) on synthetic data
    of the task's shapes. The reference: LSPC's straightforward step, or osrl-lib's step of
    the same baseline where osrl-lib is installed (on the CPU only), both fp32. In bf16, "fused"
    is our bf16 step and "fp32" our fp32 step of the same method. batch_size None: the
    method's own."""
    spec = get_task(task)
    name, cls = get_method(method)
    config = build_config(cls, spec.name)
    if batch_size is not None and "batch_size" in {f.name for f in dataclasses.fields(config)}:
        config = dataclasses.replace(config, batch_size=batch_size)
    batch_size = getattr(config, "batch_size", batch_size or 1024)
    cls.check_precision(config, precision)
    torch.manual_seed(0)
    threshold = None if cls.threshold_agnostic else spec.thresholds[0]

    def build(precision_of_copy: str, like=None):
        # a second model takes the first one's state: what training_data kept (COptiDICE's
        # statistics) and the weights, but never its optimizer state objects
        model = cls(spec, config, threshold, 0, device)
        model.set_precision(precision_of_copy)
        if like is not None:
            model.load_state_dict(like.state_dict())
        return model

    model = build(precision)
    # the method's own view of the data (a filter, statistics such as COptiDICE's, sequences)
    sampler = make_sampler(model, model.training_data(synthetic_arrays(spec)), batch_size, 0,
                           device)
    others = {}
    if uses_cuda_graph(model, device):
        # the runner replays this step from a CUDA graph: time that, beside the same step run
        # eagerly by a second model (the two must not share optimizer state)
        others["eager"] = build(precision, model).train_step
    if precision != "fp32":  # the same method in fp32, as the runner would run it
        others["fp32"] = training_step(build("fp32", model), device)
    steps = {"fused": training_step(model, device), **others}
    if reference and name == "LSPC":
        from algorithms.lspc_reference import ReferenceLSPC

        steps["reference"] = ReferenceLSPC(spec.obs_dim, spec.act_dim, config,
                                           device).train_step
    elif (reference and device == "cpu" and name in osrl_reference.OSRL_CLASSES
          and osrl_reference.available()):
        # on a GPU, osrl-lib's step is not timed: the oracle is installed and checked on CPU
        steps["osrl"] = osrl_reference.reference_step(name, spec, config, threshold, model)
    return name, config, sampler, steps


def measure(method: str = "LSPC", task: str = "AntRun", batch_size: int | None = None,
            steps: int = 20, rounds: int = 3, device: str = "cpu", threads: int | None = None,
            reference: bool = True, precision: str = "fp32") -> dict:
    if threads:
        torch.set_num_threads(threads)
    name, _, sampler, steps_of = contenders(method, task, batch_size, device, reference,
                                            precision)
    spec = get_task(task)
    batch_size = sampler.batch_size
    flops = {}
    for key, step in steps_of.items():
        for _ in range(getattr(step, "calls_to_warm", 2)):  # allocator, lazy init, capture
            step(sampler.sample())
        # a graph replay hides its operations from the counter: count the step it replays
        flops[key] = count_flops(getattr(step, "eager", step), sampler.sample())
    seconds = {key: [] for key in steps_of}
    for _ in range(rounds):  # interleaved, so both see the same machine load
        for key, step in steps_of.items():
            seconds[key].append(_time_steps(step, sampler, steps, device) / steps)
    result = {"method": name, "task": spec.name, "batch_size": batch_size, "device": device,
              "precision": precision, "threads": torch.get_num_threads(),
              "steps_timed": steps * rounds}
    for key in steps_of:
        per_step = float(np.median(seconds[key]))
        prefix = "" if key == "fused" else key + "_"
        result[prefix + "steps_per_s"] = 1.0 / per_step
        result[prefix + "gflop_per_step"] = flops[key] / 1e9
        result[prefix + "gflop_per_s"] = flops[key] / 1e9 / per_step
    for key in sorted(set(steps_of) - {"fused"}):
        # ours against the other implementation of the same step, timed in the same run
        result[f"speedup_vs_{key}"] = result["steps_per_s"] / result[key + "_steps_per_s"]
        result[f"speedup_gflop_per_s_vs_{key}"] = (result["gflop_per_s"]
                                                   / result[key + "_gflop_per_s"])
    for key in sorted(set(steps_of) - {"fused", "fp32"}):
        if "fp32" in steps_of:  # and our fp32 step against the reference, in the same run
            result[f"fp32_speedup_vs_{key}"] = (result["fp32_steps_per_s"]
                                                / result[key + "_steps_per_s"])
    if device == "cpu":
        result["matmul_peak_gflop_per_s"] = matmul_peak_gflops()
        peak = result["matmul_peak_gflop_per_s"]
        if precision == "bf16":
            result["bf16_matmul_peak_gflop_per_s"] = peak = matmul_peak_gflops(
                dtype=torch.bfloat16)
        result["fraction_of_peak"] = result["gflop_per_s"] / peak  # of its own precision's
    return result


def quick_steps_per_s(method: str, task: str, steps: int = 3, device: str = "cpu",
                      precision: str = "fp32") -> float:
    """A rough one-thread steps/s (one warm-up step, then the fastest of `steps` timed one by
    one; no FLOP count, no reference), for time estimates. The fastest, not the mean: the
    estimate is for the machine's own speed, and a step slowed by another process's burst
    would make a dry run on a busy machine predict many times the real time. Kept in the
    speed cache (bench.estimate)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, _, sampler, steps_of = contenders(method, task, device=device, reference=False,
                                             precision=precision)
        step = steps_of["fused"]
        for _ in range(getattr(step, "calls_to_warm", 1)):
            step(sampler.sample())
        return 1.0 / min(_time_steps(step, sampler, 1, device) for _ in range(steps))
    finally:
        torch.set_num_threads(threads)
