"""A hyperparameter sweep from the records (paper Fig. 4: LSPC-S and LSPC-O against the
latent restriction).

Fig. 4 of the paper moves the restriction of both policies together. LSPC's `epsilon` is
LSPC-O's restriction and `safe_epsilon` LSPC-S's (0.25 by default, A.3.1; None: the same as
`epsilon`), so the paper's sweep is

    bench run --methods LSPC --set epsilon=0.1,0.25,0.5,0.75,1.0 --set safe_epsilon=None

while `--set epsilon=...` alone moves LSPC-O only (LSPC-S keeps its 0.25 box). Both are
kept apart here: the records of a sweep over `key` are grouped by their other --set values
too (the `with` column), and each group is its own line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.records import job_tag, load_records, precision_of

# "epsilon=0.1, hidden=64,64": a new setting starts after ", " with a name and "="
_SETTING_START = re.compile(r",\s*(?=[A-Za-z_][A-Za-z0-9_]*=)")


def variant_settings(variant: str) -> dict[str, str]:
    """The --set values of a record's variant ("epsilon=0.1, safe_epsilon=None") by name."""
    settings = {}
    for part in _SETTING_START.split(variant or ""):
        name, sep, value = part.partition("=")
        if sep:
            settings[name.strip()] = value.strip()
    return settings


def sweep_frame(results: Path, key: str) -> pd.DataFrame:
    """Mean and std of normalized reward and cost per (task, method, other --set values,
    value of `key`), over seeds and thresholds, from the records whose --set values name
    `key`. `with` holds the other values ("safe_epsilon=None" in the paper's Fig. 4 sweep)."""
    columns = ["task", "method", "with", key, "reward", "reward_std", "cost", "cost_std", "n"]
    rows = []
    scan = load_records(results)
    for record in scan:
        settings = variant_settings(record.get("variant") or "")
        if key not in settings:
            continue
        tag = job_tag(None, precision_of(record))  # "" in fp32, else "bf16"
        rows.append({"task": record["task"],
                     "method": record["method"] + (f" [{tag}]" if tag else ""),
                     "with": ", ".join(f"{k}={v}" for k, v in settings.items() if k != key),
                     key: record["config"][key],
                     "reward": record["normalized_reward"], "cost": record["normalized_cost"]})
    if not rows:
        out = pd.DataFrame(columns=columns)
    else:
        out = pd.DataFrame(rows).groupby(["task", "method", "with", key]).agg(
            reward=("reward", "mean"), reward_std=("reward", "std"), cost=("cost", "mean"),
            cost_std=("cost", "std"), n=("reward", "size"))
        out = out.reset_index().sort_values(["task", "method", "with", key])[columns]
    out.attrs["damaged"] = list(scan.damaged)  # named by the caller, never averaged in
    return out


def plot_sweep(frame: pd.DataFrame, key: str, path: Path) -> Path:
    """Reward and cost against `key`, one row of two panels per task, a line per policy
    (LSPC-S and LSPC-O) and other settings; cost 1 = threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(frame.task))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.2 * len(tasks)), squeeze=False)
    for row, task in zip(axes, tasks):
        part = frame[frame.task == task]
        several = part["with"].nunique() > 1  # e.g. both sweeps: name the other settings
        for (method, other), curve in part.groupby(["method", "with"]):
            label = f"{method} [{other}]" if several and other else method
            for ax, metric in zip(row, ("reward", "cost")):
                ax.errorbar(curve[key], curve[metric], yerr=curve[f"{metric}_std"].fillna(0),
                            marker="o", capsize=3, label=label)
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
