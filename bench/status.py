"""`bench status`: every planned job of a results folder as done / running / failed / pending.

`bench run` saves each plan it executes under <results>/.plans/, so the jobs not started yet
are known too. A job is running while a live process holds its lock (bench.locks), failed when
it left an error record and nobody holds it, done when all its records exist.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bench.locks import is_locked, owner
from bench.plan import Job, load_plans
from bench.transfer import transfer_progress

STATES = ("done", "running", "failed", "pending")


def job_state(job: Job, missing: list | None = None) -> str:
    """The job's state; missing, its records not written yet where the caller has them."""
    if not (job.missing() if missing is None else missing):
        return "done"
    if is_locked(job.lock_path()):
        return "running"
    if job.failed():
        return "failed"
    return "pending"


def _progress_file(job: Job) -> tuple[int, int, dict] | None:
    """(steps done, steps, the whole file) from the job's progress file
    (bench.train.write_progress), if it has started training."""
    try:
        data = json.loads((job.run_dir() / "progress.json").read_text())
        return int(data["step"]), int(data["steps"]), data
    except (OSError, ValueError, KeyError):
        return None


def progress(job: Job) -> tuple[int, int] | None:
    """(steps done, steps) from the job's progress file, if it has started training."""
    read = _progress_file(job)
    return read[:2] if read else None


def pace(job: Job) -> str:
    """'step done/steps', with the steps per second since the job's process (re)started and
    the time left at that pace, once it has moved (progress files of older runs lack the
    start and show the step alone)."""
    read = _progress_file(job)
    if read is None:
        return "starting"
    step, steps, data = read
    text = f"step {step:,}/{steps:,}"
    try:
        moved = step - int(data["session_step"])
        seconds = float(data["updated"]) - float(data["session_started"])
    except (KeyError, ValueError, TypeError):
        return text
    if moved <= 0 or seconds <= 0:
        return text
    rate = moved / seconds
    left = (steps - step) / rate
    hours, minutes = divmod(round(left / 60), 60)
    return (f"{text}, {rate:.3g} steps/s, "
            f"{f'{hours} h {minutes} min' if hours else f'{minutes} min'} left")


def seconds_left(jobs: list[Job], results: Path, missing: dict | None = None
                 ) -> tuple[float, int, int]:
    """(seconds, jobs timed, jobs of unknown speed) that the jobs not done still cost on one
    core, at the speeds seen (bench.estimate: records, then the speed cache; nothing is
    measured here): a job in training counts the steps its progress file has left, every
    job its missing evaluations. missing: {id(job): its missing records} where the caller
    has read them already."""
    from bench.estimate import SpeedBook, job_seconds

    book = SpeedBook(results, measure=False)
    seconds, timed, unknown = 0.0, 0, 0
    for job in jobs:
        todo = job.missing() if missing is None else missing[id(job)]
        if not todo:
            continue
        done = progress(job)
        cost = job_seconds(book, job, len(todo), done[0] if done else 0)
        if cost is None:
            unknown += 1
        else:
            seconds += cost
            timed += 1
    return seconds, timed, unknown


def time_left(jobs: list[Job], results: Path, missing: dict | None = None) -> str | None:
    """seconds_left in words; None with nothing left."""
    seconds, timed, unknown = seconds_left(jobs, results, missing)
    if not timed + unknown:
        return None
    amount = (f"{seconds / 3600:.1f} core-hours" if seconds >= 3600
              else f"{seconds / 60:.0f} core-minutes")
    text = (f"left: about {amount} for {timed} job(s), at the speeds seen (records, else the "
            "speed cache of `bench speed` and dry runs)")
    if unknown:
        text += f"; {unknown} more job(s) of methods whose speed nothing here has seen"
    return text


def _slot(job: Job) -> tuple:
    """What a job is for, whatever its data or config hash: one cell of one table."""
    return (job.method, job.variant, job.precision, job.task, job.seed, job.train_threshold)


def status_rows(results: Path) -> tuple[list[tuple], list[tuple], list[str], str | None]:
    """(counts per suite and method, with a total row per suite when it has several
    methods; details of running and failed jobs and damaged records; the plans that could
    not be read, each named with what is wrong; what the jobs left cost, time_left). A failed job of an older plan whose cell a
    newer job of another hash fills (its data or config changed) is superseded: not counted."""
    counts: dict[tuple[str, str], Counter] = {}
    details = []
    problems: list[str] = []
    jobs = load_plans(results, problems)
    missing = {id(job): job.missing() for job in jobs}  # one pass over the record files
    states = {id(job): job_state(job, missing[id(job)]) for job in jobs}
    alive = {_slot(job) for job in jobs if states[id(job)] != "failed"}
    superseded = [job for job in jobs if states[id(job)] == "failed" and _slot(job) in alive]
    for job in jobs:
        if job in superseded:
            continue
        state = states[id(job)]
        name = job.method if job.precision == "fp32" else f"{job.method} {job.precision}"
        counts.setdefault((job.suite, name), Counter())[state] += 1
        if state == "running":
            who = owner(job.lock_path())
            where = f"{who.get('host', '?')}:{who.get('pid', '?')}"
            details.append((job.label, "running", pace(job), where))
        for path, problem in job.damaged():  # counted as not done: `bench run` redoes it
            details.append((job.label, "damaged record", f"{path}: {problem}",
                            "bench run moves it aside and redoes the job"))
        if state == "failed":
            error = job.failed()
            step = error.get("step")
            details.append((job.label, "failed", error.get("error", "?"),
                            f"at step {step:,}" if isinstance(step, int) else ""))
    for job in superseded:
        details.append((job.label, "superseded", "failed with other data or config; a newer "
                        "job of the same cell replaces it", "(not counted)"))
    rows = []
    for suite in sorted({suite for suite, _ in counts}):
        methods = sorted(method for s, method in counts if s == suite)
        for method in methods:
            count = counts[suite, method]
            rows.append((suite, method, *(count[s] for s in STATES), sum(count.values())))
        if len(methods) > 1:
            total = sum((counts[suite, m] for m in methods), Counter())
            rows.append((suite, "all", *(total[s] for s in STATES), sum(total.values())))
    left = time_left([job for job in jobs if job not in superseded], results, missing)
    return rows, details, problems, left


def format_status(results: Path) -> tuple[str, list[str]]:
    """The status page, and the unreadable plans it left out (the caller says so and exits 2:
    their jobs are unknown, so the counts may be short)."""
    from tabulate import tabulate

    rows, details, problems, left = status_rows(results)
    if not rows:
        return (f"no plan under {results}: start one with `python -m bench run --results "
                f"{results} ...`"), problems
    text = tabulate(rows, headers=["suite", "method", *STATES, "jobs"])
    if left:
        text += "\n" + left
    if details:
        text += "\n\n" + tabulate(details, headers=["job", "state", "detail", ""])
    transfers = transfer_progress(results)
    if transfers:
        text += "\n\n" + tabulate(
            [(f"from {source}", name, done, total - done, total)
             for source, name, done, total in transfers],
            headers=["transfer", "method", "recorded", "left", "evaluations"])
    if any(row[4] for row in rows):
        text += ("\n\nfailed jobs: fix the cause, then rerun the same selection with `bench run "
                 "... --retry-failed`; to forget a failure instead, delete its .error.json "
                 "beside the record it would have written")
    return text, problems
