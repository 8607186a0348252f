"""The paper's tables from records (or from published numbers): layouts, provenance, compare.

Layouts: "suite" gives one table per suite as the paper's Tables 3, 4 and 5 (rows: tasks,
then Average; columns: methods with reward and cost); "summary" stacks the suites under
section rows, each with its Average, as Table 1. Highlighting: reports/highlight.py.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pandas as pd

from reports.aggregate import (AVERAGE, SUITE_ORDER, ReportError, aggregate,  # noqa: F401
                               read_published, records_frame, single_precision, task_label,
                               task_order, with_averages)
from reports.highlight import highlight
from reports.render import (Section, Table, render_csv, render_html, render_json,
                            render_latex, render_markdown)

#: the paper's column order (Tables 3-5); other methods follow alphabetically
METHOD_ORDER = ["BC-All", "BC-Safe", "CDT", "BCQ-Lag", "BEAR-Lag", "CPQ", "COptiDICE", "FISOR",
                "LSPC-S", "LSPC-O", "LSPC-S-code", "LSPC-O-code"]
SUITE_TITLES = {"metadrive": "MetaDrive", "safetygym": "Safety Gym",
                "bullet": "Bullet Safety Gym"}
FORMATS = ("markdown", "latex", "html", "csv", "json")
PAPER_CSV = Path(__file__).with_name("paper_results.csv")


def ordered_methods(methods) -> list[str]:
    methods = list(dict.fromkeys(methods))
    base = {m: m.split(" [")[0] for m in methods}
    known = [m for key in METHOD_ORDER for m in methods if base[m] == key]
    return known + sorted(set(methods) - set(known))


def _section(long: pd.DataFrame, suite: str, methods: list[str], label: str | None) -> Section:
    part = long[long.suite == suite]
    rows = []
    for task in task_order(suite, part.task):
        sub = part[part.task == task].set_index("method")
        row = {m: tuple(sub.loc[m, ["reward", "cost", "reward_spread", "cost_spread"]])
               if m in sub.index else (None, None) for m in methods}
        rows.append((task, task_label(task), highlight(row)))
    return Section(suite, label, rows)


def build_tables(long: pd.DataFrame, layout: str = "suite", methods: list[str] | None = None,
                 title: str = "", notes: list[str] | None = None) -> list[Table]:
    """Decided tables (cells with bold/blue) from a long frame that has Average rows."""
    methods = ordered_methods(methods or long.method.unique())
    suites = [s for s in SUITE_ORDER if s in set(long.suite)]
    suites += sorted(set(long.suite) - set(suites))
    notes = notes or []
    if layout == "summary":
        sections = [_section(long, s, methods, SUITE_TITLES.get(s, s) + ":") for s in suites]
        return [Table(title or "Normalized reward and cost (mean over thresholds and seeds)",
                      methods, sections, notes)]
    return [Table(f"{SUITE_TITLES.get(s, s)}: {title or 'normalized reward and cost'}",
                  methods, [_section(long, s, methods, None)], notes) for s in suites]


def render(tables: list[Table], fmt: str) -> str:
    if fmt == "json":
        return render_json(tables)
    if fmt == "csv":
        return render_csv(tables)
    one = {"markdown": render_markdown, "latex": render_latex, "html": render_html}[fmt]
    return "\n\n".join(one(table) for table in tables)


def seed_note(frame: pd.DataFrame) -> str:
    """The seeds of the records, and which methods have fewer (a run still going, or a failed
    job): their cells average fewer runs than the others'. A seed some of a method's
    (task, threshold) pairs have and others lack is named apart, with how many have it."""
    every = sorted(set(frame.seed))
    units = [column for column in ("suite", "task", "threshold") if column in frame]
    unit_name = ("(task, threshold) pairs" if "threshold" in units
                 else "tasks" if "task" in units else "cells")
    fewer: dict[str, list[str]] = {}
    for method, part in frame.groupby("method"):
        per_unit = (part.groupby(units).seed.agg(frozenset).tolist() if units
                    else [frozenset(part.seed)])
        everywhere = frozenset.intersection(*per_unit)
        somewhere = frozenset.union(*per_unit) - everywhere
        if sorted(everywhere) == every:
            continue
        text = ", ".join(str(s) for s in sorted(everywhere)) or "none everywhere"
        if somewhere:
            more = sum(len(seeds) > len(everywhere) for seeds in per_unit)
            text += (f", plus {', '.join(str(s) for s in sorted(somewhere))} in {more} of "
                     f"{len(per_unit)} {unit_name}")
        fewer.setdefault(text, []).append(method)
    text = ", ".join(str(s) for s in every)
    if fewer:
        text += " (only " + "; ".join(f"{', '.join(sorted(methods))}: {seeds}"
                                      for seeds, methods in sorted(fewer.items())) + ")"
    return text


def harness_note(frame: pd.DataFrame) -> str:
    """The harness versions and commits the records were made with. A run resumed across many
    commits would list them all, so past three a version says how many and which commit made
    its newest record (each record names its own)."""
    parts = []
    for version, part in frame.groupby(frame.bench_version.fillna("?")):
        shas = sorted({(sha or "")[:8] for sha in part.git_sha})
        if len(shas) <= 3:
            parts.append(f"{version} ({', '.join(shas)})")
        else:
            newest = (part.sort_values("created").git_sha.iloc[-1]
                      if "created" in part else None) or ""
            parts.append(f"{version} ({len(shas)} commits, the newest record from "
                         f"{newest[:8]})")
    return ", ".join(parts)


def provenance_notes(frame: pd.DataFrame) -> list[str]:
    """What the numbers come from: data, profile and steps, seeds, thresholds, harness."""
    sources = sorted(set(frame.data_source))
    data = ", ".join({"local": "locally collected (bench collect)",
                      "dsrl": "official DSRL"}.get(s, s) for s in sources)
    steps = ", ".join(f"{m} {int(s):,}" for m, s in
                      frame.groupby("method").steps.max().items())
    thresholds = "; ".join(f"{suite} {'/'.join(f'{t:g}' for t in sorted(set(part.threshold)))}"
                           for suite, part in frame.groupby("suite"))
    # a per-threshold method has one config per threshold: compare within a threshold
    mixed = frame.groupby(["task", "method", "threshold"]).config_hash.nunique()
    mixed = mixed[mixed > 1]
    warnings = [f"Warning: {len(mixed)} cell(s) average records of different configs or data "
                f"(e.g. {mixed.index[0][1]} on {mixed.index[0][0]}); use --profile or separate "
                "--results folders"] if len(mixed) else []
    precisions = sorted(set(frame.precision)) if "precision" in frame else ["fp32"]
    precision = (f"Precision: {precisions[0]}" if len(precisions) == 1 else
                 f"Precision: {' and '.join(precisions)} (a column says one other than fp32)")
    return warnings + [f"Data: {data}. Profile: {', '.join(sorted(set(frame.profile)))}; "
            f"training steps: {steps}. {precision}.",
            f"Seeds: {seed_note(frame)}; thresholds: {thresholds}; {len(frame)} records.",
            f"Harness {harness_note(frame)}; report made "
            f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC."]


def same_tasks(published: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """The published numbers on the tasks `long` has: where those are some of a suite's
    tasks, the suite's published Average is replaced by the mean over the same tasks (for a
    method with all of them), so an Average row of a few tasks is never set beside the
    paper's average over the whole suite."""
    parts = []
    for suite, part in published.groupby("suite"):
        ours = set(long[(long.suite == suite) & (long.task != AVERAGE)].task)
        theirs = set(part.task) - {AVERAGE}
        if ours and ours < theirs:
            part = with_averages(part[part.task.isin(ours)])
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else published


