"""Planning: a suite (or task list) x methods x seeds becomes a list of training jobs.

A job trains one model. A threshold-agnostic method (BC-All, LSPC) gets one job per
(task, seed) that is evaluated at every threshold; any other method one job per threshold.
Each job knows the record paths it will write, so a job whose records exist is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from algorithms import build_config, get_method
from algorithms.base import ConfigError, field_types, is_tuple_type
from bench.profiles import PROFILES
from bench.records import (artifact_dir, config_hash, read_record, record_path,
                           write_json_atomic)
from tasks.datasets import DatasetError, file_arrays_sha256, file_sha256, resolve_path
from tasks.registry import TaskSpec


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How and where a job runs. None of it changes what the job records, so none of it is
    in the job's hash: a checkpointed run resumes to the unbroken run's state, and a job
    records the same numbers whatever folder holds them."""

    results: str
    """the records folder"""
    device: str = "cpu"
    """torch device it trains and acts on"""
    checkpoint_every: int = 0
    """training steps between resumable checkpoints (0: none by count)"""
    checkpoint_seconds: float = 0.0
    """wall seconds after which a step is followed by a checkpoint (0: none by time)"""
    tensorboard: bool = False
    """the training curve also as TensorBoard events"""


def recorded_config(method: str, config: dict):
    """(method class, its Config) from a config as records and plans hold it (JSON lists for
    tuples)."""
    _, cls = get_method(method)
    return cls, cls.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


@dataclass(frozen=True, kw_only=True)
class Job:
    """One training run and the records it writes: what it is (its hash covers the method,
    config, steps, evaluation, data and precision), and `options`, how it runs."""

    method: str
    task: str
    suite: str
    seed: int
    train_threshold: float | None  # None: threshold-agnostic, trained once
    thresholds: tuple[float, ...]  # evaluated at these
    config: dict
    profile: str
    steps: int
    eval_episodes: int
    data_path: str
    data_source: str  # "dsrl" | "local"
    data_sha256: str
    job_hash: str
    options: RunOptions
    policies: tuple[str, ...] = ()  # what gets recorded; empty: the method itself
    variant: str = ""  # the --set values that made this config, e.g. "epsilon=0.5"
    eval_every: int = 0  # evaluations during training for the curves; 0: none
    method_module: str = ""  # "package.module:Class" of a method from outside the repository
    precision: str = "fp32"  # "bf16": hidden layers in bfloat16 (a job, and records, of its own)
    data_arrays_sha256: str = ""  # the transitions' hash (tasks.datasets.arrays_sha256)

    @property
    def recorded_as(self) -> tuple[str, ...]:
        return self.policies or (self.method,)

    def record_path(self, threshold: float, name: str | None = None) -> Path:
        return record_path(Path(self.options.results), self.suite, self.task,
                           name or self.method, threshold, self.seed, self.job_hash)

    def artifact_dir(self) -> Path:
        return artifact_dir(Path(self.options.results), self.suite, self.task, self.method,
                            self.seed, self.job_hash)

    def run_dir(self) -> Path:
        """Checkpoints, curve and progress of this training run."""
        run_dir = self.artifact_dir()
        if self.train_threshold is not None:
            run_dir = run_dir.with_name(run_dir.name + f"-thr{self.train_threshold:g}")
        return run_dir

    def lock_path(self) -> Path:
        run_dir = self.run_dir()
        return run_dir.with_name(run_dir.name + ".lock")

    def error_path(self, threshold: float, name: str) -> Path:
        return self.record_path(threshold, name).with_suffix(".error.json")

    def failed(self) -> dict:
        """The error record of an earlier failed attempt at a missing record ({} if none)."""
        for threshold, name in self.missing():
            try:
                return json.loads(self.error_path(threshold, name).read_text())
            except (OSError, ValueError):
                continue
        return {}

    def missing(self) -> list[tuple[float, str]]:
        """(threshold, recorded name) pairs without a valid record yet (a damaged record does
        not count: its job is redone)."""
        return [(t, name) for t in self.thresholds for name in self.recorded_as
                if not self.record_path(t, name).exists()
                or read_record(self.record_path(t, name))[1] is not None]

    def method_config(self):
        """(method class, its Config) as this job records them."""
        return recorded_config(self.method, self.config)

    def damaged(self) -> list[tuple[Path, str]]:
        """(path, what is wrong) of each of this job's records that exists but is damaged."""
        out = []
        for t in self.thresholds:
            for name in self.recorded_as:
                path = self.record_path(t, name)
                if path.exists():
                    problem = read_record(path)[1]
                    if problem:
                        out.append((path, problem))
        return out

    @property
    def label(self) -> str:
        thr = "all" if self.train_threshold is None else f"{self.train_threshold:g}"
        variant = f" [{self.variant}]" if self.variant else ""
        precision = f" {self.precision}" if self.precision != "fp32" else ""
        return f"{self.method}{variant}{precision} {self.task} thr={thr} seed={self.seed}"


