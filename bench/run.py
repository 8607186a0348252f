"""Running one job: load data, build the method, train, checkpoint, evaluate, write records.

Runs inside a joblib worker; everything it needs is in the Job, so a record can be reproduced
from its own fields. The training loop is bench.train's, the records' contents
bench.recording's.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import torch

from algorithms import load_method_module
from bench.curves import curve_evaluator
from bench.locks import JobLock
from bench.plan import Job, job_fields, recorded_config
from bench.profiles import PROFILES
from bench.recording import record_evaluation, worker_name
from bench.records import SCHEMA, precision_of, utc_now, write_json_atomic
from bench.streams import seed_everything
from bench.train import TrainResult, TrainSchedule, train
from tasks.datasets import file_sha256, read_dsrl_file
from tasks.registry import get_task


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
        threads_before = torch.get_num_threads()
        try:
            torch.set_num_threads(threads)
            return _execute(job, missing, started)
        except Exception as err:  # recorded, reported by the scheduler, never silent
            trace = traceback.format_exc()
            step = getattr(err, "step", None)
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
    return _create(cls, config, spec, job.train_threshold, job.seed, job.options.device,
                   job.precision)


def build_method_from_record(record: dict, spec, device: str = "cpu"):
    """A record's method, untrained, as its job built it: class, config, training threshold,
    seed and precision (to load the run's checkpoint into)."""
    cls, config = recorded_config(record["trained_as"], record["config"])
    return _create(cls, config, spec, record.get("train_threshold"), record["seed"], device,
                   precision_of(record))


def _create(cls, config, spec, threshold, seed, device, precision):
    method = cls.create(spec, config, threshold, seed, device)
    method.set_precision(precision)
    return method


def load_checkpoint(method, checkpoint: Path, device: str = "cpu") -> dict:
    """Load a run's saved weights into `method` (built as its job built it); return what the
    checkpoint holds beside them (final stats, training seconds, where it resumed from)."""
    saved = torch.load(checkpoint, map_location=device, weights_only=False)
    method.load_state_dict(saved["state"])
    return saved


def _execute(job: Job, missing: list[tuple[float, str]], started: float) -> dict:
    spec = get_task(job.task)
    if file_sha256(Path(job.data_path)) != job.data_sha256:
        raise RuntimeError(f"{job.data_path} changed since the run was planned; plan again")
    arrays, data_attrs = read_dsrl_file(Path(job.data_path), spec)
    seed_everything(job.seed)
    method = build_method(job, spec)
    run_dir = job.run_dir()
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.exists():  # trained before, interrupted during evaluation: don't retrain
        saved = load_checkpoint(method, checkpoint, job.options.device)
        trained = TrainResult(final_stats=saved["final_stats"],
                              resumed_from=saved.get("resumed_from", 0),
                              seconds=saved["train_seconds"],
                              cuda_graph=saved.get("cuda_graph", False))  # as it trained
    else:
        trained = _train(job, spec, method, arrays, run_dir)
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"state": method.state_dict(), "final_stats": trained.final_stats,
                    "train_seconds": trained.seconds, "resumed_from": trained.resumed_from,
                    "cuda_graph": trained.cuda_graph}, tmp)
        os.replace(tmp, checkpoint)
        (run_dir / "training.pt").unlink(missing_ok=True)  # the final state supersedes it

    paths = []
    for threshold, name in missing:
        if job.policies:
            method.policy = name
        paths.append(record_evaluation(job, spec, method, threshold, name, run_dir,
                                       data_attrs, trained, started))
    return {"job": job.label, "status": "ok", "paths": paths,
            "resumed_from": trained.resumed_from, "seconds": time.time() - started}


def train_schedule(job: Job, batch_size: int) -> TrainSchedule:
    """The job's schedule: its steps and seed, the profile's log interval, its run options."""
    return TrainSchedule(steps=job.steps, batch_size=batch_size, seed=job.seed,
                         device=job.options.device, log_every=PROFILES[job.profile].log_every,
                         eval_every=job.eval_every, checkpoint_every=job.options.checkpoint_every,
                         checkpoint_seconds=job.options.checkpoint_seconds,
                         tensorboard=job.options.tensorboard)


def _train(job: Job, spec, method, arrays, run_dir: Path) -> TrainResult:
    evaluate = None
    if job.eval_every and not getattr(method, "trains_itself", False):
        evaluate = curve_evaluator(method, spec, job.policies,
                                   PROFILES[job.profile].curve_episodes, job.seed)
    return train(method, method.training_data(arrays),
                 train_schedule(job, method.config.batch_size), run_dir, evaluate)