def compare_frame(long: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Reproduced beside published, with the difference (reproduced - published); the
    published Averages over the same tasks as the reproduced ones (same_tasks)."""
    published = same_tasks(published, long)
    merged = long.merge(published[["suite", "task", "method", "reward", "cost"]],
                        on=["suite", "task", "method"], how="left", suffixes=("", "_paper"))
    merged["reward_diff"] = merged.reward - merged.reward_paper
    merged["cost_diff"] = merged.cost - merged.cost_paper
    columns = ["suite", "task", "method", "reward", "reward_paper", "reward_diff", "cost",
               "cost_paper", "cost_diff"]
    order = {m: i for i, m in enumerate(ordered_methods(merged.method))}
    merged["_m"] = merged.method.map(order)
    merged["_t"] = [task_order(s, [t, AVERAGE]).index(t) if t != AVERAGE else 99
                    for s, t in zip(merged.suite, merged.task)]
    return merged.sort_values(["suite", "_t", "_m"])[columns].reset_index(drop=True)


def render_compare(frame: pd.DataFrame, fmt: str) -> str:
    from tabulate import tabulate

    if fmt == "json":
        return frame.replace({np.nan: None}).to_json(orient="records", indent=1)
    if fmt == "csv":
        return frame.to_csv(index=False)
    table = frame.assign(task=frame.task.map(task_label))
    table = table.astype(object).where(table.notna(), None)  # a missing number is a dash
    tablefmt = {"markdown": "github", "latex": "latex_booktabs", "html": "html"}[fmt]
    return tabulate(table, headers="keys", showindex=False, floatfmt="+.2f",
                    tablefmt=tablefmt, missingval="–")


def _matching_methods(asked: list[str], present: list[str]) -> list[str]:
    """The recorded method labels asked for, matched in any case; a name matching none is
    kept as given (the report then says nothing matches, naming what there is)."""
    folded = {name.lower(): name for name in present}
    return [folded.get(name.lower(), name) for name in asked]


def report(results: Path | None = None, fmt: str = "markdown", layout: str = "suite",
           suites: list[str] | None = None, methods: list[str] | None = None,
           profile: str | None = None, spread: str | None = None, by_threshold: bool = False,
           input_csv: Path | None = None, compare: str | None = None) -> str:
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if suites:
        from tasks.registry import suite_tasks

        suite_tasks(",".join(suites))  # an unknown suite: "did you mean", as run says it
    if input_csv is not None:
        long = read_published(Path(input_csv))
        if suites:
            long = long[long.suite.isin(suites)]
        long = with_averages(long)
        notes = [f"Published numbers from {Path(input_csv).name} (not reproduced here)."]
        frame = None
    else:
        frame = records_frame(Path(results))
        damaged = frame.attrs.get("damaged", [])
        everything = frame
        if profile:
            frame = frame[frame.profile == profile]
        if suites:
            frame = frame[frame.suite.isin(suites)]
        frame = single_precision(frame)
        if methods:  # in any case, as `bench run --methods` takes them
            methods = _matching_methods(methods, list(everything.method.unique())
                                        + list(frame.method.unique()))
            frame = frame[frame.method.isin(methods)]
        if everything.empty:
            raise ReportError(f"no records under {results}"
                              + (f" ({len(damaged)} damaged)" if damaged else "")
                              + "; run `python -m bench run --suite bullet` first")
        if frame.empty:
            raise ReportError(
                f"none of the {len(everything)} records under {results} matches "
                + ", ".join(f"{flag} {value}" for flag, value in (
                    ("--profile", profile), ("--suite", ",".join(suites or [])),
                    ("--methods", ",".join(methods or []))) if value)
                + f"; they hold profiles {', '.join(sorted(everything.profile.dropna().unique()))}"
                f", suites {', '.join(sorted(everything.suite.unique()))} and methods "
                f"{', '.join(sorted(everything.method.unique()))}")
        notes = provenance_notes(frame)
        if damaged:
            notes.append(f"{len(damaged)} damaged record(s) left out, not averaged in: "
                         + "; ".join(f"{path} ({problem})" for path, problem in damaged))
    if compare is not None:
        if frame is None:
            raise ReportError("--compare compares records with published numbers; "
                              "give --results, not --input")
        published = read_published(PAPER_CSV if compare == "paper" else Path(compare))
        ours = with_averages(aggregate(frame))
        differences = render_compare(compare_frame(ours, published), fmt)
        if fmt in ("json", "csv"):
            return differences
        # readable formats: ours and theirs on the same tasks and methods, each with its bold
        # and blue (blue: the best safe among the methods shown), then the differences
        source = "the LSPC paper" if compare == "paper" else Path(compare).name
        theirs = same_tasks(published, ours)
        shown = set(zip(ours.suite, ours.task))
        theirs = theirs[np.array([cell in shown for cell in zip(theirs.suite, theirs.task)])
                        & theirs.method.isin(set(ours.method)).to_numpy()]
        tables = build_tables(ours, layout, methods, notes=notes)
        if not theirs.empty:
            tables += build_tables(
                theirs, layout, methods, title=f"{source}'s numbers on the same tasks",
                notes=[f"Published by {source}, not reproduced here; bold and blue decided "
                       "among the methods shown, the Average over the tasks shown."])
        heading = {"markdown": "### Reproduced minus published\n\n", "html": "<h3>Reproduced "
                   "minus published</h3>\n", "latex": "% reproduced minus published\n"}[fmt]
        return render(tables, fmt) + "\n\n" + heading + differences
    if frame is None:
        if methods:
            long = long[long.method.isin(methods)]
        if long.empty:
            raise ReportError(f"{input_csv}: no rows for the selected suites and methods")
        return render(build_tables(long, layout, methods, notes=notes), fmt)
    if by_threshold:
        agg = aggregate(frame, spread, by_threshold=True)
        tables = []
        for (suite, threshold), part in agg.groupby(["suite", "threshold"]):
            tables += build_tables(with_averages(part.drop(columns="threshold")), "suite",
                                   methods, title=f"threshold {threshold:g}", notes=notes)
        return render(tables, fmt)
    long = with_averages(aggregate(frame, spread))
    return render(build_tables(long, layout, methods, notes=notes), fmt)
