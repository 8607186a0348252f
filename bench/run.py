"""Running one job: load data, build the method, train, checkpoint, evaluate, write records.

Runs inside a joblib worker; everything it needs is in the Job, so a record can be reproduced
from its own fields.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import time
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from algorithms import get_method, load_method_module
from bench.evaluate import evaluate_policy
from bench.plan import Job
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


def train(method, arrays, steps: int, batch_size: int, seed: int, device: str, log_every: int,
          curve_path: Path, evaluate=None, eval_every: int = 0) -> dict:
    """`steps` gradient steps; the training curve (mean stats per log window, and what
    `evaluate()` returns every `eval_every` steps) goes to a CSV. A method that trains itself
    (an external process) reports its own points through `fit`."""
    rows: dict[int, dict] = {}
    last = {}
    if getattr(method, "trains_itself", False):
        for step, stats in method.fit(arrays, steps, seed, log_every, curve_path.parent):
            rows[step] = {"step": step, **stats}
            last = stats
        _write_curve(rows, curve_path)
        return last
    sampler = make_sampler(method, arrays, batch_size, seed, device)
    window: dict[str, list] = defaultdict(list)
    for step in range(1, steps + 1):
        stats = method.train_step(sampler.sample())
        for key, value in stats.items():
            window[key].append(value)
        if step % log_every == 0 or step == steps:
            last = {k: float(torch.stack([torch.as_tensor(v) for v in vs]).float().mean())
                    for k, vs in window.items()}
            rows.setdefault(step, {"step": step}).update(last)
            window.clear()
        if evaluate is not None and eval_every and step % eval_every == 0:
            rows.setdefault(step, {"step": step}).update(evaluate(step))
    _write_curve(rows, curve_path)
    return last


def _write_curve(rows: dict[int, dict], curve_path: Path) -> None:
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    if rows:
        fields = list(dict.fromkeys(k for row in rows.values() for k in row))
        with open(curve_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows[s] for s in sorted(rows))


def curve_evaluator(method, spec, policies: tuple[str, ...], episodes: int):
    """Mean raw reward and cost returns of each policy, for the training curves (Fig. 2); a
    prompted method (CDT) is prompted with the task's lowest threshold."""
    envs = make_vector_env(spec, episodes)

    def evaluate(step: int) -> dict:
        out = {}
        for name in policies or (None,):
            if name is not None:
                method.policy = name
            torch.manual_seed(step)
            episodes_ = evaluate_policy(method.act, spec, episodes, 2_000_000 + step,
                                        reset=method.reset, envs=envs,
                                        threshold=spec.thresholds[0], observe=method.observe)
            prefix = f"{name}/" if name else "eval/"
            out[prefix + "reward_return"] = float(np.mean(episodes_["reward_returns"]))
            out[prefix + "cost_return"] = float(np.mean(episodes_["cost_returns"]))
        return out

    return evaluate, envs


def execute(job: Job, threads: int = 1) -> dict:
    """Train (or reload) and evaluate one job; returns a summary, never raises."""
    started = time.time()
    missing = job.missing()
    if not missing:
        return {"job": job.label, "status": "skipped", "paths": []}
    try:
        torch.set_num_threads(threads)
        return _execute(job, missing, started)
    except Exception as err:  # recorded, reported by the scheduler, never silent
        trace = traceback.format_exc()
        for threshold, name in missing:
            error_path = job.record_path(threshold, name).with_suffix(".error.json")
            write_json_atomic(error_path, {
                "schema": SCHEMA, "status": "error", "job": dataclasses.asdict(job),
                "error": f"{type(err).__name__}: {err}", "traceback": trace,
                "created": utc_now()}, overwrite=True)
        return {"job": job.label, "status": "error", "error": f"{type(err).__name__}: {err}",
                "paths": []}


