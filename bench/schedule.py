"""Scheduling: jobs run through joblib (local processes), with a progress bar.

Every job's outcome comes back to the parent (nothing is dropped): the caller gets one summary
per job and the command exits non-zero if any failed.
"""

from __future__ import annotations

import os

from bench.plan import Job
from bench.run import execute


def run_jobs(jobs: list[Job], n_jobs: int = 0, progress: bool = True) -> list[dict]:
    from joblib import Parallel, delayed
    from tqdm import tqdm

    todo = [job for job in jobs if job.missing()]
    outcomes = [{"job": job.label, "status": "skipped", "paths": []}
                for job in jobs if not job.missing()]
    if not todo:
        return outcomes
    cores = os.cpu_count() or 1
    n_jobs = min(n_jobs or cores, len(todo))
    threads = max(1, cores // n_jobs)
    bar = tqdm(total=len(todo), desc="jobs", unit="job", disable=not progress, smoothing=0)
    if n_jobs == 1:
        results = (execute(job, threads) for job in todo)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(execute)(job, threads) for job in todo)
    for outcome in results:
        outcomes.append(outcome)
        bar.update(1)
        if outcome["status"] == "error":
            bar.write(f"FAILED {outcome['job']}: {outcome['error']}")
        bar.set_postfix_str(outcome["job"], refresh=False)
    bar.close()
    return outcomes
