"""Scheduling: jobs run through joblib, on local processes or on a Dask cluster, with one
overall progress bar (ETA) and a line per running job.

Every job's outcome comes back to the parent (nothing is dropped): the caller gets one summary
per job and the command exits non-zero if any failed. A job that failed in an earlier run is
left alone unless `retry_failed`; a job another process holds (bench.locks) is left to it.
"""

from __future__ import annotations

import contextlib
import threading

from bench.parallel import in_parallel, share_cores
from bench.plan import Job
from bench.run import execute
from bench.status import job_state, progress


class BackendError(RuntimeError):
    """The execution backend cannot be reached or is not installed."""


@contextlib.contextmanager
def dask_backend(scheduler: str):
    """joblib's dask backend on the cluster at `scheduler` (tcp://host:8786); yields the
    number of its workers."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise BackendError("--backend dask needs dask.distributed: pip install "
                           "'.[dask]' (or pip install 'dask[distributed]')") from None
    from joblib import parallel_config

    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as err:
        raise BackendError(f"no Dask scheduler at {scheduler} ({err}); start one with "
                           "`dask scheduler` and a `dask worker` per machine") from None
    try:
        try:  # workers that are still starting get a moment to register
            client.wait_for_workers(1, timeout=30)
        except TimeoutError:
            pass
        workers = len(client.scheduler_info()["workers"])
        if workers == 0:
            raise BackendError(f"the Dask scheduler at {scheduler} has no workers; start "
                               f"`dask worker {scheduler}` on each machine")
        with parallel_config(backend="dask"):
            yield workers
    finally:
        client.close()


class JobLines:
    """A bar line per running job, refreshed from the jobs' progress files (the workers may be
    other processes or other machines: the results folder is what they share)."""

    def __init__(self, jobs: list[Job], slots: int, enabled: bool, every: float = 2.0):
        from tqdm import tqdm

        self.jobs, self.enabled, self.every = jobs, enabled, every
        self.done: set[str] = set()
        self.bars = [tqdm(total=1, position=i + 1, leave=False, disable=not enabled,
                          bar_format="  {desc} {bar:20} {n_fmt}/{total_fmt}")
                     for i in range(slots)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            running = [job for job in self.jobs if job.label not in self.done
                       and job_state(job) == "running"]
            for bar, job in zip(self.bars, running + [None] * len(self.bars)):
                step = progress(job) if job is not None else None
                bar.set_description_str(job.label if job else "", refresh=False)
                bar.total = step[1] if step else 1
                bar.n = step[0] if step else 0
                bar.refresh()

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for bar in self.bars:
            bar.close()


def run_jobs(jobs: list[Job], n_jobs: int = 0, progress: bool = True,
             retry_failed: bool = False, backend: str = "local",
             scheduler: str | None = None) -> list[dict]:
    from tqdm import tqdm

    outcomes, todo = [], []
    for job in jobs:
        if not job.missing():
            outcomes.append({"job": job.label, "status": "skipped", "paths": []})
        elif (error := job.failed()) and not retry_failed:
            outcomes.append({"job": job.label, "status": "failed earlier", "paths": [],
                             "error": error.get("error", "?")})
        else:
            todo.append(job)
    if not todo:
        return outcomes
    with contextlib.ExitStack() as stack:
        if backend == "dask":
            if not scheduler:
                raise BackendError("--backend dask needs --scheduler tcp://HOST:8786")
            workers = stack.enter_context(dask_backend(scheduler))
            print(f"dask cluster at {scheduler}: {workers} workers", flush=True)
            n_jobs, threads = n_jobs or workers, 1  # one job per worker; its own threads
        else:
            n_jobs, threads = share_cores(n_jobs, len(todo))
        bar = tqdm(total=len(todo), desc="jobs", unit="job", disable=not progress, smoothing=0)
        lines = stack.enter_context(JobLines(todo, min(n_jobs, len(todo)), progress))
        for outcome in in_parallel(execute, [(job,) for job in todo], n_jobs, threads,
                                   in_process=backend == "local"):
            outcomes.append(outcome)
            lines.done.add(outcome["job"])
            bar.update(1)
            if outcome["status"] == "error":
                bar.write(f"FAILED {outcome['job']}: {outcome['error']}")
            elif outcome.get("resumed_from"):
                bar.write(f"{outcome['job']}: resumed from step {outcome['resumed_from']:,}")
            bar.set_postfix_str(outcome["job"], refresh=False)
        bar.close()
    return outcomes


def summarize(outcomes: list[dict]) -> tuple[str, int]:
    """What a run did, for its last lines, and its exit status: 1 while a selected job stands
    failed (in this run or an earlier one: a selection with a failed job is not done)."""
    count = {state: sum(o["status"] == state for o in outcomes)
             for state in ("ok", "skipped", "busy", "error", "failed earlier")}
    lines = [f"done: {count['ok']} trained, {count['skipped']} skipped, {count['error']} failed"
             + (f", {count['busy']} left to another process" if count["busy"] else "")
             + (f", {count['failed earlier']} failed earlier (rerun with --retry-failed)"
                if count["failed earlier"] else "")]
    lines += [f"  FAILED {o['job']}: {o['error']} (traceback in its .error.json)"
              for o in outcomes if o["status"] == "error"]
    return "\n".join(lines), 1 if count["error"] or count["failed earlier"] else 0