def plan_jobs(tasks: list[TaskSpec], methods: list[str], seeds: list[int], profile: str,
              results: Path, data: str = "auto", sets: dict[str, str] | None = None,
              steps: int | None = None, device: str = "cpu",
              eval_every: int | None = None, method_modules: dict[str, str] | None = None,
              checkpoint_every: int | None = None, tensorboard: bool = False,
              missing_data: list | None = None, precision: str = "fp32",
              data_profile: str | None = None) -> list[Job]:
    """Every job of the grid; raises DatasetError/ConfigError before anything is trained.

    With `missing_data` (a list, for a dry run) a task without data is planned all the same
    (data source "missing") and its DatasetError is appended there instead of raised.
    `precision` "bf16" makes jobs of their own (the precision enters their hash; an fp32
    job's payload has no precision field). `data_profile`: which local collection to train on
    (default: `profile`'s; "study" for the DSRL-like files).

    A job is named by the hash of its transitions, not of its file: a local file's card names
    the commit and the machine's timings, so the same collection made again on a new machine
    (collection is seeded) is another file with the same transitions, and the jobs that a
    machine before finished (their records committed) are found and not trained again. The
    file's own hash still guards the run (bench.run: the file must not change after planning)."""
    prof = PROFILES[profile]
    eval_every = prof.eval_every if eval_every is None else eval_every
    # not in the job hash: a checkpointed run resumes to the same state as an unbroken one
    checkpoint_every = prof.checkpoint_every if checkpoint_every is None else checkpoint_every
    data_by_task = {}
    for spec in tasks:
        try:
            path, source = resolve_path(spec, data, data_profile or profile)
        except DatasetError as err:
            if missing_data is None:
                raise
            missing_data.append((spec, err))
            data_by_task[spec.name] = (Path(""), "missing", "missing", "missing")
            continue
        file_sha = file_sha256(path)
        data_by_task[spec.name] = (path, source, file_sha, file_arrays_sha256(path, file_sha))
    jobs = []
    registered = list(dict.fromkeys(get_method(name)[0] for name in methods))  # LSPC-S -> LSPC
    for name in registered:
        display, cls = get_method(name)
        usable_sets = {k: v for k, v in (sets or {}).items()
                       if k in {f.name for f in dataclasses.fields(cls.Config)}}
        for spec, variant_sets in itertools.product(tasks, expand_sweeps(cls, usable_sets)):
            built = build_config(cls, spec.name, variant_sets)
            cls.check_precision(built, precision)  # a method that cannot, before anything runs
            config = dataclasses.asdict(built)
            variant = ", ".join(f"{k}={v}" for k, v in variant_sets.items())
            n_steps = steps if steps is not None else cls.steps_for(profile, spec.name)
            path, source, sha, arrays_sha = data_by_task[spec.name]
            trainings = [None] if cls.threshold_agnostic else list(spec.thresholds)
            for seed in seeds:
                for train_threshold in trainings:
                    evaluated = spec.thresholds if train_threshold is None else (train_threshold,)
                    payload = {
                        "method": display, "config": config, "steps": n_steps,
                        "eval_episodes": prof.eval_episodes,
                        "data_arrays_sha256": arrays_sha,
                        "train_threshold": train_threshold}
                    if eval_every:  # only then: keeps the hashes of runs without curves
                        payload["eval_every"] = eval_every
                    if precision != "fp32":  # only then: an fp32 payload is as it always was
                        payload["precision"] = precision
                    job_hash = config_hash(payload)
                    options = RunOptions(
                        results=str(results), device=device, checkpoint_every=checkpoint_every,
                        tensorboard=tensorboard,
                        checkpoint_seconds=prof.checkpoint_seconds if checkpoint_every else 0.0)
                    jobs.append(Job(
                        method=display, task=spec.name, suite=spec.suite, seed=seed,
                        train_threshold=train_threshold, thresholds=tuple(evaluated),
                        config=config, profile=profile, steps=n_steps,
                        eval_episodes=prof.eval_episodes, data_path=str(path),
                        data_source=source, data_sha256=sha, job_hash=job_hash,
                        options=options, policies=tuple(cls.policies), variant=variant,
                        eval_every=eval_every,
                        method_module=(method_modules or {}).get(display, ""),
                        precision=precision, data_arrays_sha256=arrays_sha))
    return jobs


def expand_sweeps(cls, sets: dict[str, str]) -> list[dict[str, str]]:
    """`--set epsilon=0.1,0.25` on a scalar field is a sweep: one config per value (the
    cartesian product over swept fields). On a tuple field (hidden=64,64) a comma is part of
    the one value."""
    tuple_fields = {name for name, kind in field_types(cls.Config).items()
                    if is_tuple_type(kind)}
    choices = [[text] if key in tuple_fields else [v.strip() for v in text.split(",")]
               for key, text in sets.items()]
    return [dict(zip(sets, values)) for values in itertools.product(*choices)]


