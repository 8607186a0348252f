"""The zero-shot transfer matrix (paper A.6, Fig. 12), from transfer records only.

Rows are the nine MetaDrive target configurations, columns the methods, cells the normalized
reward and cost (mean over seeds and thresholds, as the main tables); the same bold/blue rule
(reports/highlight.py) decides the highlighting. The chart groups, per target, a plain bar of
reward and a hatched bar of cost for each method, with a dashed line at the normalized
threshold (cost 1: the threshold itself, after DSRL's normalization).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.records import load_records
from reports.aggregate import ReportError, task_label
from reports.figures import _save
from reports.highlight import SAFE_BELOW, highlight
from reports.render import Section, Table, render_latex, render_markdown
from reports.tables import ordered_methods, seed_note
from tasks.registry import suite_tasks


def transfer_frame(results: Path, source: str) -> pd.DataFrame:
    """Per (target, method, seed): the mean over thresholds of normalized reward and cost."""
    rows = [{"target": r["task"], "method": r["method"], "seed": r["seed"],
             "threshold": r["threshold"], "reward": r["normalized_reward"],
             "cost": r["normalized_cost"], "data_source": r.get("data_source"),
             "profile": r.get("profile"), "steps": r.get("steps")}
            for r in load_records(results, transfer_from=source)]
    if not rows:
        raise ReportError(f"no transfer records from {source} under {results}; run "
                          f"`python -m bench transfer --from {source}`")
    return pd.DataFrame(rows)


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
    """Fig. 12: per target, each method's reward (plain) and cost (hatched) bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = transfer_matrix(frame)
    methods = ordered_methods(matrix.method.unique())
    targets = [spec.name for spec in suite_tasks("metadrive") if spec.name in set(matrix.target)]
    width = 0.8 / (2 * len(methods))
    colors = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(targets)), 4))
    for i, method in enumerate(methods):
        part = matrix[matrix.method == method].set_index("target").reindex(targets)
        x = [t + (2 * i) * width - 0.4 + width / 2 for t in range(len(targets))]
        ax.bar(x, part.reward, width, color=colors[i % 10], label=f"{method} reward")
        ax.bar([v + width for v in x], part.cost, width, color="white",
               edgecolor=colors[i % 10], hatch="///", label=f"{method} cost")
    ax.axhline(SAFE_BELOW, color="black", linestyle="--", linewidth=1,
               label="threshold (normalized cost 1)")
    ax.set_xticks(range(len(targets)))
    ax.set_xticklabels([task_label(t) + ("*" if t == source else "") for t in targets],
                       rotation=30, ha="right")
    ax.set_ylabel("normalized reward / cost")
    ax.set_title(f"Zero-shot transfer from {task_label(source)} (* source)")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)
