"""Running one job: load data, build the method, train, checkpoint, evaluate, write records.

Runs inside a joblib worker; everything it needs is in the Job, so a record can be reproduced
from its own fields.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import os
import random
import socket
import time
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from algorithms import get_method, load_method_module
from bench.evaluate import evaluate_policy
from bench.graphs import GraphedTrainStep, training_step
from bench.locks import JobLock
from bench.plan import Job, job_fields
from bench.profiles import PROFILES
from bench.records import SCHEMA, provenance, utc_now, write_json_atomic
from tasks.datasets import file_sha256, read_dsrl_file, split_trajectories, to_go
from tasks.envs import make_vector_env
from tasks.registry import get_task


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def eval_seed(job: Job, threshold_index: int) -> int:
    """Evaluation episodes are seeded: a different block of env seeds per (seed, threshold)."""
    return 1_000_000 + 10_000 * job.seed + 1_000 * threshold_index


class BatchSampler:
    """Uniform minibatches of transitions, held as tensors on the training device."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int, device: str):
        self.tensors = {k: torch.as_tensor(v, device=device) for k, v in arrays.items()}
        self.size = len(arrays["rewards"])
        self.batch_size = batch_size
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self) -> dict[str, torch.Tensor]:
        index = torch.randint(self.size, (self.batch_size,), generator=self.generator,
                              device=self.generator.device)
        return {k: v[index] for k, v in self.tensors.items()}


class SequenceSampler:
    """Minibatches of windows of `seq_len` consecutive steps of one trajectory, as OSRL's
    SequenceDataset (for sequence models, `wants == "sequences"`).

    A trajectory is drawn with probability proportional to `trajectory_weights` (one weight per
    trajectory of tasks.datasets.split_trajectories, in data order; None: uniform, as OSRL
    without cost_sample), then a start index uniformly within it; the window runs forward
    from there and is padded with zeros past the trajectory's end (mask 0), so no window
    crosses a trajectory boundary. Returns-to-go and costs-to-go are undiscounted sums from
    each step to the end of its trajectory, unscaled (the method scales them), or the arrays'
    own "returns_to_go" / "costs_to_go" where given (relabelled trajectories); timesteps are
    start + 0..seq_len-1, padded positions included, as OSRL.

    Batch: observations (B, T, obs), actions (B, T, act), returns_to_go, costs_to_go, costs
    (B, T) float; timesteps (B, T) long; mask (B, T) float, 1 on real steps.
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int, device: str,
                 seq_len: int, trajectory_weights: np.ndarray | None = None):
        trajectories = split_trajectories(arrays)
        starts, ends = trajectories.starts, trajectories.ends
        lengths = ends - starts
        costs = np.asarray(arrays["costs"], np.float32)
        # relabelled trajectories (CDT's augmentation) bring their own; else from the data
        returns_to_go = arrays.get("returns_to_go")
        if returns_to_go is None:
            returns_to_go = to_go(arrays["rewards"], trajectories)
        costs_to_go = arrays.get("costs_to_go")
        if costs_to_go is None:
            costs_to_go = to_go(costs, trajectories)
        as_tensor = functools.partial(torch.as_tensor, device=device)
        self.tensors = {
            "observations": as_tensor(np.asarray(arrays["observations"], np.float32)),
            "actions": as_tensor(np.asarray(arrays["actions"], np.float32)),
            "returns_to_go": as_tensor(np.asarray(returns_to_go, np.float32)),
            "costs_to_go": as_tensor(np.asarray(costs_to_go, np.float32)),
            "costs": as_tensor(costs),
        }
        self.starts = as_tensor(starts, dtype=torch.long)
        self.lengths = as_tensor(lengths, dtype=torch.long)
        self.offsets = torch.arange(seq_len, device=device)
        if trajectory_weights is not None:
            weights = np.asarray(trajectory_weights, np.float64)
            if weights.shape != (len(starts),) or not (weights >= 0).all() or weights.sum() <= 0:
                raise ValueError("trajectory_weights: one non-negative weight per trajectory, "
                                 "not all zero")
            trajectory_weights = as_tensor(weights / weights.sum(), dtype=torch.float64)
        self.weights = trajectory_weights
        self.batch_size, self.seq_len = batch_size, seq_len
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def sample(self) -> dict[str, torch.Tensor]:
        device = self.generator.device
        if self.weights is None:
            traj = torch.randint(len(self.starts), (self.batch_size,), generator=self.generator,
                                 device=device)
        else:
            traj = torch.multinomial(self.weights, self.batch_size, replacement=True,
                                     generator=self.generator)
        length = self.lengths[traj]
        start = (torch.rand(self.batch_size, generator=self.generator, device=device,
                            dtype=torch.float64) * length).long().clamp(max=length - 1)
        steps = start[:, None] + self.offsets  # (B, T) steps within the trajectory
        valid = steps < length[:, None]
        index = self.starts[traj][:, None] + torch.minimum(steps, length[:, None] - 1)
        mask = valid.float()
        batch = {}
        for key, value in self.tensors.items():
            picked = value[index]
            batch[key] = picked * (mask if picked.dim() == 2 else mask[..., None])
        batch["timesteps"] = steps
        batch["mask"] = mask
        return batch


def make_sampler(method, arrays, batch_size: int, seed: int, device: str):
    """The sampler a method trains on: transitions, or sequences with the method's options."""
    if getattr(method, "wants", "transitions") == "sequences":
        return SequenceSampler(arrays, batch_size, seed, device,
                               **method.sequence_options(arrays))
    return BatchSampler(arrays, batch_size, seed, device)


