"""The command line: thin subcommands over library functions (heavy imports inside each)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXAMPLES = {
    "tasks": "python -m bench tasks --suite bullet --format json",
    "methods": "python -m bench methods --format json",
    "collect": "python -m bench collect --suite bullet --profile quick",
    "datasets": "python -m bench datasets --suite bullet [--format json]",
    "download": "python -m bench download --suite bullet [--mirror URL]",
    "run": "python -m bench run --suite bullet --methods BC-All,BC-Safe --profile quick",
    "report": "python -m bench report --format latex --layout summary",
    "plot": "python -m bench plot --kind curves --task CarRun",
    "status": "python -m bench status --results results",
    "claims": "python -m bench claims --results results [--format markdown|json]",
    "transfer": "python -m bench transfer --from easysparse --profile quick",
    "speed": "python -m bench speed --method all --precision bf16 --steps 10 --rounds 3",
}

#: tasks.collect.COLLECT_PROFILES' names, spelled out so that `--help` needs no numpy (a test
#: holds the two equal)
COLLECT_PROFILE_NAMES = ("smoke", "quick", "study", "paper")


class UserError(Exception):
    """Bad input: printed as one line, no traceback, exit status 2."""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes integers like 0,1,2, not {text!r}") from None
    if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(
            f"takes distinct integers >= 0 like 0,1,2, not {text!r}")
    return seeds


def _results_folder(text: str) -> str:
    """--results: a folder (made when first written), never an existing file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder for the records")
    return text


