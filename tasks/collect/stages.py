"""The resumable pieces of a collection: stages, their order, and their partial files.

A stage is one agent trained for some env steps, from scratch or continuing its
predecessor's saved state (a segment). Each finished stage is saved to a hidden partial
folder beside the output under a fingerprint of everything that determines it, so that an
interrupted collection reruns only the stages not saved yet, and a changed budget or
collector reruns them all.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.collect.budgets import (COLLECTOR_VERSION, CollectBudget, agent_cost_limits,
                                   steps_for)
from tasks.datasets import KEYS
from tasks.files import write_atomic
from tasks.registry import TaskSpec


@dataclass(frozen=True)
class Stage:
    """One resumable piece of a collection: an agent trained `steps` env steps, from scratch or
    continuing from the final state of `parent`."""

    name: str
    agent: int  # seeds its networks, noise and resets (see seeding.py)
    steps: int
    cost_limits: tuple[float, ...]  # one per epoch
    parent: str | None
    lineage: str  # the agent it belongs to, for the card ("limit 10", "unconstrained")


def plan_stages(budget: CollectBudget, spec: TaskSpec) -> list[Stage]:
    """The stages of one collection, in the order they run (a segment before the next).

    One agent per cost limit, each from scratch; with `segment_steps` an agent trains in
    segments, each continuing from the state its predecessor saved. With `anneal_from` its
    limit rises from there to its own over `anneal_window` of its epochs (DSRL's schedule).
    """
    limits = agent_cost_limits(budget, spec)
    steps = steps_for(budget, spec)
    epoch = budget.steps_per_epoch
    n_epochs = steps // epoch
    if budget.segment_steps <= 0 and budget.anneal_from is None:  # the quick profile
        return [Stage(f"agent{a}", a, steps, (limit,) * n_epochs, None,
                      _lineage_name(limit)) for a, limit in enumerate(limits)]
    stages = []
    for a, limit in enumerate(limits):
        schedule = _schedule(budget, limit, n_epochs, spec.thresholds[-1] / 40.0)
        parent, done = None, 0
        for j, seg in enumerate(_segments(steps, budget.segment_steps, epoch)):
            name = f"agent{a}-seg{j}"
            count = seg // epoch
            stages.append(Stage(name, a * 1000 + j, seg, tuple(schedule[done:done + count]),
                                parent, _lineage_name(limit)))
            parent, done = name, done + count
    # round robin over the agents, segment by segment: every agent's progress shows early (a
    # task its unconstrained agent cannot learn is seen in the first hour, not the last). Each
    # stage depends on its parent's saved state only, so the order changes no data
    segment_of = {stage.name: int(stage.name.rsplit("seg", 1)[1]) for stage in stages}
    return sorted(stages, key=lambda stage: (segment_of[stage.name], stage.agent // 1000))


def _schedule(budget: CollectBudget, limit: float, n_epochs: int, scale: float) -> list[float]:
    """The agent's cost limit in each epoch: flat at anneal_from (times the suite's scale, as the
    limits), a linear rise, flat at its own limit. An unconstrained agent stays unconstrained."""
    if budget.anneal_from is None or not math.isfinite(limit):
        return [limit] * n_epochs
    first, last = (round(share * n_epochs) for share in budget.anneal_window)
    low = min(limit, budget.anneal_from * scale)
    out = []
    for e in range(n_epochs):
        if e < first:
            out.append(low)
        elif e >= last:
            out.append(limit)
        else:
            out.append(low + (limit - low) * (e - first + 1) / max(1, last - first))
    return out


def _lineage_name(limit: float) -> str:
    return "unconstrained" if not math.isfinite(limit) else f"limit {limit:g}"


def _segments(steps: int, segment: int, epoch: int) -> list[int]:
    """Split `steps` into pieces of about `segment` steps, each a whole number of epochs."""
    if segment <= 0 or steps <= segment:
        return [steps]
    epochs = steps // epoch
    pieces = max(1, round(epochs / max(1, segment // epoch)))
    sizes = [epochs // pieces + (1 if i < epochs % pieces else 0) for i in range(pieces)]
    return [size * epoch for size in sizes]


# ------------------------------------------------------------------------- partial files


def partial_dir(out_path: Path, seed: int) -> Path:
    """The hidden folder holding finished agents of an interrupted collection."""
    out_path = Path(out_path)
    return out_path.parent / ".partial" / f"{out_path.stem}-seed{seed}"


def stage_fingerprint(spec: TaskSpec, profile: str, budget: CollectBudget, seed: int,
                      stage: Stage, parent_fingerprint: str | None) -> str:
    """Everything that determines a stage's data, its parent's included: a saved stage is
    reused only under the same fingerprint. The stage carries its own steps and limits, so
    the budget's agent list and per-task scales are left out, and of the grid filter only the
    window (episodes outside it are not stored): adding an agent or changing the filter
    retrains nothing already saved."""
    from tasks.collect.kernels import PINNED, kernels_in_use
    from tasks.composition import window_of

    settings = {k: repr(v) for k, v in dataclasses.asdict(budget).items()
                if k not in ("cost_limits", "agent_scale", "grid_filter")}
    window = (repr(window_of(spec, budget.grid_filter)) if budget.grid_filter is not None
              else None)
    return json.dumps({"collector": COLLECTOR_VERSION, "task": spec.name, "profile": profile,
                       "seed": seed, "stage": dataclasses.asdict(stage),
                       "parent": parent_fingerprint, "budget": settings, "window": window,
                       # portable kernels make other numbers: a stage of either is not the
                       # other's (native stages keep the fingerprints they always had), nor a
                       # stage of one pinned set another's
                       **({"kernels": "portable", "pinned": PINNED}
                          if kernels_in_use() == "portable" else {})},
                      sort_keys=True, default=repr)


def load_partial(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    """A saved stage's arrays, or None when there is none under this fingerprint."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            return {key: data[key] for key in data.files if key != "fingerprint"}
    except (OSError, ValueError, KeyError):
        return None  # a torn or foreign file: recompute that agent


def save_partial(path: Path, arrays: dict[str, np.ndarray], fingerprint: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append .npz to a name
            np.savez(handle, fingerprint=np.asarray(fingerprint), **arrays)

    write_atomic(path, write)


# --------------------------------------------------------------------- a stage's episodes


def episode_returns(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The reward and cost return of each episode of a stage (float64 sums)."""
    ends = np.cumsum(data["episode_lengths"])
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    rew = np.add.reduceat(data["rewards"].astype(np.float64), starts) if len(starts) else []
    cost = np.add.reduceat(data["costs"].astype(np.float64), starts) if len(starts) else []
    return np.asarray(rew), np.asarray(cost)


def keep_episodes(data: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The stage's data restricted to the episodes in `keep` (a boolean per episode)."""
    lengths = data["episode_lengths"]
    mask = np.repeat(keep, lengths)
    out = {key: value for key, value in data.items() if key not in KEYS}
    out.update({key: data[key][mask] for key in KEYS})
    out["episode_lengths"] = lengths[keep]
    return out
