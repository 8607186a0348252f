"""The zero-shot transfer matrix (paper A.6, Fig. 12), from transfer records only.

Rows are the nine MetaDrive target configurations, columns the methods, cells the normalized
reward and cost (mean over seeds and thresholds, as the main tables); the same bold/blue rule
(reports/highlight.py) decides the highlighting. The chart has one panel per method; each
groups, per target, a plain bar of reward and a hatched bar of cost, with a dashed line at
the normalized threshold (cost 1: the threshold itself, after DSRL's normalization, so the
three thresholds of the paper's figure are one line here).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.records import load_records
from reports.aggregate import ReportError, method_label, task_label
from reports.figures import _save
from reports.highlight import SAFE_BELOW, highlight
from reports.render import Section, Table, render_latex, render_markdown
from reports.tables import ordered_methods, seed_note
from tasks.registry import suite_tasks


def transfer_frame(results: Path, source: str) -> pd.DataFrame:
    """Per (target, method, seed): the mean over thresholds of normalized reward and cost."""
    scan = load_records(results, transfer_from=source)
    rows = [{"target": r["task"], "method": method_label(r), "seed": r["seed"],
             "threshold": r["threshold"], "reward": r["normalized_reward"],
             "cost": r["normalized_cost"], "data_source": r.get("data_source"),
             "profile": r.get("profile"), "steps": r.get("steps")}
            for r in scan]
    if not rows:
        raise ReportError(f"no transfer records from {source} under {results}; run "
                          f"`python -m bench transfer --from {source}`"
                          + (f" ({len(scan.damaged)} damaged record(s) left out)"
                             if scan.damaged else ""))
    frame = pd.DataFrame(rows)
    frame.attrs["damaged"] = list(scan.damaged)  # named by the caller, never averaged in
    return frame


def transfer_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """(target, method) -> reward, cost: mean over thresholds within a seed, then over seeds."""
    per_seed = frame.groupby(["target", "method", "seed"])[["reward", "cost"]].mean()
    return per_seed.groupby(level=["target", "method"]).mean().reset_index()


def transfer_table(frame: pd.DataFrame, source: str) -> Table:
    matrix = transfer_matrix(frame)
    methods = ordered_methods(matrix.method.unique())
    targets = [spec.name for spec in suite_tasks("metadrive") if spec.name in set(matrix.target)]
    rows = []
    for target in targets:
        part = matrix[matrix.target == target].set_index("method")
        row = {m: (part.loc[m, "reward"], part.loc[m, "cost"]) if m in part.index
               else (None, None) for m in methods}
        label = task_label(target) + (" (source)" if target == source else "")
        rows.append((target, label, highlight(row)))
    sources = ", ".join(sorted(set(frame.data_source.dropna())))
    steps = ", ".join(f"{m} {int(s):,}" for m, s in
                      frame.groupby("method").steps.max().items() if pd.notna(s))
    notes = [f"Trained on {task_label(source)}; evaluated zero-shot on each target "
             "(normalized with the target's constants).",
             f"Data: {sources}. Profile: {', '.join(sorted(set(frame.profile.dropna())))}; "
             f"training steps: {steps}.",
             f"Seeds: {seed_note(frame)}; thresholds: "
             f"{'/'.join(f'{t:g}' for t in sorted(set(frame.threshold)))}."]
    return Table(f"MetaDrive zero-shot transfer from {task_label(source)}", methods,
                 [Section("metadrive", None, rows)], notes)


def render_transfer(table: Table, fmt: str) -> str:
    return {"markdown": render_markdown, "latex": render_latex}[fmt](table)


def plot_transfer(frame: pd.DataFrame, source: str, path: Path) -> list[Path]:
    """Fig. 12, one panel per method: per target, reward (plain) and cost (hatched) bars.

    The paper's figure shows one agent (LSPC); with ten methods, twenty bars to a target
    cannot be read, so each method gets the paper's panel, on one shared y axis so that
    heights compare across panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = transfer_matrix(frame)
    methods = ordered_methods(matrix.method.unique())
    targets = [spec.name for spec in suite_tasks("metadrive") if spec.name in set(matrix.target)]
    n_cols = 1 if len(methods) == 1 else 2
    n_rows = -(-len(methods) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, sharey=True, squeeze=False,
                             figsize=(max(7, 0.8 * len(targets)) * n_cols, 2.4 * n_rows + 1))
    colors = plt.get_cmap("tab10").colors
    width = 0.38
    x = range(len(targets))
    for i, (method, ax) in enumerate(zip(methods, axes.flat)):
        part = matrix[matrix.method == method].set_index("target").reindex(targets)
        color = colors[i % 10]
        ax.bar([v - width / 2 for v in x], part.reward, width, color=color, label="reward")
        ax.bar([v + width / 2 for v in x], part.cost, width, color="white", edgecolor=color,
               hatch="///", label="cost")
        ax.axhline(SAFE_BELOW, color="black", linestyle="--", linewidth=1,
                   label="threshold (normalized cost 1)")
        ax.set_title(method, fontsize=10)
        ax.set_xticks(list(x))
        # target names only under the lowest panel of each column
        if i + n_cols >= len(methods):
            ax.set_xticklabels([task_label(t) + ("*" if t == source else "")
                                for t in targets], rotation=30, ha="right", fontsize=8)
        else:
            ax.set_xticklabels([])
    for ax in axes.flat[len(methods):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("normalized reward / cost", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=3, fontsize=8)
    fig.suptitle(f"Zero-shot transfer from {task_label(source)} (* source)", x=0.02,
                 ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97 if n_rows > 1 else 0.92))
    return _save(fig, path)


def write_matrix(frame: pd.DataFrame, source: str, out: Path) -> list[Path]:
    """The matrix as Markdown and LaTeX (out.md, out.tex) and its chart (out-chart.png and
    .pdf); returns every path written."""
    table = transfer_table(frame, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt, suffix in (("markdown", ".md"), ("latex", ".tex")):
        written.append(out.with_suffix(suffix))
        written[-1].write_text(render_transfer(table, fmt) + "\n")
    return written + plot_transfer(frame, source, out.with_name(out.name + "-chart"))
