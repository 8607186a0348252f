"""`bench run --dry-run`: the plan in numbers, and how long it will take on this machine.

A method's training speed comes, in this order, from the records already in the results
folder (train_seconds / steps of the same method on the same device, same task if there is
one), from the speed cache that `bench speed` and earlier dry runs fill (one thread, this host,
per device; another task's number where the task has none), or from a short measurement made
now (the fastest of three steps on synthetic data of the task's shapes, one thread, on the
job's device, then cached). Speeds are kept per device because they differ up to fifty-fold
between a CPU core and a GPU (docs/performance.md, "On a GPU"); a GPU job is never timed by CPU
numbers.
They are kept per precision too: a bf16 job is timed by bf16 numbers only.
Evaluation time comes from records' eval_seconds where there are any; otherwise it is
assumed at a per-suite cost per simulator step (ASSUMED_SECONDS_PER_ENV_STEP), and marked so.
"""

from __future__ import annotations

import json
import socket
import statistics
from collections import defaultdict
from pathlib import Path

from bench.plan import Job
from bench.records import load_records, precision_of
from tasks.files import cache_dir, write_text_atomic
from tasks.registry import get_task

ASSUMED_SECONDS_PER_ENV_STEP = {"bullet": 0.002, "safetygym": 0.002, "metadrive": 0.0045}
"""per simulator step when no record says better (one core: vectorized Bullet, one MetaDrive
engine); a record of the method on the task replaces them"""


def cache_path() -> Path:
    return cache_dir() / f"speed-{socket.gethostname()}.json"


def read_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _cache_key(method: str, task: str, device: str = "cpu", precision: str = "fp32") -> str:
    # fp32 CPU keys stay "method|task", as caches written before devices were told apart
    if precision != "fp32":
        return f"{method}|{task}|{device}|{precision}"
    return f"{method}|{task}" if device == "cpu" else f"{method}|{task}|{device}"


def remember_speed(method: str, task: str, steps_per_s: float, device: str = "cpu",
                   precision: str = "fp32") -> None:
    """Keep a one-thread steps/s measurement of (method, task) on `device` for estimates."""
    cache = read_cache()
    cache[_cache_key(method, task, device, precision)] = steps_per_s
    # a temporary file of its own (two dry runs at once never share one)
    write_text_atomic(cache_path(), json.dumps(cache, indent=1, sort_keys=True))


def _cache_device(key: str) -> tuple[str, str]:
    """(device, precision) of a cache key."""
    parts = key.split("|")
    return (parts[2] if len(parts) > 2 else "cpu", parts[3] if len(parts) > 3 else "fp32")


class SpeedBook:
    """steps/s per (method, task, device, precision) and evaluation seconds per (method,
    task), with
    where each number came from. Evaluation runs the simulators on the CPU whatever the
    training device, so its times are not split by device."""

    def __init__(self, results: Path, measure: bool = True):
        self.train: dict[tuple, list[float]] = defaultdict(list)
        self.evals: dict[tuple, list[float]] = defaultdict(list)
        for record in load_records(results):
            key = (record.get("trained_as", record["method"]), record["task"])
            if record.get("train_seconds") and record.get("steps"):
                self.train[(*key, record.get("device", "cpu"),
                            precision_of(record))].append(
                    record["steps"] / record["train_seconds"])
            if record.get("eval_seconds"):
                self.evals[key].append(record["eval_seconds"])
        self.cache = read_cache()
        self.measure = measure

    def steps_per_s(self, method: str, task: str, device: str = "cpu", precision: str = "fp32"
                    ) -> tuple[float | None, str]:
        if self.train.get((method, task, device, precision)):
            return statistics.median(self.train[method, task, device, precision]), "records"
        other = [v for (m, _, d, p), vs in self.train.items()
                 if (m, d, p) == (method, device, precision) for v in vs]
        if other:
            return statistics.median(other), "records (other tasks)"
        key = _cache_key(method, task, device, precision)
        if key in self.cache:
            return self.cache[key], "speed cache"
        other = [v for k, v in self.cache.items()
                 if k.split("|")[0] == method and _cache_device(k) == (device, precision)]
        if other:  # the network's cost hardly depends on the task's observation size
            return statistics.median(other), "speed cache (other tasks)"
        if not self.measure:
            return None, "unknown"
        from bench.speed import quick_steps_per_s

        rate = quick_steps_per_s(method, task, device=device, precision=precision)
        remember_speed(method, task, rate, device, precision)
        self.cache[key] = rate
        return rate, "measured now"

    def eval_seconds(self, job: Job) -> tuple[float, str]:
        """Seconds to evaluate one (threshold, policy) of the job."""
        seen = self.evals.get((job.method, job.task))
        if seen:
            return statistics.median(seen), "records"
        spec = get_task(job.task)
        return assumed_eval_seconds(job.eval_episodes, spec), "assumed"


