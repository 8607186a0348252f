"""`bench transfer --from easysparse`: zero-shot transfer across the MetaDrive configurations
(paper A.6, Fig. 12).

Each method's agents trained on the source task (the jobs `bench run` would run there: one per
seed, and per threshold for the threshold-specific methods) are taken from their checkpoints,
training the missing ones first on the given profile. Each is then evaluated, unchanged, on all
nine MetaDrive configurations at its thresholds, with the same evaluation protocol as
`bench run` (20 seeded episodes; a prompted method gets the threshold), and normalized with
the target task's DSRL constants. The source column is the main run's own evaluation (taken
from its records, not simulated twice).

Transfer records live apart from the main ones, at
<results>/transfer/<source>/<target>/<method>/thr<k>-seed<s>-<hash>.json, so the main tables
never mix them in; each says `transfer_from` and the checkpoint it evaluated.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch

from bench.parallel import in_parallel, share_cores
from bench.plan import PLANS, Job, PlanError, flat_fields, read_plan, save_plan
from bench.records import read_record, set_aside, slug, utc_now, write_json_atomic
from bench.recording import eval_seed, evaluation_fields
from bench.run import build_method, load_checkpoint
from tasks.registry import TaskSpec, UnknownNameError, get_task, suite_tasks

TRANSFER = "transfer"


def source_task(name: str) -> TaskSpec:
    """The source must be one of the nine MetaDrive tasks; anything else lists them."""
    valid = [spec.name for spec in suite_tasks("metadrive")]
    try:
        spec = get_task(name)
    except UnknownNameError:
        spec = None
    if spec is None or spec.suite != "metadrive":
        raise UnknownNameError(f"unknown transfer source {name!r}: the source is a MetaDrive "
                               f"task, one of {', '.join(valid)}")
    return spec


def transfer_record_path(results: Path, source: str, target: str, name: str, threshold: float,
                         seed: int, job_hash: str) -> Path:
    return (Path(results) / TRANSFER / source / target / slug(name)
            / f"thr{threshold:g}-seed{seed}-{job_hash}.json")


def missing_transfers(job: Job, target: str) -> list[tuple[float, str]]:
    """(threshold, name) pairs of this agent on `target` without a valid record (a damaged
    one counts as missing; it is set aside when its evaluation is redone)."""
    out = []
    for t in job.thresholds:
        for name in job.recorded_as:
            path = transfer_record_path(Path(job.options.results), job.task, target, name, t,
                                        job.seed, job.job_hash)
            if not path.exists() or read_record(path)[1] is not None:
                out.append((t, name))
    return out


def load_trained(job: Job, spec: TaskSpec):
    """The method of `job` with its trained weights (the checkpoint `bench run` saved)."""
    checkpoint = job.run_dir() / "checkpoint.pt"
    if not checkpoint.exists():
        raise FileNotFoundError(f"{job.label}: no trained checkpoint at {checkpoint}; its "
                                "training failed (see `bench status`)")
    method = build_method(job, spec)
    load_checkpoint(method, checkpoint, job.options.device)
    return method, checkpoint


def evaluate_transfer(job: Job, target: str, threads: int = 1) -> dict:
    """Evaluate the job's trained agent(s) on `target`; one record per threshold and policy.
    Returns a summary; never raises (an error is returned, as bench.run.execute does)."""
    todo = missing_transfers(job, target)
    label = f"{job.label} -> {target}"
    if not todo:
        return {"job": label, "status": "skipped"}
    torch.set_num_threads(threads)
    if target == job.task:  # the source itself: `bench run` evaluated it the same way
        try:
            for threshold, name in todo:
                _from_main_record(job, threshold, name)
            return {"job": label, "status": "ok"}
        except FileNotFoundError:
            pass  # no main record (evaluation interrupted): evaluate here
    try:
        source_spec, target_spec = get_task(job.task), get_task(target)
        if (source_spec.obs_dim, source_spec.act_dim) != (target_spec.obs_dim,
                                                          target_spec.act_dim):
            raise ValueError(f"{job.task} and {target} differ in observation or action size")
        method, checkpoint = load_trained(job, source_spec)
        for threshold, name in todo:
            if job.policies:
                method.policy = name
            _record(job, target_spec, method, threshold, name, checkpoint)
    except Exception as err:  # reported by the caller, never silent
        return {"job": label, "status": "error", "error": f"{type(err).__name__}: {err}"}
    return {"job": label, "status": "ok"}


def _from_main_record(job: Job, threshold: float, name: str) -> Path:
    """The source column of the matrix is the main run's own evaluation (same environment,
    seeds and protocol), so it is taken from the main record instead of simulated again."""
    main = json.loads(job.record_path(threshold, name).read_text())
    record = {**main, "transfer_from": job.task, "taken_from": str(
        job.record_path(threshold, name).relative_to(job.options.results)),
        "checkpoint": str((job.run_dir() / "checkpoint.pt").relative_to(job.options.results)),
        "created": utc_now()}
    path = transfer_record_path(Path(job.options.results), job.task, job.task, name, threshold,
                                job.seed, job.job_hash)
    if path.exists():  # only a damaged record is redone: keep it aside
        set_aside(path)
    return write_json_atomic(path, record)


def _record(job, spec, method, threshold, name, checkpoint) -> Path:
    # the thresholds are the source task's (the agent was trained or prompted for them); the
    # seeds are those of the same threshold in `bench run`
    seed = eval_seed(job, list(get_task(job.task).thresholds).index(threshold))
    record = {"method": name, **evaluation_fields(job, spec, method, threshold, seed),
              "transfer_from": job.task,
              "checkpoint": str(checkpoint.relative_to(job.options.results)),
              # the agent's job as a plan keeps it, its folder relative to the results folder
              "job": {**flat_fields(job), "results": "."}}
    path = transfer_record_path(Path(job.options.results), job.task, spec.name, name, threshold,
                                job.seed, job.job_hash)
    if path.exists():  # only a damaged record is redone: keep it aside
        set_aside(path)
    return write_json_atomic(path, record)


def save_transfer_plan(jobs: list[Job], targets: list[str], results: Path) -> Path:
    """Keep what a `bench transfer` evaluates (its agents and targets) for `bench status`:
    <results>/.plans/transfer/<source>-<hash>.json (the main plans' folder does not look
    inside)."""
    return save_plan(jobs, results, {"source": jobs[0].task, "targets": list(targets)},
                     folder=f"{PLANS}/{TRANSFER}", prefix=f"{jobs[0].task}-")


def transfer_progress(results: Path) -> list[tuple]:
    """(source, recorded method, evaluations recorded, planned) for every saved transfer
    plan; an evaluation is one (agent, target, threshold) record."""
    pairs: dict[tuple, tuple[Job, str]] = {}  # one entry per (agent, target) across plans
    for path in sorted((Path(results) / PLANS / TRANSFER).glob("*.json")):
        try:
            jobs, payload = read_plan(path, results)
            targets = list(payload["targets"])
        except (PlanError, KeyError, TypeError):
            continue
        for job in jobs:
            for target in targets:
                key = (job.job_hash, job.task, job.method, job.seed, job.train_threshold, target)
                pairs[key] = (job, target)
    counts: dict[tuple[str, str], list[int]] = {}
    for job, target in pairs.values():
        missing = Counter(name for _, name in missing_transfers(job, target))
        for name in job.recorded_as:
            count = counts.setdefault((job.task, name), [0, 0])
            count[0] += len(job.thresholds) - missing[name]
            count[1] += len(job.thresholds)
    return [(source, name, done, total) for (source, name), (done, total) in counts.items()]


def run_transfers(jobs: list[Job], targets: list[str], n_jobs: int = 0,
                  progress: bool = True) -> list[dict]:
    """Every (trained job, target) evaluation whose records are missing, in parallel."""
    from tqdm import tqdm

    pairs = [(job, target) for job in jobs for target in targets
             if missing_transfers(job, target)]
    if not pairs:
        return []
    n_jobs, threads = share_cores(n_jobs, len(pairs))
    bar = tqdm(total=len(pairs), desc="transfer", unit="eval", disable=not progress)
    outcomes = []
    for outcome in in_parallel(evaluate_transfer, pairs, n_jobs, threads):
        outcomes.append(outcome)
        bar.update(1)
        if outcome["status"] == "error":
            bar.write(f"FAILED {outcome['job']}: {outcome['error']}")
    bar.close()
    return outcomes
