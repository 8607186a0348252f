"""Per-suite tables of mean normalized reward and cost, as the paper's Tables 3-5.

Bold marks a safe agent (normalized cost < 1); blue marks the safe agent with the highest
reward in the row, and every other safe agent within 0.05 of that reward whose cost is lower
(paper section 5, appendix A.4). A row with no safe agent has nothing bold or blue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.records import load_records
from tasks.registry import TASKS

#: the paper's column order; other methods follow alphabetically
METHOD_ORDER = ["BC-All", "BC-Safe", "CDT", "BCQ-Lag", "BEAR-Lag", "CPQ", "COptiDICE", "FISOR",
                "LSPC-S", "LSPC-O"]
BLUE_MARGIN = 0.05


def method_label(record: dict) -> str:
    """A method's column name: a config made with --set values says so ("LSPC-O [epsilon=1]")."""
    variant = record.get("variant") or ""
    return f"{record['method']} [{variant}]" if variant else record["method"]


def records_frame(results: Path) -> pd.DataFrame:
    rows = [{**{k: r[k] for k in ("task", "suite", "threshold", "seed", "profile",
                                  "data_source", "normalized_reward", "normalized_cost",
                                  "config_hash")}, "method": method_label(r)}
            for r in load_records(results)]
    columns = ["method", "task", "suite", "threshold", "seed", "profile", "data_source",
               "normalized_reward", "normalized_cost", "config_hash"]
    return pd.DataFrame(rows, columns=columns)


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean (and std over seeds x thresholds) per (suite, task, method)."""
    grouped = frame.groupby(["suite", "task", "method"])
    out = grouped.agg(reward=("normalized_reward", "mean"), cost=("normalized_cost", "mean"),
                      reward_std=("normalized_reward", "std"), cost_std=("normalized_cost", "std"),
                      n=("normalized_reward", "size"),
                      data_source=("data_source", lambda s: "+".join(sorted(set(s)))))
    return out.reset_index()


@dataclass(frozen=True)
class Cell:
    reward: float | None
    cost: float | None
    bold: bool = False
    blue: bool = False


def highlight(row: dict[str, tuple[float, float]]) -> dict[str, Cell]:
    """Bold and blue for one table row {method: (reward, cost)}."""
    safe = {m: rc for m, rc in row.items() if rc[1] < 1.0}
    cells = {m: Cell(r, c, bold=m in safe) for m, (r, c) in row.items()}
    if safe:
        best = max(safe, key=lambda m: safe[m][0])
        best_r, best_c = safe[best]
        for m, (r, c) in safe.items():
            if m == best or (r >= best_r - BLUE_MARGIN and c < best_c):
                cells[m] = Cell(r, c, bold=True, blue=True)
    return cells


def ordered_methods(methods) -> list[str]:
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(set(methods) - set(known))


def suite_rows(agg: pd.DataFrame, suite: str) -> tuple[list[str], list[tuple[str, dict]]]:
    """(methods, [(task label, {method: Cell})]) for a suite, with an Average row."""
    part = agg[agg.suite == suite]
    methods = ordered_methods(part.method.unique())
    task_order = [name for name, spec in TASKS.items() if spec.suite == suite]
    rows = []
    for task in [t for t in task_order if t in set(part.task)]:
        sub = part[part.task == task].set_index("method")
        rows.append((TASKS[task].paper_name,
                     highlight({m: (sub.loc[m, "reward"], sub.loc[m, "cost"])
                                for m in methods if m in sub.index})))
    if len(rows) > 1:
        means = part.groupby("method")[["reward", "cost"]].mean()
        rows.append(("Average", highlight({m: (means.loc[m, "reward"], means.loc[m, "cost"])
                                           for m in methods})))
    return methods, rows


def _fmt(x: float) -> str:
    text = f"{x:.2f}"
    return "0.00" if text == "-0.00" else text


def render_markdown(methods, rows, title: str) -> str:
    def cell(c: Cell | None) -> list[str]:
        if c is None:
            return ["", ""]
        r, k = _fmt(c.reward), _fmt(c.cost)
        if c.blue:
            return [f"**_{r}_**", f"**_{k}_**"]
        if c.bold:
            return [f"**{r}**", f"**{k}**"]
        return [r, k]

    header = "| Task | " + " | ".join(f"{m} reward ↑ | {m} cost ↓" for m in methods) + " |"
    sep = "|---|" + "---:|" * (2 * len(methods))
    lines = [f"### {title}", "", header, sep]
    for label, cells in rows:
        lines.append(f"| {label} | " + " | ".join(
            " | ".join(cell(cells.get(m))) for m in methods) + " |")
    lines += ["", "Bold: safe (normalized cost < 1). Bold italic: safe and best reward "
              f"(or within {BLUE_MARGIN} of it at lower cost)."]
    return "\n".join(lines)


def render_latex(methods, rows, title: str) -> str:
    def cell(c: Cell | None) -> str:
        if c is None:
            return " & "
        r, k = _fmt(c.reward), _fmt(c.cost)
        if c.blue:
            return rf"\textcolor{{blue}}{{\textbf{{{r}}}}} & \textcolor{{blue}}{{\textbf{{{k}}}}}"
        if c.bold:
            return rf"\textbf{{{r}}} & \textbf{{{k}}}"
        return f"{r} & {k}"

    cols = "l" + "rr" * len(methods)
    head = " & ".join(rf"\multicolumn{{2}}{{c}}{{{m}}}" for m in methods)
    sub = " & ".join(r"reward $\uparrow$ & cost $\downarrow$" for _ in methods)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{title}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule", f"Task & {head} \\\\",
             f" & {sub} \\\\", r"\midrule"]
    for label, cells in rows:
        if label == "Average":
            lines.append(r"\midrule")
        lines.append(f"{label} & " + " & ".join(cell(cells.get(m)) for m in methods) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def report(results: Path, fmt: str = "markdown", suites: list[str] | None = None,
           profile: str | None = None) -> str:
    frame = records_frame(results)
    if profile:
        frame = frame[frame.profile == profile]
    if frame.empty:
        return f"no records under {results}; run `python -m bench run --suite bullet` first"
    agg = aggregate(frame)
    render = {"markdown": render_markdown, "latex": render_latex}[fmt]
    parts = []
    for suite in suites or sorted(agg.suite.unique()):
        if suite not in set(agg.suite):
            continue
        methods, rows = suite_rows(agg, suite)
        sources = "+".join(sorted(set(frame[frame.suite == suite].data_source)))
        profiles = "+".join(sorted(set(frame[frame.suite == suite].profile)))
        n = frame[frame.suite == suite].groupby(["task", "method"]).size()
        title = (f"{suite}: normalized reward and cost, mean over thresholds and seeds "
                 f"(data: {'locally collected' if sources == 'local' else sources}; "
                 f"profile: {profiles}; "
                 + (f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}")
                 + " records per cell)")
        parts.append(render(methods, rows, title))
    return "\n\n".join(parts)
