"""The reward-vs-cost scatter of a dataset's trajectories (paper Fig. 10, DSRL's figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.registry import TaskSpec


def plot_returns(spec: TaskSpec, rewards: np.ndarray, costs: np.ndarray, title: str,
                 path: Path, groups: dict[str, np.ndarray] | None = None) -> Path:
    """One point per trajectory (cost return, reward return), dashed lines at the thresholds;
    `groups` maps a legend label to a boolean mask (e.g. the collecting agent)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, mask in (groups or {"trajectories": np.ones(len(rewards), bool)}).items():
        ax.scatter(costs[mask], rewards[mask], s=6, alpha=0.5, label=label)
    for threshold in spec.thresholds:
        ax.axvline(threshold, color="k", linestyle="--", linewidth=0.8)
    # the extent of the official file (max cost from its name, dsrl's r_min..r_max)
    from matplotlib.patches import Rectangle

    from tasks.composition import official_numbers

    official = official_numbers(spec)
    ax.add_patch(Rectangle((0.0, spec.reward_min), official["cost_max"],
                           spec.reward_max - spec.reward_min, fill=False, edgecolor="0.4",
                           linestyle=":", linewidth=1.0, label="DSRL file's extent"))
    ax.set_xlabel("cost return")
    ax.set_ylabel("reward return")
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