class NonFiniteLoss(RuntimeError):
    """A training statistic turned NaN or infinite: the job fails with the step it reached."""

    def __init__(self, step: int, names: list[str]):
        super().__init__(f"{', '.join(names)} not finite at step {step:,}")
        self.step = step


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(state: dict) -> None:
    # generator states are CPU byte tensors whatever the device; a checkpoint loaded with
    # map_location="cuda" carries them onto the GPU, where set_rng_state refuses them
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


PROGRESS_SECONDS = 2.0
"""the longest a job's progress file lags its training step"""


def _write_progress(run_dir: Path, **fields) -> None:
    """What `bench status` and the progress bars read: the step reached, the last checkpoint."""
    tmp = run_dir / "progress.json.tmp"
    tmp.write_text(json.dumps({**fields, "updated": time.time()}))
    os.replace(tmp, run_dir / "progress.json")


def train(method, arrays, steps: int, batch_size: int, seed: int, device: str, log_every: int,
          run_dir: Path, evaluate=None, eval_every: int = 0, checkpoint_every: int = 0,
          status: dict | None = None, tensorboard: bool = False,
          checkpoint_seconds: float = 0.0) -> tuple[dict, int]:
    """`steps` gradient steps; returns (the last logged stats, the step it resumed from).

    The training curve (mean stats per log window, and what `evaluate()` returns every
    `eval_every` steps) is rewritten to run_dir/curve.csv at each log point. Every
    `checkpoint_every` steps the whole training state (the method's state_dict, the sampler's
    and every global random generator's state, the curve so far) goes to run_dir/training.pt,
    atomically, and also after any step that ends `checkpoint_seconds` or more of wall time
    after the last save; a later call resumes there and reaches the same final state as an
    uninterrupted run. With `tensorboard`, the same points also go to run_dir/tensorboard.
    A non-finite logged statistic raises NonFiniteLoss. `status["step"]`
    follows the step reached (for the error record). A method that trains itself (an
    external process) reports its own points through `fit`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    curve_path = run_dir / "curve.csv"
    rows: dict[int, dict] = {}
    last = {}
    status = {} if status is None else status
    if getattr(method, "trains_itself", False):
        for step, stats in method.fit(arrays, steps, seed, log_every, curve_path.parent):
            rows[step] = {"step": step, **stats}
            last = stats
            status["step"] = step
        _write_curve(rows, curve_path)
        return last, 0
    sampler = make_sampler(method, arrays, batch_size, seed, device)
    window: dict[str, list] = defaultdict(list)
    partial = run_dir / "training.pt"
    first, resumed_from, seconds_before, started = 1, 0, 0.0, time.time()
    if partial.exists():
        saved = torch.load(partial, map_location=device, weights_only=False)
        method.load_state_dict(saved["method"])
        sampler.generator.set_state(saved["sampler"].cpu())
        _set_rng_state(saved["rng"])
        rows, last = saved["rows"], saved["last"]
        window = defaultdict(list, saved["window"])
        resumed_from, seconds_before = saved["step"], saved["seconds"]
        first = resumed_from + 1
    status["resumed_from"], status["seconds_before"] = resumed_from, seconds_before
    _write_progress(run_dir, step=resumed_from, steps=steps, checkpoint_step=resumed_from)
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=first)
    last_checkpoint, last_save = resumed_from, time.time()
    last_progress = last_save
    train_step = training_step(method, device)  # a CUDA graph's replay where it can be
    status["cuda_graph"] = isinstance(train_step, GraphedTrainStep)
    for step in range(first, steps + 1):
        stats = train_step(sampler.sample())
        for key, value in stats.items():
            window[key].append(value)
        logged = step % log_every == 0 or step == steps
        if logged:
            last = {k: float(torch.stack([torch.as_tensor(v) for v in vs]).float().mean())
                    for k, vs in window.items()}
            window.clear()
            status["step"] = step
            bad = [k for k, v in last.items() if not math.isfinite(v)]
            if bad:
                raise NonFiniteLoss(step, bad)
            rows.setdefault(step, {"step": step}).update(last)
        if evaluate is not None and eval_every and step % eval_every == 0:
            rows.setdefault(step, {"step": step}).update(evaluate(step))
        if logged:
            _write_curve(rows, curve_path)
            if writer is not None:
                for key, value in rows.get(step, {}).items():
                    if key != "step":
                        writer.add_scalar(key, value, step)
                writer.flush()
        checkpointed = step < steps and bool(
            (checkpoint_every and step % checkpoint_every == 0)
            or (checkpoint_seconds and time.time() - last_save >= checkpoint_seconds))
        if checkpointed:
            tmp = partial.with_suffix(".tmp")
            torch.save({"step": step, "method": method.state_dict(),
                        "sampler": sampler.generator.get_state(), "rng": _rng_state(),
                        "rows": rows, "last": last, "window": dict(window),
                        "seconds": seconds_before + time.time() - started}, tmp)
            os.replace(tmp, partial)
            last_checkpoint, last_save = step, time.time()
        # the bars of `bench run` and `bench status` read this file; slow steps need more
        # than the log points to show movement
        if checkpointed or logged or time.time() - last_progress >= PROGRESS_SECONDS:
            _write_progress(run_dir, step=step, steps=steps, checkpoint_step=last_checkpoint)
            last_progress = time.time()
    if writer is not None:
        writer.close()
    return last, resumed_from


def _write_curve(rows: dict[int, dict], curve_path: Path) -> None:
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    if rows:
        fields = list(dict.fromkeys(k for row in rows.values() for k in row))
        with open(curve_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows[s] for s in sorted(rows))


def curve_evaluator(method, spec, policies: tuple[str, ...], episodes: int, seed: int = 0):
    """Mean raw reward and cost returns of each policy, for the training curves (Fig. 2); a
    prompted method (CDT) is prompted with the task's lowest threshold.

    An evaluation in the middle of training leaves training's random streams as it found
    them (as does building its simulators): it draws from its own, seeded from (job seed,
    step), and restores torch's (CPU and CUDA), NumPy's and Python's global generators
    afterwards. So a job trains the same with
    or without curves, and different seeds stay independent after an evaluation."""
    def own_streams(step: int):
        return own_random_streams(int(np.random.SeedSequence([seed, step]).generate_state(1)[0]))

    with own_streams(0):  # building a simulator may draw from NumPy's global generator
        envs = make_vector_env(spec, episodes)

    def evaluate(step: int) -> dict:
        with own_streams(step):
            return _evaluate_curve_point(step)

    def _evaluate_curve_point(step: int) -> dict:
        out = {}
        for name in policies or (None,):
            if name is not None:
                method.policy = name
            episodes_ = evaluate_policy(method.act, spec, episodes, 2_000_000 + step,
                                        reset=method.reset, envs=envs,
                                        threshold=spec.thresholds[0], observe=method.observe)
            prefix = f"{name}/" if name else "eval/"
            out[prefix + "reward_return"] = float(np.mean(episodes_["reward_returns"]))
            out[prefix + "cost_return"] = float(np.mean(episodes_["cost_returns"]))
        return out

    return evaluate, envs


@contextlib.contextmanager
def own_random_streams(seed: int):
    """Inside: every global generator (torch CPU and CUDA, NumPy, Python) seeded with `seed`;
    after: each back in the state it had before, whatever was drawn inside."""
    saved = _rng_state()
    try:
        torch.manual_seed(seed)  # seeds the CUDA generators too
        np.random.seed(seed)
        random.seed(seed)
        yield
    finally:
        _set_rng_state(saved)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(job: Job, threads: int = 1) -> dict:
    """Train (or resume, or reload) and evaluate one job under its lock; returns a summary,
    never raises. A job another live process holds is left to it ("busy")."""
    started = time.time()
    if not job.missing():
        return {"job": job.label, "status": "skipped", "paths": []}
    with JobLock(job.lock_path()) as held:
        if not held:
            return {"job": job.label, "status": "busy", "paths": []}
        missing = job.missing()  # another process may have finished it since we planned
        if not missing:
            return {"job": job.label, "status": "skipped", "paths": []}
        status: dict = {}
        threads_before = torch.get_num_threads()
        try:
            torch.set_num_threads(threads)
            return _execute(job, missing, started, status)
        except Exception as err:  # recorded, reported by the scheduler, never silent
            trace = traceback.format_exc()
            step = getattr(err, "step", status.get("step"))
            for threshold, name in missing:
                write_json_atomic(job.error_path(threshold, name), {
                    "schema": SCHEMA, "status": "error", "job": job_fields(job),
                    "error": f"{type(err).__name__}: {err}", "traceback": trace,
                    "step": step, "worker": worker_name(), "created": utc_now()},
                    overwrite=True)
            return {"job": job.label, "status": "error", "paths": [], "step": step,
                    "error": f"{type(err).__name__}: {err}"}
        finally:  # a job run in the caller's process leaves its thread count as it was
            torch.set_num_threads(threads_before)


def build_method(job: Job, spec):
    """The job's method, built from its recorded config (untrained), in the job's precision."""
    if job.method_module:  # a method from outside the repository: register it in this worker
        load_method_module(job.method_module, replace=True)  # the planner checked its name
    cls, config = job.method_config()
    method = cls.create(spec, config, job.train_threshold, job.seed, job.device)
    method.set_precision(job.precision)
    return method


def _execute(job: Job, missing: list[tuple[float, str]], started: float, status: dict) -> dict:
    spec = get_task(job.task)
    if file_sha256(Path(job.data_path)) != job.data_sha256:
        raise RuntimeError(f"{job.data_path} changed since the run was planned; plan again")
    arrays, data_attrs = read_dsrl_file(Path(job.data_path), spec)
    seed_everything(job.seed)
    method = build_method(job, spec)
    config = method.config

    run_dir = job.run_dir()
    checkpoint = run_dir / "checkpoint.pt"
    train_seconds, resumed_from, cuda_graph = 0.0, 0, False
    final_stats: dict = {}
    if checkpoint.exists():  # trained before, interrupted during evaluation: don't retrain
        saved = torch.load(checkpoint, map_location=job.device, weights_only=False)
        method.load_state_dict(saved["state"])
        final_stats, train_seconds = saved["final_stats"], saved["train_seconds"]
        resumed_from = saved.get("resumed_from", 0)
        cuda_graph = saved.get("cuda_graph", False)
    else:
        data = method.training_data(arrays)
        t0 = time.time()
        evaluate, curve_envs = None, None
        if job.eval_every and not getattr(method, "trains_itself", False):
            evaluate, curve_envs = curve_evaluator(method, spec, job.policies,
                                                   PROFILES[job.profile].curve_episodes,
                                                   job.seed)
        try:
            final_stats, resumed_from = train(
                method, data, job.steps, config.batch_size, job.seed, job.device,
                PROFILES[job.profile].log_every, run_dir, evaluate, job.eval_every,
                job.checkpoint_every, status, job.tensorboard, job.checkpoint_seconds)
        finally:
            if curve_envs is not None:
                curve_envs.close()
        train_seconds = status.get("seconds_before", 0.0) + time.time() - t0
        cuda_graph = status.get("cuda_graph", False)  # as trained, not as this process would
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"state": method.state_dict(), "final_stats": final_stats,
                    "train_seconds": train_seconds, "resumed_from": resumed_from,
                    "cuda_graph": cuda_graph}, tmp)
        os.replace(tmp, checkpoint)
        (run_dir / "training.pt").unlink(missing_ok=True)  # the final state supersedes it

    paths = []
    for threshold, name in missing:
        if job.policies:
            method.policy = name
        paths.append(_evaluate_and_record(job, spec, method, threshold, name, run_dir,
                                          data_attrs, final_stats, train_seconds, started,
                                          resumed_from, cuda_graph))
    return {"job": job.label, "status": "ok", "paths": paths, "resumed_from": resumed_from,
            "seconds": time.time() - started}


def evaluation_fields(job: Job, spec, method, threshold: float, seed: int) -> dict:
    """Evaluate `method` (its current policy) on `spec` at `threshold`: the job's episodes,
    env seeds from `seed`. Returns the fields every record has, main or transfer: what was
    trained (the job), on which data, the episodes and their DSRL-normalized scores.

    The episodes depend on (job, threshold, episode index) only, never on what ran before in
    the process: fresh simulators for each evaluation (a reused one carries its state over;
    Bullet's worlds ignore reset seeds and draw from NumPy's global generator), every global
    generator seeded from `seed` while it runs and given back afterwards. So a run resumed
    between two thresholds writes what an unbroken one writes."""
    t0 = time.time()
    with own_random_streams(seed):
        envs = make_vector_env(spec, job.eval_episodes)
        try:
            episodes = evaluate_policy(method.act, spec, job.eval_episodes, seed,
                                       reset=method.reset, envs=envs, threshold=threshold,
                                       observe=method.observe)
        finally:
            envs.close()
    norm_r, norm_c = spec.normalize(np.asarray(episodes["reward_returns"]),
                                    np.asarray(episodes["cost_returns"]), threshold)
    return {
        "schema": SCHEMA, "status": "ok", "task": spec.name, "suite": spec.suite,
        "trained_as": job.method, "threshold": threshold, "seed": job.seed,
        "profile": job.profile, "config": job.config, "config_hash": job.job_hash,
        "steps": job.steps, "variant": job.variant, **method.record_fields(),
        "train_threshold": job.train_threshold, "data_source": job.data_source,
        "dataset_file": Path(job.data_path).name, "dataset_sha256": job.data_sha256,
        "eval_episodes": job.eval_episodes, "eval_seed": seed, **episodes,
        "normalized_rewards": norm_r.tolist(), "normalized_costs": norm_c.tolist(),
        "normalized_reward": float(norm_r.mean()), "normalized_cost": float(norm_c.mean()),
        "eval_seconds": time.time() - t0, "worker": worker_name(), "device": job.device,
        # a record without it is fp32, as every record before precision existed
        **({"precision": job.precision} if job.precision != "fp32" else {}),
        "created": utc_now(), "provenance": provenance(),
    }


def _evaluate_and_record(job, spec, method, threshold, name, run_dir, data_attrs,
                         final_stats, train_seconds, started, resumed_from=0,
                         cuda_graph=False) -> str:
    seed = eval_seed(job, list(spec.thresholds).index(threshold))
    record = {"method": name, **evaluation_fields(job, spec, method, threshold, seed),
              "dataset_attrs": data_attrs, "final_train_stats": final_stats,
              "train_seconds": train_seconds, "resumed_from_step": resumed_from,
              "cuda_graph": cuda_graph,
              "wall_seconds": time.time() - started,
              "artifacts": str(run_dir.relative_to(job.results))}
    path = write_json_atomic(job.record_path(threshold, name), record)
    job.error_path(threshold, name).unlink(missing_ok=True)
    return str(path)
