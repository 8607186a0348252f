"""Whether V^c stays alive in LSPC's first critic steps: the paper's loss against the code's.

    python scripts/cost_value_fate.py --tasks DroneRun,BallRun [--seeds 0,1,2] [--steps 2000]
        [--every 250] [--methods LSPC,LSPC-code]

The authors' code clamps V^c at 0 inside V^c's own expectile loss (lspc_iql.py:480; LSPC-code's
`clamp_vc_in_loss`), so a state whose raw V^c falls below 0 sends it no gradient again. Where
that happens on every state, V^c is 0 for good, Q^c's target is the one-step cost, and the cost
weights w_c = exp(lambda (V^c - Q^c)) never exceed 1. This trains each method's critics alone
(their updates read nothing of the CVAE or the encoder, so the critics follow the very path
they take in a full run of the same seed) on a task's `study` data (BENCH_LOCAL_DATA_DIR) and
prints, at the start and every `--every` steps, on a fixed draw of 4,096 of the data's states: the share whose
raw V^c is above 0, the raw V^c's mean, and the mean of the clamped twin-max Q^c target.
Each run is seeded as `bench run` seeds its job, so its critics are the job's: a dead V^c
here is a dead V^c there. A minute or two per 1,000 steps on one core; `--steps 0` shows
the initial networks alone, at once, e.g. over many seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algorithms import get_method  # noqa: E402
from algorithms.base import build_config  # noqa: E402
from bench.streams import seed_everything  # noqa: E402
from tasks.datasets import DatasetError, local_path, read_dsrl_file  # noqa: E402
from tasks.registry import get_task  # noqa: E402
from tasks.samplers import BatchSampler  # noqa: E402

PROBE = 4096


def probe(method, states: torch.Tensor, sa: torch.Tensor) -> tuple[float, float, float]:
    """(share of states with raw V^c > 0, raw V^c mean, clamped twin-max Q^c target mean)."""
    with torch.no_grad():
        vc = method.v_ens(states).squeeze(-1)[1]
        qc = method.q_target(sa).squeeze(-1)[2:].max(0).values.clamp(min=0.0)
    return float((vc > 0).float().mean()), float(vc.mean()), float(qc.mean())


def build(name: str, task: str, seed: int):
    """The method, untrained, seeded as `bench run` seeds a job before building it."""
    _, cls = get_method(name)
    spec = get_task(task)
    seed_everything(seed)
    return cls.create(spec, build_config(cls, spec.name), None, seed, "cpu")


def critic_path(method, arrays: dict, steps: int, every: int):
    """[(step, share alive, V^c mean, Q^c mean)] of the method's critics trained alone."""
    data = method.training_data(arrays)
    sampler = BatchSampler(data, method.config.batch_size, method.seed, "cpu")
    pick = np.random.default_rng(0).choice(len(data["rewards"]), PROBE, replace=False)
    states = torch.as_tensor(data["observations"][pick])
    sa = torch.cat([states, torch.as_tensor(data["actions"][pick])], -1)
    path = [(0, *probe(method, states, sa))]
    for step in range(1, steps + 1):
        method.train_critics(sampler.sample())
        if step % every == 0:
            path.append((step, *probe(method, states, sa)))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--methods", default="LSPC,LSPC-code")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        methods = [get_method(m)[0] for m in args.methods.split(",")]
        specs = [get_task(t) for t in args.tasks.split(",")]
    except (ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.steps < 0 or args.every < 1:
        print("error: --steps is a step count (0: the initial networks only) and --every a "
              "positive one", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    for spec in specs:
        try:
            arrays, _ = read_dsrl_file(local_path(spec, "study"), spec)
        except (DatasetError, OSError) as err:
            print(f"error: {spec.name}: {err} (BENCH_LOCAL_DATA_DIR names the folder of "
                  f"<Task>-local-study.hdf5)", file=sys.stderr)
            return 2
        for name in methods:
            for seed in seeds:
                print(f"{spec.name} {name} seed {seed}: step, share of states with V^c > 0, "
                      "V^c mean (raw), Q^c target mean", flush=True)
                method = build(name, spec.name, seed)
                for step, alive, vc, qc in critic_path(method, arrays, args.steps, args.every):
                    print(f"  {step:6d}  {alive:6.1%}  {vc:+8.4f}  {qc:8.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
