"""Work shared out over the cores of this machine, or over joblib's backend (a Dask cluster
when bench.schedule.dask_backend has set it): the one place that decides how many processes
and how many torch threads each."""

from __future__ import annotations

import os


def share_cores(n_jobs: int, n_items: int) -> tuple[int, int]:
    """(processes, torch threads each) for `n_items` of work on this machine: one process per
    core unless `n_jobs` says otherwise, the cores shared out, not oversubscribed.
    BENCH_THREADS_PER_JOB overrides the threads (tests set 1: on a busy machine two threads
    per job can be many times slower)."""
    cores = os.cpu_count() or 1
    n_jobs = max(1, min(n_jobs or cores, n_items))
    threads = int(os.environ.get("BENCH_THREADS_PER_JOB", 0)) or max(1, cores // n_jobs)
    return n_jobs, threads


def in_parallel(fn, arg_tuples: list[tuple], n_jobs: int, threads: int,
                in_process: bool = True):
    """fn(*args, threads) for each args, yielded as each finishes: in this process when one
    job at a time is asked (and `in_process`), else through joblib (whose backend may be a
    Dask cluster, see dask_backend)."""
    from joblib import Parallel, delayed

    if n_jobs == 1 and in_process:
        return (fn(*args, threads) for args in arg_tuples)
    return Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(fn)(*args, threads) for args in arg_tuples)