def unknown_sets(methods: list[str], sets: dict[str, str]) -> list[str]:
    """--set keys that no selected method has (a typo would otherwise be silently ignored)."""
    known = set()
    for name in methods:
        known |= {f.name for f in dataclasses.fields(get_method(name)[1].Config)}
    return sorted(set(sets) - known)


PLANS = ".plans"


#: a job's fields as saved (plans, error records): flat, the run options beside the rest, as
#: before they were set apart (so plans and their hashes did not change)
OPTION_FIELDS = tuple(field.name for field in dataclasses.fields(RunOptions))


def flat_fields(job: Job) -> dict:
    """Every field of the job in one flat dict, the run options beside the rest."""
    fields = dataclasses.asdict(job)
    fields.update(fields.pop("options"))
    return fields


def job_fields(job: Job) -> dict:
    """The job's fields as saved (plans, error records): an fp32 job as before precision
    existed, without the field (a job saved without it reads as fp32)."""
    fields = flat_fields(job)
    if fields["precision"] == "fp32":
        del fields["precision"]
    return fields


def _payload(jobs: list[Job]) -> list[dict]:
    # job paths are kept relative to the results folder, so that a copied or moved folder, or
    # `bench status --results` from anywhere, finds its records
    return [{**job_fields(job), "results": "."} for job in jobs]


def plan_file(jobs: list[Job], results: Path, extra: dict | None = None, folder: str = PLANS,
              prefix: str = "") -> Path:
    """Where save_plan keeps this plan: named by the hash of its jobs (and extra fields)."""
    jobs_payload = _payload(jobs)
    hashed = jobs_payload if extra is None else {"jobs": jobs_payload, **extra}
    text = json.dumps(hashed, sort_keys=True, default=str)
    return (Path(results) / folder
            / f"{prefix}{hashlib.sha256(text.encode()).hexdigest()[:12]}.json")


def save_plan(jobs: list[Job], results: Path, extra: dict | None = None, folder: str = PLANS,
              prefix: str = "") -> Path:
    """Keep the plan beside the records (for `bench status`); one file per distinct plan,
    named by its hash. `extra` fields are kept beside the jobs (a transfer's targets)."""
    path = plan_file(jobs, results, extra, folder, prefix)
    if not path.exists():
        write_json_atomic(path, {"jobs": _payload(jobs), **(extra or {})})
    return path


def job_from_fields(fields: dict, results: Path) -> Job:
    """A Job from its saved fields (JSON turned its tuples into lists), its paths under the
    results folder the plan was read from."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    options = {k: fields.pop(k) for k in OPTION_FIELDS if k in fields}
    options["results"] = str(Path(results))
    return Job(**fields, options=RunOptions(**options))


class PlanError(ValueError):
    """A saved plan that cannot be read; the message names the file."""


def read_plan(path: Path, results: Path) -> tuple[list[Job], dict]:
    """The jobs of one saved plan and its other fields; PlanError names what is wrong."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise PlanError(f"{path}: unreadable plan ({err})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("jobs"), list):
        raise PlanError(f"{path}: not a plan (a JSON object with a list of jobs)")
    try:
        jobs = [job_from_fields(fields, results) for fields in payload["jobs"]]
    except (TypeError, ValueError) as err:
        raise PlanError(f"{path}: a job of this plan does not fit this harness ({err})") from None
    return jobs, payload


def load_plans(results: Path, problems: list | None = None) -> list[Job]:
    """Every job of every saved plan, once each; unreadable plans are skipped and named in
    `problems` (when given)."""
    jobs: dict[tuple, Job] = {}
    for path in sorted((Path(results) / PLANS).glob("*.json")):
        try:
            payload, _ = read_plan(path, results)
        except PlanError as err:
            if problems is not None:
                problems.append(str(err))
            continue
        for job in payload:
            jobs.setdefault((job.job_hash, job.task, job.method, job.seed, job.train_threshold),
                            job)
    return list(jobs.values())


def planned_variants(results: Path) -> dict[str, tuple[str | None, str]]:
    """Job hash -> (variant, precision) for every job of the saved plans: what names a
    running job's curves before it has records (reports.figures.job_tags)."""
    return {job.job_hash: (job.variant, job.precision) for job in load_plans(results)}


def check_environments(jobs: list[Job]) -> None:
    """Each method's own check of what its jobs need outside the harness (FISOR's official
    code: its checkout and interpreter), once per (method, config, task), for the jobs that
    still have something to record: a ConfigError before hours of jobs, not in each job."""
    seen = set()
    for job in jobs:
        key = (job.method, job.job_hash, job.task)
        if key in seen or not job.missing():
            continue
        seen.add(key)
        cls, config = job.method_config()
        cls.check_environment(config, job.task)


def parse_sets(items: list[str]) -> dict[str, str]:
    """`--set key=value` items as {key: value text} (each method parses its own values, by
    its Config's annotations); a later item of the same key wins. ConfigError for an item
    without "="."""
    sets = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, not {item!r}")
        key, value = item.split("=", 1)
        sets[key.strip()] = value.strip()
    return sets