def _execute(job: Job, missing: list[tuple[float, str]], started: float) -> dict:
    spec = get_task(job.task)
    if file_sha256(Path(job.data_path)) != job.data_sha256:
        raise RuntimeError(f"{job.data_path} changed since the run was planned; plan again")
    arrays, data_attrs = read_dsrl_file(Path(job.data_path), spec)
    if job.method_module:  # a method from outside the repository: register it in this worker
        load_method_module(job.method_module)
    _, cls = get_method(job.method)
    config = cls.Config(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in job.config.items()})
    seed_everything(job.seed)
    method = cls.create(spec, config, job.train_threshold, job.seed, job.device)

    run_dir = job.artifact_dir()
    if job.train_threshold is not None:
        run_dir = run_dir.with_name(run_dir.name + f"-thr{job.train_threshold:g}")
    checkpoint = run_dir / "checkpoint.pt"
    train_seconds = 0.0
    final_stats: dict = {}
    if checkpoint.exists():  # trained before, interrupted during evaluation: don't retrain
        saved = torch.load(checkpoint, map_location=job.device, weights_only=False)
        method.load_state_dict(saved["state"])
        final_stats, train_seconds = saved["final_stats"], saved["train_seconds"]
    else:
        data = method.training_data(arrays)
        t0 = time.time()
        evaluate, curve_envs = None, None
        if job.eval_every and not getattr(method, "trains_itself", False):
            evaluate, curve_envs = curve_evaluator(method, spec, job.policies,
                                                   PROFILES[job.profile].curve_episodes)
        try:
            final_stats = train(method, data, job.steps, config.batch_size, job.seed,
                                job.device, PROFILES[job.profile].log_every,
                                run_dir / "curve.csv", evaluate, job.eval_every)
        finally:
            if curve_envs is not None:
                curve_envs.close()
        train_seconds = time.time() - t0
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"state": method.state_dict(), "final_stats": final_stats,
                    "train_seconds": train_seconds}, tmp)
        os.replace(tmp, checkpoint)

    paths = []
    envs = make_vector_env(spec, job.eval_episodes)  # built once, reseeded per threshold
    try:
        for threshold, name in missing:
            if job.policies:
                method.policy = name
            paths.append(_evaluate_and_record(job, spec, method, envs, threshold, name, run_dir,
                                              data_attrs, final_stats, train_seconds, started))
    finally:
        envs.close()
    return {"job": job.label, "status": "ok", "paths": paths,
            "seconds": time.time() - started}


def _evaluate_and_record(job, spec, method, envs, threshold, name, run_dir, data_attrs,
                         final_stats, train_seconds, started) -> str:
    index = list(spec.thresholds).index(threshold)
    t0 = time.time()
    torch.manual_seed(eval_seed(job, index))  # stochastic policies: same draws on a resume
    episodes = evaluate_policy(method.act, spec, job.eval_episodes, eval_seed(job, index),
                               reset=method.reset, envs=envs, threshold=threshold,
                               observe=method.observe)
    rewards = np.asarray(episodes["reward_returns"])
    costs = np.asarray(episodes["cost_returns"])
    norm_r, norm_c = spec.normalize(rewards, costs, threshold)
    record = {
        "schema": SCHEMA, "status": "ok",
        "method": name, "trained_as": job.method, "task": job.task, "suite": job.suite,
        "threshold": threshold, "seed": job.seed, "profile": job.profile,
        "config": job.config, "config_hash": job.job_hash, "steps": job.steps,
        "variant": job.variant, **method.record_fields(),
        "train_threshold": job.train_threshold,
        "data_source": job.data_source, "dataset_file": Path(job.data_path).name,
        "dataset_sha256": job.data_sha256, "dataset_attrs": data_attrs,
        "eval_episodes": job.eval_episodes, "eval_seed": eval_seed(job, index),
        **episodes,
        "normalized_rewards": norm_r.tolist(), "normalized_costs": norm_c.tolist(),
        "normalized_reward": float(norm_r.mean()), "normalized_cost": float(norm_c.mean()),
        "final_train_stats": final_stats, "train_seconds": train_seconds,
        "eval_seconds": time.time() - t0, "wall_seconds": time.time() - started,
        "artifacts": str(run_dir.relative_to(job.results)),
        "device": job.device, "created": utc_now(), "provenance": provenance(),
    }
    path = write_json_atomic(job.record_path(threshold, name), record)
    job.record_path(threshold, name).with_suffix(".error.json").unlink(missing_ok=True)
    return str(path)
