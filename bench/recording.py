"""A record assembled: the job that trained, its evaluation at one threshold (seeded by the
job and threshold alone), its training, and where it came from. bench.records reads and
writes records; this module fills them."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np

from bench.evaluate import evaluate_policy
from bench.plan import Job
from bench.records import SCHEMA, provenance, utc_now, write_json_atomic
from bench.streams import own_random_streams
from bench.train import TrainResult


def eval_seed(job: Job, threshold_index: int) -> int:
    """Evaluation episodes are seeded: a different block of env seeds per (seed, threshold)."""
    return 1_000_000 + 10_000 * job.seed + 1_000 * threshold_index


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
    with own_random_streams(seed):  # evaluate_policy builds its simulators and closes them
        episodes = evaluate_policy(method.act, spec, job.eval_episodes, seed,
                                   reset=method.reset, threshold=threshold,
                                   observe=method.observe)
    norm_r, norm_c = spec.normalize(np.asarray(episodes["reward_returns"]),
                                    np.asarray(episodes["cost_returns"]), threshold)
    return {
        "schema": SCHEMA, "status": "ok", "task": spec.name, "suite": spec.suite,
        "trained_as": job.method, "threshold": threshold, "seed": job.seed,
        "profile": job.profile, "config": job.config, "config_hash": job.job_hash,
        "steps": job.steps, "variant": job.variant, **method.record_fields(),
        "train_threshold": job.train_threshold, "data_source": job.data_source,
        "dataset_file": Path(job.data_path).name, "dataset_sha256": job.data_sha256,
        "dataset_arrays_sha256": job.data_arrays_sha256,
        "eval_episodes": job.eval_episodes, "eval_seed": seed, **episodes,
        "normalized_rewards": norm_r.tolist(), "normalized_costs": norm_c.tolist(),
        "normalized_reward": float(norm_r.mean()), "normalized_cost": float(norm_c.mean()),
        "eval_seconds": time.time() - t0, "worker": worker_name(), "device": job.options.device,
        # a record without it is fp32, as every record before precision existed
        **({"precision": job.precision} if job.precision != "fp32" else {}),
        "created": utc_now(), "provenance": provenance(),
    }


def record_evaluation(job: Job, spec, method, threshold: float, name: str, run_dir: Path,
                      data_attrs: dict, trained: TrainResult, started: float) -> str:
    """Evaluate the method's policy `name` at `threshold` and write its record; returns the
    record's path (an earlier error record of it is removed)."""
    seed = eval_seed(job, list(spec.thresholds).index(threshold))
    record = {"method": name, **evaluation_fields(job, spec, method, threshold, seed),
              "dataset_attrs": data_attrs, "final_train_stats": trained.final_stats,
              "train_seconds": trained.seconds, "resumed_from_step": trained.resumed_from,
              "cuda_graph": trained.cuda_graph,
              "wall_seconds": time.time() - started,
              "artifacts": str(run_dir.relative_to(job.options.results))}
    path = write_json_atomic(job.record_path(threshold, name), record)
    job.error_path(threshold, name).unlink(missing_ok=True)
    return str(path)
