"""The training loop: a method's steps on its sampler, with the curve, checkpoints that resume
to the unbroken run's state, progress for the bars, and the global random generators kept
apart from what evaluations draw."""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.curves import write_curve
from bench.graphs import GraphedTrainStep, training_step
from bench.streams import rng_state, set_rng_state
from tasks.samplers import make_sampler


class NonFiniteLoss(RuntimeError):
    """A training statistic turned NaN or infinite: the job fails with the step it reached."""

    def __init__(self, step: int, names: list[str]):
        super().__init__(f"{', '.join(names)} not finite at step {step:,}")
        self.step = step


PROGRESS_SECONDS = 2.0
"""the longest a job's progress file lags its training step"""


def write_progress(run_dir: Path, **fields) -> None:
    """What `bench status` and the progress bars read: the step reached, the last checkpoint."""
    tmp = run_dir / "progress.json.tmp"
    tmp.write_text(json.dumps({**fields, "updated": time.time()}))
    os.replace(tmp, run_dir / "progress.json")


@dataclass(frozen=True, kw_only=True)
class TrainSchedule:
    """How a method trains: what a job fixes before its first step."""

    steps: int
    """gradient steps in all (a resumed run counts the ones before its interruption)"""
    batch_size: int
    """transitions (or sequences) a step"""
    seed: int
    """the sampler's seed (the method's own draws follow torch's global generator)"""
    device: str = "cpu"
    """where the batches are held"""
    log_every: int = 1000
    """steps a row of the curve averages; non-finite statistics are checked there"""
    eval_every: int = 0
    """steps between the curve's evaluations (0: none)"""
    checkpoint_every: int = 0
    """steps between resumable checkpoints (0: none by count)"""
    checkpoint_seconds: float = 0.0
    """wall seconds after which a step is followed by a checkpoint (0: none by time)"""
    tensorboard: bool = False
    """the curve also as TensorBoard events"""


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What a training run leaves besides the method's weights."""

    final_stats: dict
    """the last logged window's mean statistics"""
    resumed_from: int
    """the step a checkpoint resumed it from (0: from scratch)"""
    seconds: float
    """wall seconds of training, those before a resume included"""
    cuda_graph: bool
    """whether its steps were replayed from a CUDA graph"""


def train(method, arrays, schedule: TrainSchedule, run_dir: Path,
          evaluate: Callable[[int], dict] | None = None) -> TrainResult:
    """`schedule.steps` gradient steps of `method` on `arrays`.

    The training curve (mean stats per log window, and what `evaluate(step)` returns every
    `eval_every` steps) is rewritten to run_dir/curve.csv at each log point. Every
    `checkpoint_every` steps the whole training state (the method's state_dict, the sampler's
    and every global random generator's state, the curve so far) goes to run_dir/training.pt,
    atomically, and also after any step that ends `checkpoint_seconds` or more of wall time
    after the last save; a later call resumes there and reaches the same final state as an
    uninterrupted run. With `tensorboard`, the same points also go to run_dir/tensorboard.
    A non-finite logged statistic raises NonFiniteLoss; any exception leaves the last step
    reached in its `step` attribute (for the error record). A method that trains itself
    (an external process) reports its own points through `fit`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    curve_path = run_dir / "curve.csv"
    started = time.time()
    rows: dict[int, dict] = {}
    last = {}
    steps, device, log_every = schedule.steps, schedule.device, schedule.log_every
    if getattr(method, "trains_itself", False):
        step = 0
        try:
            for step, stats in method.fit(arrays, steps, schedule.seed, log_every,
                                          curve_path.parent):
                rows[step] = {"step": step, **stats}
                last = stats
        except Exception as err:
            err.step = getattr(err, "step", step)
            raise
        write_curve(rows, curve_path)
        return TrainResult(final_stats=last, resumed_from=0, seconds=time.time() - started,
                           cuda_graph=False)
    sampler = make_sampler(method, arrays, schedule.batch_size, schedule.seed, device)
    window: dict[str, list] = defaultdict(list)
    partial = run_dir / "training.pt"
    first, resumed_from, seconds_before = 1, 0, 0.0
    if partial.exists():
        saved = torch.load(partial, map_location=device, weights_only=False)
        method.load_state_dict(saved["method"])
        sampler.generator.set_state(saved["sampler"].cpu())
        set_rng_state(saved["rng"])
        rows, last = saved["rows"], saved["last"]
        window = defaultdict(list, saved["window"])
        resumed_from, seconds_before = saved["step"], saved["seconds"]
        first = resumed_from + 1
    # this process's start, so that `bench status` can tell the pace and the time left
    session = {"session_step": resumed_from, "session_started": time.time()}
    write_progress(run_dir, step=resumed_from, steps=steps, checkpoint_step=resumed_from,
                   **session)
    writer = None
    if schedule.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=first)
    last_checkpoint, last_save = resumed_from, time.time()
    last_progress = last_save
    train_step = training_step(method, device)  # a CUDA graph's replay where it can be
    step = resumed_from
    try:
        for step in range(first, steps + 1):
            stats = train_step(sampler.sample())
            for key, value in stats.items():
                window[key].append(value)
            logged = step % log_every == 0 or step == steps
            if logged:
                last = {k: float(torch.stack([torch.as_tensor(v) for v in vs]).float().mean())
                        for k, vs in window.items()}
                window.clear()
                bad = [k for k, v in last.items() if not math.isfinite(v)]
                if bad:
                    raise NonFiniteLoss(step, bad)
                rows.setdefault(step, {"step": step}).update(last)
            if evaluate is not None and schedule.eval_every and step % schedule.eval_every == 0:
                rows.setdefault(step, {"step": step}).update(evaluate(step))
            if logged:
                write_curve(rows, curve_path)
                if writer is not None:
                    for key, value in rows.get(step, {}).items():
                        if key != "step":
                            writer.add_scalar(key, value, step)
                    writer.flush()
            checkpointed = step < steps and bool(
                (schedule.checkpoint_every and step % schedule.checkpoint_every == 0)
                or (schedule.checkpoint_seconds
                    and time.time() - last_save >= schedule.checkpoint_seconds))
            if checkpointed:
                tmp = partial.with_suffix(".tmp")
                torch.save({"step": step, "method": method.state_dict(),
                            "sampler": sampler.generator.get_state(), "rng": rng_state(),
                            "rows": rows, "last": last, "window": dict(window),
                            "seconds": seconds_before + time.time() - started}, tmp)
                os.replace(tmp, partial)
                last_checkpoint, last_save = step, time.time()
            # the bars of `bench run` and `bench status` read this file; slow steps need more
            # than the log points to show movement
            if checkpointed or logged or time.time() - last_progress >= PROGRESS_SECONDS:
                write_progress(run_dir, step=step, steps=steps, checkpoint_step=last_checkpoint,
                               **session)
                last_progress = time.time()
    except Exception as err:
        err.step = getattr(err, "step", step)
        raise
    finally:
        if writer is not None:
            writer.close()
    return TrainResult(final_stats=last, resumed_from=resumed_from,
                       seconds=seconds_before + time.time() - started,
                       cuda_graph=isinstance(train_step, GraphedTrainStep))
