"""The commands that read records: report, claims, plot."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.cli.args import COLLECT_PROFILE_NAMES, UserError, csv_items, name_damaged, results_folder
from bench.profiles import PROFILES


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
                          csv_items(args.suite) if args.suite else None,
                          csv_items(args.methods) if args.methods else None,
                          getattr(args, "profile", None))
        from reports.aggregate import read_published

        rows = check_claims(ours, read_published(PAPER_CSV), load_claims(args.claims))
    except ReportError as err:
        raise UserError(str(err)) from None
    print(render_claims(rows, args.format))
    return 0


def cmd_report(args) -> int:
    if args.transfer:
        return _report_transfer(args)
    if args.sweep:
        from reports.sweep import plot_sweep, sweep_frame
        from tabulate import tabulate

        frame = sweep_frame(Path(args.results), args.sweep)
        name_damaged(frame)
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
                     csv_items(args.suite) if args.suite else None,
                     csv_items(args.methods) if args.methods else None, args.profile, args.spread,
                     args.by_threshold, Path(args.input) if args.input else None, args.compare))
        if args.claims:
            from reports.aggregate import read_published
            from reports.claims import check_claims, load_claims, ours_frame, render_claims
            from reports.tables import PAPER_CSV

            ours = ours_frame(None if args.input else Path(args.results),
                              Path(args.input) if args.input else None,
                              csv_items(args.suite) if args.suite else None,
                              csv_items(args.methods) if args.methods else None, args.profile)
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
    name_damaged(frame)
    if args.format in ("markdown", "latex"):
        print(render_transfer(transfer_table(frame, source), args.format))
    elif args.format in ("csv", "json"):
        matrix = transfer_matrix(frame)
        print(matrix.to_csv(index=False) if args.format == "csv"
              else matrix.to_json(orient="records", indent=1))
    else:
        raise UserError(f"--transfer renders markdown, latex, csv or json, not {args.format}")
    return 0


def cmd_latent(args) -> int:
    import json

    from bench.latent import LatentError, find_run, latent_view, load_run, render, summarize

    if args.sample < 1:
        raise UserError(f"--sample is the number of transitions to read, at least 1, not "
                        f"{args.sample}")
    try:
        record = find_run(Path(args.results), args.task, args.method, args.seed, args.job)
        method, spec, arrays = load_run(Path(args.results), record)
    except LatentError as err:
        raise UserError(str(err)) from None
    view = latent_view(method, arrays, args.sample)
    summary = summarize(record, method, spec, view)
    print(json.dumps(summary, indent=1) if args.format == "json" else render(summary))
    if args.plot:
        from reports.figures import plot_latent

        threshold = spec.thresholds[len(spec.thresholds) // 2]
        paths = plot_latent(view, summary, threshold, Path(args.plot))
        print(f"plot: {paths[0]}", file=sys.stderr)
    return 0


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
            raise UserError("--kind curves needs --task (one, or several: CarRun,BallCircle)")
        tasks = csv_items(args.task)
        from bench.plan import planned_variants

        left_out: list = []
        paths = figures.plot_curves(results, tasks, Path(args.out or results /
                                                         f"curves-{'-'.join(tasks)}"),
                                    left_out, planned_variants(results))
        if left_out:  # an abandoned plan's runs (other data, another precision): not averaged in
            print(f"left out {len(left_out)} run(s) of no recorded or planned job, e.g. "
                  f"{left_out[0].parent}", file=sys.stderr)
    elif args.kind == "transfer":
        from bench.transfer import source_task
        from reports.transfer import plot_transfer, transfer_frame

        if not args.task:
            raise UserError("--kind transfer needs --task, the source (easysparse, ...)")
        source = source_task(args.task).name
        frame = transfer_frame(results, source)  # a ReportError is one line (cmd_plot)
        name_damaged(frame)
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
        name_damaged(frame)
        if frame.empty:
            raise UserError(f"no records of a sweep over {args.field!r} under {results}")
        paths = [plot_sweep(frame, args.field, Path(args.out or results / f"sweep-{args.field}"))]
        paths.append(paths[0].with_suffix(".pdf"))
    for path in paths:
        print(path)
    return 0


def add_parsers(add) -> None:
    """Its subcommands, each from `add(name, help)`."""
    p = add("report", "tables from the records (bold = safe, blue = best safe)")
    p.add_argument("--results", default="results", type=results_folder)
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
    p.add_argument("--profile", choices=list(PROFILES),
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
    p.add_argument("--results", help="a records folder", type=results_folder)
    p.add_argument("--input", metavar="CSV", help="numbers (columns suite,task,method,reward,"
                   "cost), e.g. reports/paper_results.csv")
    p.add_argument("--suite", help="comma-separated suites (default: all present)")
    p.add_argument("--methods", help="comma-separated methods (default: all present)")
    p.add_argument("--profile", choices=list(PROFILES),
                   help="only records of this profile")
    p.add_argument("--claims", metavar="JSON",
                   help="claims of your own (default: reports/paper_claims.json)")
    p.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    p.set_defaults(func=cmd_claims)
    p = add("latent", "what a trained LSPC run's latent space holds: the codes of the data's "
                      "actions, the restrictions of LSPC-S and LSPC-O, where the cost weights "
                      "put the CVAE's mass")
    p.add_argument("--task", required=True)
    p.add_argument("--method", default="LSPC", help="LSPC or LSPC-code")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--job", help="the job's hash (or its start) where several jobs match")
    p.add_argument("--results", default="results", type=results_folder)
    p.add_argument("--sample", type=int, default=20_000,
                   help="transitions read (a fixed draw; all where the file has fewer)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--plot", help="also draw the figure here (path without suffix)")
    p.set_defaults(func=cmd_latent)
    p = add("plot", "figures (PNG + PDF): training curves, a sweep, a dataset's scatter, the "
                    "transfer chart")
    p.add_argument("--kind", choices=["curves", "sweep", "dataset", "datasets", "transfer"],
                   required=True, help="curves: Fig. 2; sweep: Fig. 4; dataset: Fig. 10 (one "
                   "task); datasets: Fig. 10 for a --suite on one sheet; transfer: Fig. 12")
    p.add_argument("--task", help="for curves and dataset; for transfer, the source task")
    p.add_argument("--suite", help="for datasets: bullet, safetygym or metadrive")
    p.add_argument("--field", default="epsilon", help="for sweep: the swept config field")
    p.add_argument("--results", default="results", type=results_folder)
    p.add_argument("--data", choices=["auto", "dsrl", "local"], default="auto")
    p.add_argument("--profile", choices=list(COLLECT_PROFILE_NAMES), default="quick",
                   help="for dataset(s): which local collection")
    p.add_argument("--out", help="output path without suffix")
    p.set_defaults(func=cmd_plot)
