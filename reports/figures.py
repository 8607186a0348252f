"""Figures from records and run artifacts (PNG and PDF): training curves (paper Fig. 2),
a sweep against a config field (Fig. 4, reports/sweep.py), a dataset's scatter (Fig. 10)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from reports.aggregate import ReportError
from tasks.registry import get_task


def curve_frames(results: Path, task: str) -> dict[str, list[pd.DataFrame]]:
    """Training curves with evaluation columns, keyed by policy label (one frame per run)."""
    spec = get_task(task)
    curves: dict[str, list[pd.DataFrame]] = {}
    for path in sorted(Path(results).glob(f"{spec.suite}/{spec.name}/*/run-*/curve.csv")):
        frame = pd.read_csv(path)
        method = path.parent.parent.name
        threshold = re.search(r"-thr([\d.]+)$", path.parent.name)
        for column in [c for c in frame.columns if c.endswith("/reward_return")]:
            prefix = column.split("/")[0]
            label = method if prefix == "eval" else prefix
            label += f" (thr {threshold.group(1)})" if threshold else ""
            part = frame[["step", column, f"{prefix}/cost_return"]].dropna()
            part.columns = ["step", "reward_return", "cost_return"]
            curves.setdefault(label, []).append(part)
    return curves


#: the critics' estimates a method logs (bench.train's stats), drawn beside its returns: a
#: budget is long enough where these have flattened, not only the returns
VALUE_COLUMNS = {"value/v": "V", "value/vc": "V^c"}


def value_frames(results: Path, task: str) -> dict[str, list[pd.DataFrame]]:
    """The logged critic estimates (VALUE_COLUMNS) of each method's runs on the task."""
    spec = get_task(task)
    values: dict[str, list[pd.DataFrame]] = {}
    for path in sorted(Path(results).glob(f"{spec.suite}/{spec.name}/*/run-*/curve.csv")):
        frame = pd.read_csv(path)
        present = [c for c in VALUE_COLUMNS if c in frame.columns]
        if present:
            method = path.parent.parent.name
            values.setdefault(method, []).append(frame[["step", *present]].dropna())
    return values


def plot_curves(results: Path, tasks, path: Path) -> list[Path]:
    """Per task (a row each; `tasks` one name or several): the reward and cost returns during
    training, mean over seeds, thresholds dashed, and where logged the critics' estimates V
    and V^c (paper Fig. 2, with the evidence for a budget beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [tasks] if isinstance(tasks, str) else list(tasks)
    rows = []
    for task in names:
        spec = get_task(task)
        curves = curve_frames(results, task)
        if not curves:
            raise ReportError(
                f"no training curves with evaluations for {spec.name} under {results}; run "
                "with `--eval-every N` (the study and paper profiles do)")
        rows.append((spec, curves, value_frames(results, task)))
    with_values = any(values for _, _, values in rows)
    columns = 3 if with_values else 2
    fig, axes = plt.subplots(len(rows), columns, figsize=(5 * columns, 3.6 * len(rows)),
                             squeeze=False)
    for (spec, curves, values), axes_row in zip(rows, axes):
        ax_r, ax_c = axes_row[0], axes_row[1]
        for label, runs in curves.items():
            mean = pd.concat(runs).groupby("step").mean()
            ax_r.plot(mean.index, mean.reward_return, label=f"{label} ({len(runs)} runs)")
            ax_c.plot(mean.index, mean.cost_return, label=label)
        for threshold in spec.thresholds:
            ax_c.axhline(threshold, color="red", linestyle="--", linewidth=0.8)
        ax_r.set(title=f"{spec.name}: reward return", xlabel="training step")
        ax_c.set(title=f"{spec.name}: cost return (thresholds dashed)", xlabel="training step")
        ax_r.legend(fontsize=7)
        if with_values:
            ax_v = axes_row[2]
            for method, runs in values.items():
                mean = pd.concat(runs).groupby("step").mean()
                for column, name in VALUE_COLUMNS.items():
                    if column in mean:
                        ax_v.plot(mean.index, mean[column], label=f"{method} {name}",
                                  linestyle="-" if column == "value/v" else ":")
            ax_v.set(title=f"{spec.name}: critic estimates (batch mean)",
                     xlabel="training step")
            if values:
                ax_v.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_dataset(task: str, path: Path, source: str = "auto", profile: str = "quick") -> list[Path]:
    """The trajectories of a task's dataset on the reward-cost plane, thresholds dashed."""
    from tasks.datasets import load_dataset, split_trajectories
    from tasks.figures import plot_returns

    spec = get_task(task)
    data = load_dataset(spec, source, profile)
    trajectories = split_trajectories(data.arrays)
    kind = "official DSRL" if data.source == "dsrl" else "locally collected"
    title = f"{spec.name}: {kind} ({len(trajectories)} trajectories)"
    path = Path(path)
    return [plot_returns(spec, trajectories.reward_returns, trajectories.cost_returns, title,
                         path.with_suffix(suffix)) for suffix in (".png", ".pdf")]


def plot_datasets(specs, path: Path, source: str = "auto", profile: str = "quick") -> list[Path]:
    """Every task's dataset on one sheet: a reward-cost panel per task (Fig. 10 for a suite),
    the official file's extent dotted, the thresholds dashed."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from tasks.composition import official_numbers
    from tasks.datasets import DatasetError, load_dataset, split_trajectories

    panels = []
    for spec in specs:
        try:
            panels.append((spec, load_dataset(spec, source, profile)))
        except DatasetError:
            continue
    if not panels:
        raise ReportError(f"no {profile} dataset of {', '.join(s.name for s in specs)} found; "
                          f"`python -m bench collect --profile {profile}` makes them")
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (spec, data) in zip(axes.flat, panels):
        trajectories = split_trajectories(data.arrays)
        ax.scatter(trajectories.cost_returns, trajectories.reward_returns, s=2, alpha=0.4)
        for threshold in spec.thresholds:
            ax.axvline(threshold, color="k", linestyle="--", linewidth=0.6)
        official = official_numbers(spec)
        ax.add_patch(Rectangle((0.0, spec.reward_min), official["cost_max"],
                               spec.reward_max - spec.reward_min, fill=False, edgecolor="0.4",
                               linestyle=":", linewidth=0.8))
        kind = "DSRL" if data.source == "dsrl" else f"local {profile}"
        ax.set_title(f"{spec.name} ({kind}, {len(trajectories)})", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("cost return", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("reward return", fontsize=7)
    fig.suptitle("trajectories on the reward-cost plane; dotted: the official file's extent, "
                 "dashed: the thresholds", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for suffix in (".png", ".pdf"):
        fig.savefig(path.with_suffix(suffix), dpi=120)
        out.append(path.with_suffix(suffix))
    plt.close(fig)
    return out