def assumed_eval_seconds(episodes: int, spec) -> float:
    """Evaluation seconds with every episode at full length, at the assumed step cost."""
    return episodes * spec.max_episode_steps * ASSUMED_SECONDS_PER_ENV_STEP[spec.suite]


def transfer_estimate(jobs: list[Job], targets: list[str], results: Path, n_workers: int
                      ) -> dict:
    """The zero-shot evaluations `bench transfer` still has to run for `jobs` (trained or
    not) on `targets`, and their time.

    Each evaluation is timed per method, because methods differ a hundredfold: on MetaDrive a
    quick CPQ agent may end its episodes in a few dozen steps, while FISOR drives the whole
    horizon and samples 16 diffusion candidates an action. In order: the median eval_seconds
    of that method's transfer records from the same source, else of its records on the source
    in `bench run`, else of every transfer record from the source, else assumed at full
    episode length."""
    from bench.transfer import missing_transfers

    source = jobs[0].task  # plan_jobs gives at least one job per method
    transfer = defaultdict(list)
    for r in load_records(results, transfer_from=source):
        if r.get("eval_seconds") and not r.get("taken_from"):
            transfer[r["method"]].append(r["eval_seconds"])
    main = SpeedBook(results, measure=False).evals  # (method, task) -> main records' seconds
    any_transfer = [v for vs in transfer.values() for v in vs]
    assumed = assumed_eval_seconds(jobs[0].eval_episodes, get_task(source))

    def seconds(job: Job, name: str) -> tuple[float, str]:
        if transfer.get(name):
            return statistics.median(transfer[name]), "transfer records"
        if main.get((job.method, source)):
            return statistics.median(main[job.method, source]), "main records"
        if any_transfer:
            return statistics.median(any_transfer), "other methods' transfer records"
        return assumed, "assumed"

    todo, total, origins = 0, 0.0, set()
    for job in jobs:
        for target in targets:
            if target == source:
                continue
            for _, name in missing_transfers(job, target):
                each, origin = seconds(job, name)
                todo, total = todo + 1, total + each
                origins.add(origin)
    hours = total / 3600
    return {"evaluations": todo, "seconds_each": total / todo if todo else 0.0,
            "from": ", ".join(sorted(origins)) or "nothing left", "core_hours": hours,
            "wall_hours": hours / max(1, n_workers)}


def job_seconds(book: SpeedBook, job: Job, evaluations: int, steps_done: int = 0
                ) -> float | None:
    """Seconds on one core that a job still costs at the speeds the book knows: its steps
    after steps_done, and its evaluations still missing; None where the book knows no speed
    of its method (a dry run that may measure has measured it by then)."""
    rate, _ = book.steps_per_s(job.method, job.task, job.options.device, job.precision)
    if rate is None:
        return None
    return max(job.steps - steps_done, 0) / rate + evaluations * book.eval_seconds(job)[0]


def dry_run_table(jobs: list[Job], results: Path, n_workers: int, measure: bool = True
                  ) -> tuple[list[tuple], dict]:
    """Rows per method (jobs to train, evaluations, steps per job, steps/s, core-hours) and
    the totals, for the jobs whose records are missing."""
    book = SpeedBook(results, measure)
    per_method: dict[str, dict] = {}
    for job in jobs:
        todo = job.missing()
        if not todo:
            continue
        row = per_method.setdefault(job.method, {"jobs": 0, "evaluations": 0, "steps": set(),
                                                 "seconds": 0.0, "sources": set(),
                                                 "unknown": 0})
        _, source = book.steps_per_s(job.method, job.task, job.options.device, job.precision)
        _, eval_source = book.eval_seconds(job)
        row["jobs"] += 1
        row["evaluations"] += len(todo)
        row["steps"].add(job.steps)
        row["sources"] |= {source, f"eval {eval_source}"}
        seconds = job_seconds(book, job, len(todo))
        if seconds is None:
            row["unknown"] += 1
        else:
            row["seconds"] += seconds
    rows, total = [], 0.0
    for method, row in per_method.items():
        steps = "/".join(f"{s:,}" for s in sorted(row["steps"]))
        hours = row["seconds"] / 3600
        total += row["seconds"]
        rows.append((method, row["jobs"], row["evaluations"], steps, f"{hours:.2f}"
                     + (" +?" if row["unknown"] else ""), ", ".join(sorted(row["sources"]))))
    wall = total / max(1, n_workers)
    return rows, {"core_hours": total / 3600, "wall_hours": wall / 3600, "workers": n_workers}
