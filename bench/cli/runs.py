"""The commands that train and evaluate: run (and its dry run), transfer, status."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.cli.args import (
    COLLECT_PROFILE_NAMES,
    COUNT,
    EVERY,
    STEPS,
    UserError,
    add_precision,
    add_task_selection,
    csv_items,
    module_name,
    name_damaged,
    planned_workers,
    refuse_emulated_bf16,
    results_folder,
    seed_list,
    selected_methods,
    selected_tasks,
    torch_device,
    writable,
)
from bench.profiles import PROFILES


def cmd_run(args) -> int:
    from algorithms import METHODS, load_entry_points, load_method_module
    from bench.plan import check_environments, parse_sets, plan_jobs, unknown_sets
    from bench.profiles import PROFILES
    from bench.schedule import run_jobs, summarize

    load_entry_points()  # installed methods of other packages count as registered
    specs = selected_tasks(args)
    replace = {name.lower() for name in args.replace_method or []}
    method_modules = {}
    for spec in args.method_module or []:
        name = load_method_module(spec, replace=bool(replace) and module_name(spec) in replace)
        method_modules[name] = spec
    methods = selected_methods(args.methods, METHODS)
    sets = parse_sets(args.set or [])
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
    if todo:
        refuse_emulated_bf16(args.precision, args.device)
    check_environments(jobs)  # what a method needs outside the harness (FISOR's official code)
    from bench.plan import save_plan
    from bench.records import set_aside

    todo = sum(bool(job.missing()) for job in jobs)
    if todo and not writable(Path(args.results)):
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
    text, code = summarize(outcomes)
    print(text)
    return code


def _dry_run(jobs, args, missing_data=()) -> int:
    from bench.estimate import dry_run_table
    from tabulate import tabulate

    todo = [job for job in jobs if job.missing()]
    workers = planned_workers(args)
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
    from bench.experiments import transfer_experiment
    from bench.plan import plan_jobs
    from bench.profiles import PROFILES
    from bench.transfer import source_task
    from reports.aggregate import ReportError
    from reports.transfer import render_transfer, transfer_frame, transfer_table, write_matrix
    from tasks.registry import suite_tasks

    load_entry_points()
    source = source_task(args.source)
    methods = selected_methods(args.methods, METHODS)
    seeds = args.seeds if args.seeds is not None else list(PROFILES[args.profile].seeds)
    results = Path(args.results)
    jobs = plan_jobs([source], methods, seeds, args.profile, results, args.data,
                     steps=args.steps, device=args.device, precision=args.precision)
    targets = ([source_task(name).name for name in csv_items(args.targets)] if args.targets
               else [spec.name for spec in suite_tasks("metadrive")])
    if args.dry_run:
        return _transfer_dry_run(jobs, targets, args)
    if not writable(results):  # it writes at least its plans and its matrix
        raise UserError(f"--results {args.results}: cannot write there (read-only or not "
                        "yours); give a folder you can write to")
    untrained = sum(bool(job.missing()) for job in jobs)
    if untrained:
        refuse_emulated_bf16(args.precision, args.device)
    print(f"{len(jobs)} agents trained on {source.name} ({untrained} to train first); "
          f"evaluating each on {len(targets)} MetaDrive configurations", flush=True)
    done = transfer_experiment(jobs, targets, results, n_jobs=args.jobs,
                               progress=not args.quiet)
    for outcome in done.training_failures:
        print(f"  not trained: {outcome['job']}: {outcome.get('error', '?')}")
    for outcome in done.evaluation_failures:
        print(f"  FAILED {outcome['job']}: {outcome['error']}")
    try:
        frame = transfer_frame(results, source.name)
    except ReportError as err:
        raise UserError(str(err)) from None
    name_damaged(frame)
    out = Path(args.out) if args.out else results / "transfer" / f"{source.name}-matrix"
    written = write_matrix(frame, source.name, out)
    print(render_transfer(transfer_table(frame, source.name), args.format))
    print("written: " + ", ".join(str(p) for p in written))
    return 1 if done.training_failures or done.evaluation_failures else 0


def _transfer_dry_run(jobs, targets, args) -> int:
    from bench.estimate import transfer_estimate

    print(f"transfer from {jobs[0].task}: {len(jobs)} agents, {len(targets)} targets")
    code = _dry_run(jobs, args)  # the agents still to train on the source, and their time
    workers = planned_workers(args)
    todo = transfer_estimate(jobs, targets, Path(args.results), workers)
    print(f"zero-shot evaluations to run: {todo['evaluations']}, ~{todo['seconds_each']:.0f} s "
          f"each on average (per method, from {todo['from']}): {todo['core_hours']:.2f} "
          f"core-hours, about {todo['wall_hours']:.2f} h of wall time on {workers} workers")
    return code


def cmd_status(args) -> int:
    from bench.status import format_status

    text, unreadable = format_status(Path(args.results))
    print(text)
    for problem in unreadable:
        print(f"error: {problem}; its jobs are not counted above. Delete it (a plan is only "
              "the list of jobs: rerunning their `bench run` selection writes it again)",
              file=sys.stderr)
    return 2 if unreadable else 0


def add_parsers(add) -> None:
    """Its subcommands, each from `add(name, help)`."""
    p = add("run", "train and evaluate methods on tasks; one record per evaluated job")
    add_task_selection(p)
    p.add_argument("--methods", help="comma-separated (default: all registered)")
    p.add_argument("--method-module", action="append", metavar="PKG.MODULE:CLASS",
                   help="register a method from outside the repository (see README)")
    p.add_argument("--replace-method", action="append", metavar="NAME",
                   help="let a --method-module class take a registered method's name (its "
                        "records then stand in that method's place); refused otherwise")
    p.add_argument("--seeds", type=seed_list, help="comma-separated (default: the profile's)")
    p.add_argument("--results", default="results", type=results_folder,
                   help="records folder (default ./results)")
    p.add_argument("--data", choices=["auto", "dsrl", "local"], default="auto",
                   help="official DSRL file, locally collected, or official if present (auto)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field of the methods that have it")
    p.add_argument("--steps", type=STEPS, help="training steps (default: the method's profile)")
    p.add_argument("--device", type=torch_device, default="cpu",
                   help="torch device to train on: cpu, cuda or cuda:N (default cpu)")
    add_precision(p)
    p.add_argument("--data-profile", choices=list(COLLECT_PROFILE_NAMES),
                   help="with local data: the collection to train on (default: --profile's; "
                        "study: the DSRL-like files of `bench collect --profile study`)")
    p.add_argument("--eval-every", type=EVERY,
                   help="evaluate every N steps during training for the curves (paper Fig. 2; "
                        "default: the profile's, 20000 for paper, none otherwise)")
    p.add_argument("--backend", choices=["local", "dask"], default="local",
                   help="local processes (joblib), or a Dask cluster (--scheduler)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="the Dask scheduler's address, for --backend dask")
    p.add_argument("--checkpoint-every", type=EVERY, metavar="N",
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
    p.add_argument("--seeds", type=seed_list, help="comma-separated (default: the profile's)")
    p.add_argument("--profile", choices=list(PROFILES), default="quick",
                   help="budget of the agents trained first where missing")
    p.add_argument("--steps", type=STEPS, help="training steps (default: the method's profile)")
    p.add_argument("--results", default="results", type=results_folder)
    p.add_argument("--data", choices=["auto", "dsrl", "local"], default="auto")
    p.add_argument("--device", type=torch_device, default="cpu",
                   help="torch device: cpu, cuda or cuda:N (default cpu)")
    add_precision(p)
    p.add_argument("--jobs", type=COUNT, default=0, help="jobs at once (default: one per core)")
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
    p.add_argument("--results", default="results", type=results_folder)
    p.set_defaults(func=cmd_status)
