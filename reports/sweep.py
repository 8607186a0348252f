"""A hyperparameter sweep from the records (paper Fig. 4: LSPC-S and LSPC-O against epsilon)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.records import load_records


def sweep_frame(results: Path, key: str) -> pd.DataFrame:
    """Mean and std of normalized reward and cost per (task, method, value of `key`), over
    seeds and thresholds, from the records whose --set values name `key`."""
    rows = []
    for record in load_records(results):
        if f"{key}=" not in (record.get("variant") or ""):
            continue
        rows.append({"task": record["task"], "method": record["method"],
                     key: record["config"][key],
                     "reward": record["normalized_reward"], "cost": record["normalized_cost"]})
    if not rows:
        return pd.DataFrame(columns=["task", "method", key, "reward", "reward_std", "cost",
                                     "cost_std", "n"])
    frame = pd.DataFrame(rows)
    out = frame.groupby(["task", "method", key]).agg(
        reward=("reward", "mean"), reward_std=("reward", "std"), cost=("cost", "mean"),
        cost_std=("cost", "std"), n=("reward", "size"))
    return out.reset_index().sort_values(["task", "method", key])


def plot_sweep(frame: pd.DataFrame, key: str, path: Path) -> Path:
    """Reward and cost against `key`, one row of two panels per task; cost 1 = threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(frame.task))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.2 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        part = frame[frame.task == task]
        for method, curve in part.groupby("method"):
            for ax, metric in zip(row, ("reward", "cost")):
                ax.errorbar(curve[key], curve[metric], yerr=curve[f"{metric}_std"].fillna(0),
                            marker="o", capsize=3, label=method)
        row[0].set_ylabel(f"{task}\nnormalized reward")
        row[1].set_ylabel("normalized cost")
        row[1].axhline(1.0, color="red", linestyle="--", linewidth=1, label="threshold")
        for ax in row:
            ax.set_xlabel(key)
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=8)
    fig.tight_layout()
    from reports.figures import _save

    return _save(fig, path)[0]