def _writable(folder: Path) -> bool:
    """Whether records can be written under `folder` (made here if missing)."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _selected_methods(text: str | None, registered) -> list[str]:
    """--methods as a list: every registered method when not given; an empty one is an error."""
    if text is None:
        return list(registered)
    methods = _csv(text)
    if not methods:
        raise UserError("--methods is empty: name at least one (`python -m bench methods` "
                        "lists them), or leave the flag out to run every method")
    return methods


def _module_name(spec: str) -> str:
    """The display name a --method-module class registers under (its `name`, else its class
    name), without registering it."""
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception:  # noqa: BLE001 - load_method_module reports it
        return ""
    return str(getattr(cls, "name", None) or attr).lower()


def _whole(least: int, meaning: str = ""):
    """An argparse type: a whole number of at least `least` (`meaning` says what 0 does)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, not {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(
                f"takes a whole number >= {least}{meaning}, not {value}")
        return value

    parse.__name__ = "whole number"
    return parse


_STEPS = _whole(1)
_COUNT = _whole(0, " (0: the default)")
_EVERY = _whole(0, " (0: never)")


def _device(text: str) -> str:
    """A torch device this machine has: checked when the command is parsed, so that a bad
    --device is one line here rather than a traceback in every job."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown torch device {text!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text}: this PyTorch ({torch.__version__}) sees no CUDA GPU; install a CUDA "
                "build of torch on a GPU machine, or leave --device out to train on the CPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: the harness trains on cpu, cuda or cuda:N")
    return "cpu" if device.type == "cpu" else text  # "cpu:0" is the CPU too


def _name_damaged(frame) -> None:
    """The damaged records a reader left out of `frame`, named on stderr (never averaged in)."""
    from bench.records import damaged_note

    if frame.attrs.get("damaged"):
        print(damaged_note(frame.attrs["damaged"]), file=sys.stderr)


def _selected_tasks(args) -> list:
    from tasks.registry import get_task, suite_tasks

    if args.tasks:
        return [get_task(name) for name in _csv(args.tasks)]
    if args.suite:
        return suite_tasks(args.suite)
    raise UserError("say which tasks: --suite bullet or --tasks BallRun,CarRun")


def cmd_tasks(args) -> int:
    from tasks.registry import TASKS, suite_tasks

    specs = suite_tasks(args.suite) if args.suite else list(TASKS.values())
    if args.format == "json":
        print(json.dumps([spec.as_dict() for spec in specs], indent=1))
    else:
        from tabulate import tabulate

        print(tabulate([(s.name, s.suite, s.env_id, s.max_episode_steps,
                         "/".join(f"{t:g}" for t in s.thresholds), s.reward_min, s.reward_max,
                         s.dataset_file) for s in specs],
                       headers=["task", "suite", "env id", "steps", "thresholds", "r_min",
                                "r_max", "official file"], floatfmt=".2f"))
    return 0


def cmd_collect(args) -> int:
    from joblib import Parallel, delayed

    from tasks.collect import CollectError, collect_task, format_summary
    from tasks.datasets import local_path

    specs = _selected_tasks(args)
    existing = [local_path(s, args.profile) for s in specs
                if local_path(s, args.profile).exists()]
    if existing and not args.force:
        print("already collected (kept; --force to collect again): "
              + ", ".join(p.name for p in existing))
    todo = [s for s in specs if args.force or not local_path(s, args.profile).exists()]
    n_jobs = min(args.jobs or 2, max(1, len(todo)))
    if todo:
        print(f"collecting {', '.join(s.name for s in todo)} ({args.profile} profile, "
              f"{n_jobs} in parallel)", flush=True)
    call = delayed(collect_task)
    try:
        summaries = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            call(spec, profile=args.profile, seed=args.seed, progress=(n_jobs == 1),
                 force=args.force) for spec in todo) if todo else []
        from tqdm import tqdm

        with tqdm(total=len(todo), desc="tasks collected", unit="task",
                  disable=n_jobs == 1 or not todo) as bar:
            done = []
            for summary in summaries:
                bar.write(format_summary(summary))
                bar.update(1)
                done.append(summary["task"])
    except CollectError as err:
        raise UserError(str(err)) from None
    if done:
        from tasks.composition import datasets_table, describe_dataset

        rows = [describe_dataset(s, local_path(s, args.profile), "local", args.profile)
                for s in specs if s.name in done]
        print("\nbeside the official files (`python -m bench datasets` prints this again):")
        print(datasets_table(rows))
    return 0


def cmd_datasets(args) -> int:
    from tasks.composition import datasets_table, describe_dataset, find_datasets
    from tasks.datasets import DatasetError, local_dir, official_dir
    from tasks.registry import TASKS, suite_tasks

    specs = (_selected_tasks(args) if args.tasks else
             suite_tasks(args.suite) if args.suite else list(TASKS.values()))
    rows, broken = [], []
    for spec in specs:
        for path, source, profile in find_datasets(spec):
            try:
                rows.append(describe_dataset(spec, path, source, profile))
            except DatasetError as err:
                broken.append(str(err))
    if args.format == "json":
        print(json.dumps(rows, indent=1))
    elif rows:
        print(datasets_table(rows))
    else:
        print(f"no dataset found for {', '.join(s.name for s in specs)} in {official_dir()} "
              f"(official) or {local_dir()} (local); `python -m bench collect` makes local ones")
    for message in broken:
        print(f"unreadable, left out: {message}", file=sys.stderr)
    return 0


def cmd_download(args) -> int:
    from tasks.datasets import download_official

    for spec in _selected_tasks(args):
        print(f"{spec.name}: {download_official(spec, args.mirror)}")
    return 0


def cmd_run(args) -> int:
    from algorithms import METHODS, load_entry_points, load_method_module
    from bench.plan import check_environments, plan_jobs, unknown_sets
    from bench.profiles import PROFILES
    from bench.schedule import run_jobs

    load_entry_points()  # installed methods of other packages count as registered
    specs = _selected_tasks(args)
    replace = {name.lower() for name in args.replace_method or []}
    method_modules = {}
    for spec in args.method_module or []:
        name = load_method_module(spec, replace=bool(replace) and _module_name(spec) in replace)
        method_modules[name] = spec
    methods = _selected_methods(args.methods, METHODS)
    sets = {}
    for item in args.set or []:
        if "=" not in item:
            raise UserError(f"--set takes key=value, not {item!r}")
        key, value = item.split("=", 1)
        sets[key.strip()] = value.strip()
    bad = unknown_sets(methods, sets)
    if bad:
        raise UserError(f"--set {', '.join(bad)}: no selected method has such a setting")
    seeds = args.seeds if args.seeds is not None else list(PROFILES[args.profile].seeds)
    missing_data: list | None = [] if args.dry_run else None  # a plan needs no data
    jobs = plan_jobs(specs, methods, seeds, args.profile, Path(args.results), args.data, sets,
                     steps=args.steps, device=args.device, eval_every=args.eval_every,
                     method_modules=method_modules, checkpoint_every=args.checkpoint_every,
                     tensorboard=args.tensorboard, missing_data=missing_data,
                     precision=args.precision, data_profile=args.data_profile)
    if args.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: pip install "
                            "tensorboard (the curves are in curve.csv without it)") from None
    if args.backend == "local" and args.scheduler:
        raise UserError("--scheduler is for --backend dask")
    todo = sum(bool(job.missing()) for job in jobs)
    sources = sorted({job.data_source for job in jobs})
    if args.dry_run:
        return _dry_run(jobs, args, missing_data)
    check_environments(jobs)  # what a method needs outside the harness (FISOR's official code)
    from bench.plan import save_plan
    from bench.records import set_aside

    todo = sum(bool(job.missing()) for job in jobs)
    if todo and not _writable(Path(args.results)):
        raise UserError(f"--results {args.results}: cannot write there (read-only or not "
                        "yours); give a folder you can write to")
    for job in jobs:  # a damaged record is kept aside and its job redone
        for path, problem in job.damaged():
            kept = set_aside(path)
            print(f"damaged record {path} ({problem}): moved to {kept.name}; its job runs "
                  "again", flush=True)
    plan, new_plan = None, False
    if todo:  # a finished selection writes nothing: it may sit in a read-only folder
        from bench.plan import plan_file

        new_plan = not plan_file(jobs, Path(args.results)).exists()
        plan = save_plan(jobs, Path(args.results))
    print(f"{len(jobs)} training jobs planned ({todo} to run, {len(jobs) - todo} already "
          f"recorded); data: {', '.join(sources)}; results in {args.results}", flush=True)
    from bench.schedule import BackendError

    try:
        outcomes = run_jobs(jobs, n_jobs=args.jobs, progress=not args.quiet,
                            retry_failed=args.retry_failed, backend=args.backend,
                            scheduler=args.scheduler)
    except BackendError as err:
        if new_plan and plan is not None:  # nothing ran: leave no pending plan behind
            plan.unlink(missing_ok=True)
        raise UserError(str(err)) from None
    count = {state: sum(o["status"] == state for o in outcomes)
             for state in ("ok", "skipped", "busy", "error", "failed earlier")}
    print(f"done: {count['ok']} trained, {count['skipped']} skipped, {count['error']} failed"
          + (f", {count['busy']} left to another process" if count["busy"] else "")
          + (f", {count['failed earlier']} failed earlier (rerun with --retry-failed)"
             if count["failed earlier"] else ""))
    for outcome in outcomes:
        if outcome["status"] == "error":
            print(f"  FAILED {outcome['job']}: {outcome['error']} (traceback in its "
                  ".error.json)")
    # a selection with a job standing failed is not done, whichever run it failed in
    return 1 if count["error"] or count["failed earlier"] else 0


def _workers(args) -> int:
    """Jobs at once that a dry run plans for: --jobs, else one per core."""
    return args.jobs or (os.cpu_count() or 1)


def _dry_run(jobs, args, missing_data=()) -> int:
    from tabulate import tabulate

    from bench.estimate import dry_run_table

    todo = [job for job in jobs if job.missing()]
    workers = _workers(args)
    rows, total = dry_run_table(todo, Path(args.results), workers)
    evaluations = sum(len(job.missing()) for job in todo)
    print(f"{len(todo)} training jobs, {evaluations} evaluations to run "
          f"({len(jobs) - len(todo)} jobs already recorded); results in {args.results}")
    if rows:
        print(tabulate(rows, headers=["method", "jobs", "evaluations", "steps/job",
                                      "core-hours", "speed from"]))
        print(f"estimated: {total['core_hours']:.2f} core-hours, about "
              f"{total['wall_hours']:.2f} h of wall time on {total['workers']} workers")
    if missing_data:
        print(f"\nno data yet for {len(missing_data)} task(s): the run itself needs them "
              "(`python -m bench download` where there is network, or `python -m bench "
              f"collect --profile {args.profile}`):")
        for spec, err in missing_data:
            print(f"  {spec.name}: {err}")
    return 0


def cmd_transfer(args) -> int:
    from algorithms import METHODS, load_entry_points
    from bench.plan import plan_jobs, save_plan
    from bench.profiles import PROFILES
    from bench.schedule import run_jobs
    from bench.transfer import run_transfers, save_transfer_plan, source_task
    from reports.aggregate import ReportError
    from reports.transfer import plot_transfer, render_transfer, transfer_frame, transfer_table
    from tasks.registry import suite_tasks

    load_entry_points()
    source = source_task(args.source)
    methods = _selected_methods(args.methods, METHODS)
    seeds = args.seeds if args.seeds is not None else list(PROFILES[args.profile].seeds)
    results = Path(args.results)
    jobs = plan_jobs([source], methods, seeds, args.profile, results, args.data,
                     steps=args.steps, device=args.device, precision=args.precision)
    targets = ([source_task(name).name for name in _csv(args.targets)] if args.targets
               else [spec.name for spec in suite_tasks("metadrive")])
    if args.dry_run:
        return _transfer_dry_run(jobs, targets, args)
    if not _writable(results):  # it writes at least its plans and its matrix
        raise UserError(f"--results {args.results}: cannot write there (read-only or not "
                        "yours); give a folder you can write to")
    save_plan(jobs, results)
    save_transfer_plan(jobs, targets, results)
    untrained = sum(bool(job.missing()) for job in jobs)
    print(f"{len(jobs)} agents trained on {source.name} ({untrained} to train first); "
          f"evaluating each on {len(_csv(args.targets)) if args.targets else 9} MetaDrive "
          "configurations", flush=True)
    outcomes = run_jobs(jobs, n_jobs=args.jobs, progress=not args.quiet)
    trained = [job for job in jobs if not job.missing()]
    failed = [o for o in outcomes if o["status"] in ("error", "failed earlier")]
    for outcome in failed:
        print(f"  not trained: {outcome['job']}: {outcome.get('error', '?')}")
    evaluations = run_transfers(trained, targets, n_jobs=args.jobs, progress=not args.quiet)
    errors = [o for o in evaluations if o["status"] == "error"]
    for outcome in errors:
        print(f"  FAILED {outcome['job']}: {outcome['error']}")
    try:
        frame = transfer_frame(results, source.name)
    except ReportError as err:
        raise UserError(str(err)) from None
    _name_damaged(frame)
    table = transfer_table(frame, source.name)
    out = Path(args.out) if args.out else results / "transfer" / f"{source.name}-matrix"
    out.parent.mkdir(parents=True, exist_ok=True)
    for fmt, suffix in (("markdown", ".md"), ("latex", ".tex")):
        out.with_suffix(suffix).write_text(render_transfer(table, fmt) + "\n")
    print(render_transfer(table, args.format))
    figures = plot_transfer(frame, source.name, out.with_name(out.name + "-chart"))
    print(f"written: {out.with_suffix('.md')}, {out.with_suffix('.tex')}, "
          + ", ".join(str(p) for p in figures))
    return 1 if failed or errors else 0


def _transfer_dry_run(jobs, targets, args) -> int:
    from bench.estimate import transfer_estimate

    print(f"transfer from {jobs[0].task}: {len(jobs)} agents, {len(targets)} targets")
    code = _dry_run(jobs, args)  # the agents still to train on the source, and their time
    workers = _workers(args)
    todo = transfer_estimate(jobs, targets, Path(args.results), workers)
    print(f"zero-shot evaluations to run: {todo['evaluations']}, ~{todo['seconds_each']:.0f} s "
          f"each on average (per method, from {todo['from']}): {todo['core_hours']:.2f} "
          f"core-hours, about {todo['wall_hours']:.2f} h of wall time on {workers} workers")
    return code


def cmd_claims(args) -> int:
    from reports.aggregate import ReportError
    from reports.claims import check_claims, load_claims, ours_frame, render_claims
    from reports.tables import PAPER_CSV

    if bool(args.input) == bool(args.results):
        raise UserError("give either --results DIR (records) or --input CSV (numbers)")
    try:
        if args.suite:
            from tasks.registry import suite_tasks

            suite_tasks(args.suite)
        ours = ours_frame(args.results and Path(args.results), args.input and Path(args.input),
                          _csv(args.suite) if args.suite else None,
                          _csv(args.methods) if args.methods else None,
                          getattr(args, "profile", None))
        from reports.aggregate import read_published

        rows = check_claims(ours, read_published(PAPER_CSV), load_claims(args.claims))
    except ReportError as err:
        raise UserError(str(err)) from None
    print(render_claims(rows, args.format))
    return 0


def cmd_status(args) -> int:
    from bench.status import format_status

    text, unreadable = format_status(Path(args.results))
    print(text)
    for problem in unreadable:
        print(f"error: {problem}; its jobs are not counted above. Delete it (a plan is only "
              "the list of jobs: rerunning their `bench run` selection writes it again)",
              file=sys.stderr)
    return 2 if unreadable else 0


def cmd_report(args) -> int:
    if args.transfer:
        return _report_transfer(args)
    if args.sweep:
        from tabulate import tabulate

        from reports.sweep import plot_sweep, sweep_frame

        frame = sweep_frame(Path(args.results), args.sweep)
        _name_damaged(frame)
        if frame.empty:
            raise UserError(f"no records of a sweep over {args.sweep!r} under {args.results}; "
                            f"run one with `--set {args.sweep}=v1,v2,...`")
        print(tabulate(frame, headers="keys", showindex=False, floatfmt=".3f"))
        plot = plot_sweep(frame, args.sweep, Path(args.plot or
                                                  Path(args.results) / f"sweep-{args.sweep}.png"))
        print(f"plot: {plot}")
        return 0
    from reports.tables import ReportError, report

    if args.claims and args.format in ("csv", "json"):
        raise UserError(f"--claims appends a ledger to a table; for {args.format} use "
                        f"`python -m bench claims --format json`")
    try:
        print(report(Path(args.results), args.format, args.layout,
                     _csv(args.suite) if args.suite else None,
                     _csv(args.methods) if args.methods else None, args.profile, args.spread,
                     args.by_threshold, Path(args.input) if args.input else None, args.compare))
        if args.claims:
            from reports.aggregate import read_published
            from reports.claims import check_claims, load_claims, ours_frame, render_claims
            from reports.tables import PAPER_CSV

            ours = ours_frame(None if args.input else Path(args.results),
                              Path(args.input) if args.input else None,
                              _csv(args.suite) if args.suite else None,
                              _csv(args.methods) if args.methods else None, args.profile)
            rows = check_claims(ours, read_published(PAPER_CSV), load_claims())
            fmt = {"markdown": "markdown", "html": "markdown"}.get(args.format, "text")
            heading = ("\n### The paper's claims on these numbers\n" if fmt == "markdown"
                       else "\nThe paper's claims on these numbers:\n")
            print(heading + "\n" + render_claims(rows, fmt))
    except (ReportError, OSError) as err:
        raise UserError(str(err)) from None
    return 0


def _report_transfer(args) -> int:
    """The transfer matrix from the records alone (nothing trained or evaluated): to see a
    run in progress, or render records made elsewhere."""
    from bench.transfer import source_task
    from reports.aggregate import ReportError
    from reports.transfer import render_transfer, transfer_frame, transfer_matrix, transfer_table

    source = source_task(args.transfer).name
    try:
        frame = transfer_frame(Path(args.results), source)
    except ReportError as err:
        raise UserError(str(err)) from None
    _name_damaged(frame)
    if args.format in ("markdown", "latex"):
        print(render_transfer(transfer_table(frame, source), args.format))
    elif args.format in ("csv", "json"):
        matrix = transfer_matrix(frame)
        print(matrix.to_csv(index=False) if args.format == "csv"
              else matrix.to_json(orient="records", indent=1))
    else:
        raise UserError(f"--transfer renders markdown, latex, csv or json, not {args.format}")
    return 0


def cmd_methods(args) -> int:
    import dataclasses

    from algorithms import METHODS, load_entry_points

    load_entry_points()
    rows = [{"name": name, "records": list(cls.policies) or [name],
             "threshold_agnostic": cls.threshold_agnostic, "wants": cls.wants,
             "steps": dict(cls.profile_steps),
             "config": {f.name: getattr(cls.Config(), f.name)
                        for f in dataclasses.fields(cls.Config)},
             "overridden_tasks": sorted(cls.overrides)} for name, cls in METHODS.items()]
    if args.format == "json":
        print(json.dumps(rows, indent=1, default=str))
    else:
        from tabulate import tabulate

        print(tabulate([(r["name"], ", ".join(r["records"]), r["threshold_agnostic"],
                         " / ".join(f"{k} {v:,}" for k, v in r["steps"].items()))
                        for r in rows],
                       headers=["method", "records", "threshold-agnostic", "training steps"]))
    return 0


def cmd_speed(args) -> int:
    from algorithms import METHODS, get_method
    from bench.speed import measure

    names = (list(METHODS) if args.method == "all"
             else [get_method(m.strip())[0] for m in args.method.split(",") if m.strip()])
    from algorithms.base import ConfigError

    results = []
    for name in names:
        try:
            results.append(measure(name, args.task, args.batch, args.steps, args.rounds,
                                   args.device, args.threads, reference=not args.no_reference,
                                   precision=args.precision))
        except ConfigError as err:  # --method all --precision bf16: one that cannot, named
            if len(names) == 1:
                raise
            print(f"{name}: skipped ({err})", file=sys.stderr)
            continue
        # for `bench run --dry-run`: one-thread CPU speeds, or a GPU's (threads aside)
        if args.batch is None and (results[-1]["threads"] == 1 or args.device != "cpu"):
            from bench.estimate import remember_speed

            remember_speed(name, results[-1]["task"], results[-1]["steps_per_s"], args.device,
                           args.precision)
        if not args.json and len(names) == 1:
            for key, value in results[-1].items():
                print(f"{key:32s} {value:.3f}" if isinstance(value, float)
                      else f"{key:32s} {value}")
    if args.json:
        print(json.dumps(results[0] if len(names) == 1 else results, indent=1))
    elif len(names) > 1 and args.precision != "fp32":
        print(speed_precision_table(results))
    elif len(names) > 1:
        from tabulate import tabulate

        def ratio(r):
            key = next((k for k in r if k.startswith("speedup_vs_")), None)
            return f"{r[key]:.2f}x vs {key[len('speedup_vs_'):]}" if key else "-"

        print(tabulate([(r["method"], r["batch_size"], f"{r['steps_per_s']:.2f}",
                         f"{r['gflop_per_step']:.2f}", f"{r['gflop_per_s']:.1f}", ratio(r))
                        for r in results],
                       headers=["method", "batch", "steps/s", "GFLOP/step", "GFLOP/s",
                                "speedup (same run)"]))
    return 0


def speed_precision_table(results: list[dict]) -> str:
    """`bench speed --precision bf16` over several methods: each one's low-precision step,
    its fp32 step and the fp32 reference (LSPC's straightforward step, osrl-lib's where
    installed), steps/s measured in the same run, and the three ratios."""
    from tabulate import tabulate

    def rate(r, key):
        return f"{r[key]:.2f}" if key in r else "-"

    def times(r, key):
        return f"{r[key]:.2f}x" if key in r else "-"

    rows = []
    for r in results:
        ref = next((k[len("speedup_vs_"):] for k in r if k.startswith("speedup_vs_")
                    and k not in ("speedup_vs_fp32", "speedup_vs_eager")), None)
        rows.append((r["method"], r["batch_size"], rate(r, "steps_per_s"),
                     rate(r, "fp32_steps_per_s"),
                     f"{r[ref + '_steps_per_s']:.2f} ({ref})" if ref else "-",
                     times(r, "speedup_vs_fp32"),
                     times(r, f"speedup_vs_{ref}") if ref else "-",
                     times(r, f"fp32_speedup_vs_{ref}") if ref else "-"))
    precision = results[0]["precision"] if results else "bf16"
    return tabulate(rows, headers=["method", "batch", f"{precision} steps/s", "fp32 steps/s",
                                   "fp32 reference steps/s", f"{precision} / fp32",
                                   f"{precision} / reference", "fp32 / reference"])


def cmd_plot(args) -> int:
    from reports.aggregate import ReportError

    try:
        return _plot(args)
    except ReportError as err:
        raise UserError(str(err)) from None


def _plot(args) -> int:
    from reports import figures

    results = Path(args.results)
    if args.kind == "curves":
        if not args.task:
            raise UserError("--kind curves needs --task")
        paths = figures.plot_curves(results, args.task, Path(args.out or results /
                                                            f"curves-{args.task}"))
    elif args.kind == "transfer":
        from bench.transfer import source_task
        from reports.transfer import plot_transfer, transfer_frame

        if not args.task:
            raise UserError("--kind transfer needs --task, the source (easysparse, ...)")
        source = source_task(args.task).name
        frame = transfer_frame(results, source)  # a ReportError is one line (cmd_plot)
        _name_damaged(frame)
        paths = plot_transfer(frame, source,
                              Path(args.out or results / "transfer" / f"{source}-matrix-chart"))
    elif args.kind == "datasets":
        from tasks.registry import suite_tasks

        if not args.suite:
            raise UserError("--kind datasets needs --suite (bullet, safetygym, metadrive)")
        paths = figures.plot_datasets(suite_tasks(args.suite),
                                      Path(args.out or results / f"data-{args.suite}"),
                                      args.data, args.profile)
    elif args.kind == "dataset":
        if not args.task:
            raise UserError("--kind dataset needs --task")
        paths = figures.plot_dataset(args.task, Path(args.out or results / f"data-{args.task}"),
                                     args.data, args.profile)
    else:
        from reports.sweep import plot_sweep, sweep_frame

        frame = sweep_frame(results, args.field)
        _name_damaged(frame)
        if frame.empty:
            raise UserError(f"no records of a sweep over {args.field!r} under {results}")
        paths = [plot_sweep(frame, args.field, Path(args.out or results / f"sweep-{args.field}"))]
        paths.append(paths[0].with_suffix(".pdf"))
    for path in paths:
        print(path)
    return 0


def add_precision(p, help_text: str = "") -> None:
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help=help_text or (
        "fp32 (default), or bf16: each method's hidden layers in bfloat16 (a GPU's tensor "
        "cores), heads, targets, losses, weights and optimizers in fp32 (README, Precision); "
        "a bf16 job is a job of its own, with records of its own"))


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line (what is wrong, where to read more) and exit 2, not the whole
    usage block before it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m bench", description="Safe offline RL benchmark harness (LSPC paper).",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def add(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text,
                              epilog=f"example:\n  {EXAMPLES[name]}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("tasks", "list the 28 DSRL tasks and their constants")
    p.add_argument("--suite", help="bullet | safetygym | metadrive | all, or a comma list")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_tasks)

    def add_task_selection(p):
        p.add_argument("--suite", help="bullet | safetygym | metadrive | all, or a comma list")
        p.add_argument("--tasks", help="comma-separated task names (any case, paper short forms)")
        p.add_argument("--profile", choices=["smoke", "quick", "paper"], default="quick",
                       help="budget: smoke (tests), quick (laptop), paper (cluster)")
        p.add_argument("--jobs", type=_COUNT, default=0,
                       help="jobs at once (default: one per core, or one per Dask worker)")

    p = add("methods", "list the registered methods, their profiles' steps and defaults")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_methods)

    p = add("collect", "collect DSRL-format datasets from the simulators (PPO-Lagrangian)")
    add_task_selection(p)
    p.set_defaults(profile="quick")
    for action in p._actions:
        if action.dest == "profile":  # collection has its own profiles (study: DSRL-like data)
            action.choices = list(COLLECT_PROFILE_NAMES)
            action.help = ("collection budget: smoke (tests), quick (minutes), study (DSRL-like, "
                           "about an hour of one core a task), paper (cluster)")
    p.add_argument("--seed", type=_whole(0), default=0)
    p.add_argument("--force", action="store_true", help="collect again over an existing file")
    p.set_defaults(func=cmd_collect)

    p = add("datasets", "the datasets on disk beside the official files' numbers")
    p.add_argument("--suite", help="bullet | safetygym | metadrive | all, or a comma list")
    p.add_argument("--tasks", help="comma-separated task names")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_datasets)

    p = add("download", "fetch the official DSRL files (needs network) into DSRL_DATASET_DIR")
    p.add_argument("--suite", help="bullet | safetygym | metadrive")
    p.add_argument("--tasks", help="comma-separated task names")
    p.add_argument("--mirror", help="a URL folder holding the files under their official names")
    p.set_defaults(func=cmd_download)

    p = add("run", "train and evaluate methods on tasks; one record per evaluated job")
    add_task_selection(p)
    p.add_argument("--methods", help="comma-separated (default: all registered)")
    p.add_argument("--method-module", action="append", metavar="PKG.MODULE:CLASS",
                   help="register a method from outside the repository (see README)")
    p.add_argument("--replace-method", action="append", metavar="NAME",
                   help="let a --method-module class take a registered method's name (its "
                        "records then stand in that method's place); refused otherwise")
    p.add_argument("--seeds", type=_seeds, help="comma-separated (default: the profile's)")
    p.add_argument("--results", default="results", type=_results_folder,
                   help="records folder (default ./results)")
    p.add_argument("--data", choices=["auto", "dsrl", "local"], default="auto",
                   help="official DSRL file, locally collected, or official if present (auto)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field of the methods that have it")
    p.add_argument("--steps", type=_STEPS, help="training steps (default: the method's profile)")
    p.add_argument("--device", type=_device, default="cpu",
                   help="torch device to train on: cpu, cuda or cuda:N (default cpu)")
    add_precision(p)
    p.add_argument("--data-profile", choices=list(COLLECT_PROFILE_NAMES),
                   help="with local data: the collection to train on (default: --profile's; "
                        "study: the DSRL-like files of `bench collect --profile study`)")
    p.add_argument("--eval-every", type=_EVERY,
                   help="evaluate every N steps during training for the curves (paper Fig. 2; "
                        "default: the profile's, 20000 for paper, none otherwise)")
    p.add_argument("--backend", choices=["local", "dask"], default="local",
                   help="local processes (joblib), or a Dask cluster (--scheduler)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="the Dask scheduler's address, for --backend dask")
    p.add_argument("--checkpoint-every", type=_EVERY, metavar="N",
                   help="save the training state every N steps, so a killed job resumes "
                        "there (default: the profile's: quick 1000, paper 20000; those "
                        "profiles also save every 5 / 10 minutes; 0: no checkpoints)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write each job's training curve as TensorBoard events")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun the jobs that failed in an earlier run (default: leave them)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (jobs, evaluations, estimated time) and run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = add("transfer", "MetaDrive zero-shot transfer matrix (paper Fig. 12): agents trained on "
                        "one configuration, evaluated on all nine")
    p.add_argument("--from", dest="source", required=True, metavar="TASK",
                   help="the MetaDrive source task, e.g. easysparse or harddense")
    p.add_argument("--methods", help="comma-separated (default: all registered)")
    p.add_argument("--targets", help="comma-separated MetaDrive targets (default: all nine)")
    p.add_argument("--seeds", type=_seeds, help="comma-separated (default: the profile's)")
    p.add_argument("--profile", choices=["smoke", "quick", "paper"], default="quick",
                   help="budget of the agents trained first where missing")
    p.add_argument("--steps", type=_STEPS, help="training steps (default: the method's profile)")
    p.add_argument("--results", default="results", type=_results_folder)
    p.add_argument("--data", choices=["auto", "dsrl", "local"], default="auto")
    p.add_argument("--device", type=_device, default="cpu",
                   help="torch device: cpu, cuda or cuda:N (default cpu)")
    add_precision(p)
    p.add_argument("--jobs", type=_COUNT, default=0, help="jobs at once (default: one per core)")
    p.add_argument("--format", choices=["markdown", "latex"], default="markdown",
                   help="what is printed (both are written)")
    p.add_argument("--out", help="path without suffix of the matrix files (default "
                                 "RESULTS/transfer/SOURCE-matrix)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true",
                   help="print what is left to train and evaluate, and its estimated time; "
                        "run nothing")
    p.set_defaults(func=cmd_transfer)

    p = add("status", "done / running / failed / pending jobs of a results folder")
    p.add_argument("--results", default="results", type=_results_folder)
    p.set_defaults(func=cmd_status)

    p = add("report", "tables from the records (bold = safe, blue = best safe)")
    p.add_argument("--results", default="results", type=_results_folder)
    p.add_argument("--format", choices=["markdown", "latex", "html", "csv", "json"],
                   default="markdown")
    p.add_argument("--layout", choices=["suite", "summary"], default="suite",
                   help="a table per suite (paper Tables 3-5) or stacked suites (Table 1)")
    p.add_argument("--suite", help="comma-separated suites (default: all with records)")
    p.add_argument("--methods", help="comma-separated methods (default: all)")
    p.add_argument("--spread", choices=["std", "ci"],
                   help="add the spread over seeds: std, or a 95%% bootstrap interval")
    p.add_argument("--by-threshold", action="store_true", help="a table per threshold")
    p.add_argument("--input", metavar="CSV",
                   help="render published numbers (columns suite,task,method,reward,cost)")
    p.add_argument("--compare", metavar="paper|CSV",
                   help="reproduced beside published numbers ('paper': the LSPC paper's)")
    p.add_argument("--profile", choices=["smoke", "quick", "paper"],
                   help="only records of this profile")
    p.add_argument("--claims", action="store_true",
                   help="append the ledger of the paper's claims (as `bench claims`)")
    p.add_argument("--transfer", metavar="SOURCE",
                   help="the MetaDrive transfer matrix from SOURCE (e.g. easysparse), from "
                        "the records `bench transfer` wrote; runs nothing")
    p.add_argument("--sweep", metavar="FIELD",
                   help="reward and cost against a swept config field (e.g. epsilon), with a plot")
    p.add_argument("--plot", help="where the sweep plot goes (default RESULTS/sweep-FIELD.png)")
    p.set_defaults(func=cmd_report)

    p = add("claims", "the paper's claims (section 5) checked on records or a CSV, each "
                      "beside the paper's own numbers on the same tasks")
    p.add_argument("--results", help="a records folder", type=_results_folder)
    p.add_argument("--input", metavar="CSV", help="numbers (columns suite,task,method,reward,"
                   "cost), e.g. reports/paper_results.csv")
    p.add_argument("--suite", help="comma-separated suites (default: all present)")
    p.add_argument("--methods", help="comma-separated methods (default: all present)")
    p.add_argument("--profile", choices=["smoke", "quick", "paper"],
                   help="only records of this profile")
    p.add_argument("--claims", metavar="JSON",
                   help="claims of your own (default: reports/paper_claims.json)")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    p.set_defaults(func=cmd_claims)

    p = add("plot", "figures (PNG + PDF): training curves, a sweep, a dataset's scatter, the "
                    "transfer chart")
    p.add_argument("--kind", choices=["curves", "sweep", "dataset", "datasets", "transfer"],
                   required=True, help="curves: Fig. 2; sweep: Fig. 4; dataset: Fig. 10 (one "
                   "task); datasets: Fig. 10 for a --suite on one sheet; transfer: Fig. 12")
    p.add_argument("--task", help="for curves and dataset; for transfer, the source task")
    p.add_argument("--suite", help="for datasets: bullet, safetygym or metadrive")
    p.add_argument("--field", default="epsilon", help="for sweep: the swept config field")
    p.add_argument("--results", default="results", type=_results_folder)
    p.add_argument("--data", choices=["auto", "dsrl", "local"], default="auto")
    p.add_argument("--profile", choices=list(COLLECT_PROFILE_NAMES), default="quick",
                   help="for dataset(s): which local collection")
    p.add_argument("--out", help="output path without suffix")
    p.set_defaults(func=cmd_plot)

    p = add("speed", "time a method's training step (steps/s, GFLOP/s), beside the reference "
                     "implementation of the same step in the same run")
    p.add_argument("--method", default="LSPC",
                   help="a method, a comma-separated list, or 'all' (every registered one)")
    p.add_argument("--task", default="AntRun", help="whose shapes the synthetic data take")
    p.add_argument("--batch", type=_STEPS,
                   help="batch size (default: the method's own, the paper's / OSRL's)")
    p.add_argument("--steps", type=_STEPS, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=_STEPS, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--threads", type=_STEPS, help="torch threads (default: torch's)")
    p.add_argument("--device", type=_device, default="cpu",
                   help="torch device: cpu, cuda or cuda:N (default cpu)")
    add_precision(p, "time this precision's step; bf16 also times the same method's fp32 "
                     "step and the fp32 reference in the same run (default fp32)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference step (LSPC's straightforward one, osrl-lib's for "
                        "the OSRL baselines where osrl-lib is installed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_speed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from algorithms.base import ConfigError
    from tasks.datasets import DatasetError
    from tasks.envs import EnvUnavailableError
    from tasks.registry import UnknownNameError

    user_errors = (UserError, UnknownNameError, DatasetError, ConfigError, EnvUnavailableError,
                   FileExistsError)
    try:
        return args.func(args)
    except user_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = ("the collection's finished segments are kept" if args.command == "collect"
                else "finished records are kept")
        print(f"interrupted: {kept}; run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # piped into `head` and the like: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
