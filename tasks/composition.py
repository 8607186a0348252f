"""What a dataset holds over the reward-cost plane, and how it compares with DSRL's file.

- `grid_filter`: DSRL's density filter on (cost return, reward return): trajectories outside a
  window are dropped, the window is cut into cost x reward bins, crowded bins are subsampled
  and near-empty ones dropped (dsrl/offline_env.py, grid_filter / filter_trajectory).
- `official_numbers`: what the official file holds, from its name (max cost and trajectory
  count, e.g. SafetyCarRun-v0-40-651.hdf5) and from dsrl's r_min / r_max.
- `summarize`: one row of `bench datasets`: trajectories, ranges, the safe share and the best
  normalized reward under each threshold, and the official numbers beside them.
- `dsrl_like`: the targets a local dataset must meet to stand in for the official one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.registry import TaskSpec


@dataclass(frozen=True)
class GridFilter:
    """DSRL's grid filter settings; the window defaults to the official file's own extent."""

    cost_bins: int = 60
    """DSRL's filter_trajectory default"""
    reward_bins: int = 50
    """DSRL's filter_trajectory default"""
    min_per_bin: int = 1
    """bins holding this many trajectories or fewer are dropped (DSRL's default: singletons go)"""
    max_per_bin: int | None = None
    """crowded bins are subsampled to this many; None: the smallest cap that still keeps the
    official file's trajectory count (DSRL chose its cap per file; the count is in its name)"""
    exact_count: bool = True
    """with the cap chosen from the official count: bins at the cap keep one less, drawn at
    random, until exactly the official count is kept. DSRL's caps are whole numbers, so a file
    with few crowded bins keeps far more than its count at the smallest cap that reaches it
    (BallCircle: 1,360 for 886); the fractional cap keeps the count and the grid's coverage"""
    min_share_each_side: float | None = 0.15
    """ours, not DSRL's: after the draw, where the kept share of safe (cost <= threshold) or
    of unsafe trajectories at a threshold is below this, dropped ones from that side are added
    back, spread over its bins, until it is reached (or that side has no more). A flat cap over
    a grid whose cost axis reaches 140 leaves cost <= 10 a few of 60 columns: DroneRun kept 9%
    safe at 10, while a dataset that informs a threshold needs both sides of it. None: off"""
    thin_to_count_share: float | None = 2 / 3
    """ours, not DSRL's: where adding back cannot reach the floor (the pool has too few on
    that side: DroneCircle's tight-limit agents left 264 safe trajectories at cost <= 10 of
    3,071 in its window), the other side gives trajectories up, one at a time from its
    fullest bin and never a bin's last (a lower cap on that side, as DSRL's filter caps
    crowded bins), until the floor is met or the kept count has fallen to this share of the
    official count (2/3: the trajectory-count target allows a factor 1.5). None: off"""
    window: str = "official"
    """"official": keep cost returns in [0, official max cost x (1 + cost_margin)] and reward
    returns >= r_min, the extent of DSRL's file (open above: an agent of ours may run faster
    than DSRL's best, and its trajectories are competent data); "none": no window"""
    cost_margin: float = 0.2
    """how far above the official file's largest cost the window reaches, as a share of it
    (the DSRL-like target allows 25%). On BallRun our agents are bimodal: slow at cost <= 80
    (reward <= 600) or flat out at cost ~91 (reward ~1,500), where DSRL's file holds 1,327
    within 80; a window cut at 80 keeps none of the fast ones"""


def official_numbers(spec: TaskSpec) -> dict:
    """The official file's trajectory count and max cost (from its name) and dsrl's r_min/r_max."""
    match = re.search(r"-(\d+(?:\.\d+)?)-(\d+)\.hdf5$", spec.dataset_file)
    trajectories = int(match.group(2)) if match else None
    cost_max = float(match.group(1)) if match else spec.cost_max
    return {"file": spec.dataset_file, "trajectories": trajectories, "cost_max": cost_max,
            "reward_min": spec.reward_min, "reward_max": spec.reward_max}


def window_of(spec: TaskSpec, settings: GridFilter) -> tuple[float, float, float, float]:
    """(cost low, cost high, reward low, reward high) of the filter window."""
    if settings.window == "none":
        return -math.inf, math.inf, -math.inf, math.inf
    if settings.window != "official":
        raise ValueError(f"unknown filter window {settings.window!r}; use official or none")
    official = official_numbers(spec)
    return 0.0, official["cost_max"] * (1.0 + settings.cost_margin), spec.reward_min, math.inf


def in_window(costs: np.ndarray, rewards: np.ndarray, window) -> np.ndarray:
    c_lo, c_hi, r_lo, r_hi = window
    costs, rewards = np.asarray(costs, np.float64), np.asarray(rewards, np.float64)
    return (costs >= c_lo) & (costs <= c_hi) & (rewards >= r_lo) & (rewards <= r_hi)


def grid_bins(costs: np.ndarray, rewards: np.ndarray, window, cost_bins: int,
              reward_bins: int) -> np.ndarray:
    """Bin number of each trajectory inside the window (-1 outside). As DSRL, the grid spans the
    window cut to the data's own extent; a value on the top edge goes into the last bin."""
    costs, rewards = np.asarray(costs, np.float64), np.asarray(rewards, np.float64)
    inside = in_window(costs, rewards, window)
    out = np.full(len(costs), -1, dtype=np.int64)
    if not inside.any():
        return out
    c, r = costs[inside], rewards[inside]

    def index(values, bins):
        low, high = values.min(), values.max()
        if high <= low:
            return np.zeros(len(values), dtype=np.int64)
        return np.minimum(((values - low) / ((high - low) / bins)).astype(np.int64), bins - 1)

    out[inside] = index(c, cost_bins) * reward_bins + index(r, reward_bins)
    return out


def grid_filter(costs: np.ndarray, rewards: np.ndarray, window, cost_bins: int, reward_bins: int,
                max_per_bin: int, min_per_bin: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of the trajectories DSRL's grid filter keeps: inside the window, in a bin
    holding more than `min_per_bin`, at most `max_per_bin` drawn at random from each bin.
    CDT's augmentation thins by OSRL's own filter instead (tasks/augmentation.py,
    `osrl_grid_filter`)."""
    bins = grid_bins(costs, rewards, window, cost_bins, reward_bins)
    return draw(bins, bin_caps(bins, max_per_bin, min_per_bin, None, rng), rng)


def bin_sizes(bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each filled bin's number and how many trajectories it holds (ascending bin numbers);
    the one count that the cap search, the kept count and the per-bin caps all read."""
    return np.unique(bins[bins >= 0], return_counts=True)


def kept_count(bins: np.ndarray, max_per_bin: int, min_per_bin: int) -> int:
    """How many trajectories the filter keeps with this cap (no draw needed to count)."""
    _, counts = bin_sizes(bins)
    counts = counts[counts > min_per_bin]
    return int(np.minimum(counts, max_per_bin).sum())


def smallest_cap(bins: np.ndarray, min_per_bin: int, target: int) -> int:
    """The smallest per-bin cap that keeps at least `target` trajectories (the largest bin's
    size when even no cap keeps fewer: then everything eligible is kept)."""
    _, counts = bin_sizes(bins)
    counts = counts[counts > min_per_bin]
    if len(counts) == 0:
        return max(1, min_per_bin + 1)
    for cap in range(1, int(counts.max()) + 1):
        if np.minimum(counts, cap).sum() >= target:
            return cap
    return int(counts.max())


def apply_grid_filter(spec: TaskSpec, costs, rewards, settings: GridFilter,
                      rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The kept trajectory indices and what the filter did (for the dataset card): DSRL's grid
    filter with a cap per bin, exact to the official count when the cap is derived from it
    (`exact_count`), then the share floor on each side of every threshold."""
    window = window_of(spec, settings)
    bins = grid_bins(costs, rewards, window, settings.cost_bins, settings.reward_bins)
    cap, target = settings.max_per_bin, None
    if cap is None:
        target = official_numbers(spec)["trajectories"] or len(costs)
        cap = smallest_cap(bins, settings.min_per_bin, target)
    caps = bin_caps(bins, cap, settings.min_per_bin,
                    target if settings.exact_count else None, rng)
    kept = draw(bins, caps, rng)
    added, removed = {}, {}
    if settings.min_share_each_side is not None:
        costs64 = np.asarray(costs, np.float64)
        kept, added = share_floor(costs64, bins, kept, spec.thresholds,
                                  settings.min_share_each_side, rng)
        if settings.thin_to_count_share is not None:
            official = official_numbers(spec)["trajectories"] or len(kept)
            fewest = math.ceil(settings.thin_to_count_share * official - 1e-9)
            kept, removed = thin_to_floor(costs64, bins, kept, spec.thresholds,
                                          settings.min_share_each_side, fewest, rng)
    report = {"cost_bins": settings.cost_bins, "reward_bins": settings.reward_bins,
              "min_per_bin": settings.min_per_bin, "max_per_bin": int(cap),
              "max_per_bin_rule": "given" if settings.max_per_bin else "official count",
              "exact_count": bool(settings.exact_count and target is not None),
              "min_share_each_side": settings.min_share_each_side,
              "added_for_share": added,
              **({"thin_to_count_share": settings.thin_to_count_share,
                  "removed_for_share": removed} if removed else {}),
              "window": [_finite(v) for v in window], "pool": int(len(costs)),
              "in_window": int(in_window(costs, rewards, window).sum()), "kept": int(len(kept))}
    return kept, report


def bin_caps(bins: np.ndarray, cap: int, min_per_bin: int, target: int | None,
             rng: np.random.Generator) -> dict[int, int]:
    """How many trajectories each bin keeps: min(size, cap), nothing from a bin of
    `min_per_bin` or fewer; with a `target`, bins at the cap give one back, drawn at random,
    until the total is the target (never below cap - 1, so every crowded bin still keeps its
    share of the plane)."""
    labels, counts = bin_sizes(bins)
    caps = {int(b): (0 if n <= min_per_bin else int(min(n, cap))) for b, n in zip(labels, counts)}
    if target is not None and cap > 1:
        at_cap = [b for b in caps if caps[b] == cap]
        excess = min(sum(caps.values()) - target, len(at_cap))
        if excess > 0:
            for b in rng.choice(np.asarray(at_cap), size=excess, replace=False):
                caps[int(b)] -= 1
    return caps


def draw(bins: np.ndarray, caps: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of `caps[b]` trajectories drawn at random from each bin b."""
    kept = []
    for b in sorted(caps):
        members = np.nonzero(bins == b)[0]
        if caps[b] <= 0:
            continue
        if len(members) > caps[b]:
            members = rng.choice(members, size=caps[b], replace=False)
        kept.append(members)
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def share_floor(costs: np.ndarray, bins: np.ndarray, kept: np.ndarray, thresholds,
                floor: float, rng: np.random.Generator, passes: int = 5) -> tuple[np.ndarray, dict]:
    """`kept` with dropped trajectories of filled bins added back where a threshold's safe or
    unsafe share is under `floor`: one more per bin of that side in turn (bins in random
    order), the fewest that reach the floor. Thresholds in ascending order, safe side first,
    in passes until one adds nothing (at most `passes`): what one threshold adds dilutes the
    others' shares. Returns the new indices and how many were added for each (threshold,
    side)."""
    filled = {int(b) for b in np.unique(bins[kept])} if len(kept) else set()

    def add_back(kept, on_side):
        n, have = len(kept), int(on_side[kept].sum())
        need = math.ceil((floor * n - have) / (1.0 - floor) - 1e-9) if n else 0
        if need <= 0:
            return kept, 0
        spare = np.ones(len(costs), dtype=bool)
        spare[kept] = False
        candidates = spare & on_side & np.isin(bins, list(filled))
        order = _round_robin(bins, np.nonzero(candidates)[0], rng)[:need]
        if len(order):
            kept = np.sort(np.concatenate([kept, order]))
        return kept, len(order)

    return _in_passes(costs, kept, thresholds, passes, add_back)


def thin_to_floor(costs: np.ndarray, bins: np.ndarray, kept: np.ndarray, thresholds,
                  floor: float, fewest: int, rng: np.random.Generator,
                  passes: int = 5) -> tuple[np.ndarray, dict]:
    """`kept` less trajectories of the other side where a threshold's safe or unsafe share is
    still under `floor` after `share_floor`: taken one at a time from that side's fullest bin
    (ties at random), never a bin's last one, the fewest that reach the floor, never leaving
    fewer than `fewest` kept. Thresholds ascending, safe side first, in passes as
    `share_floor`. Returns the new indices and how many were removed for each (threshold,
    side short)."""
    def give_up(kept, on_side):
        on_side = on_side[kept]
        n, have = len(kept), int(on_side.sum())
        if have == 0 or have >= floor * n:
            return kept, 0
        # have / (n - m) >= floor: the fewest m
        need = min(n - math.floor(have / floor + 1e-9), n - fewest)
        order = _fullest_first(bins[kept], np.nonzero(~on_side)[0], need, rng)
        return (np.delete(kept, order) if len(order) else kept), len(order)

    return _in_passes(costs, kept, thresholds, passes, give_up)


def _in_passes(costs: np.ndarray, kept: np.ndarray, thresholds, passes: int,
               change) -> tuple[np.ndarray, dict]:
    """`change(kept, on_side)` -> (kept, how many moved) for each threshold ascending and side
    (safe first; `on_side` a mask over all trajectories), in passes until one changes nothing
    (at most `passes`). Returns the indices and how many moved per "threshold side"."""
    moved: dict[str, int] = {}
    kept = np.sort(np.asarray(kept, dtype=np.int64))
    for _ in range(passes):
        before = len(kept)
        for threshold in sorted(thresholds):
            for side in ("safe", "unsafe"):
                on_side = costs <= threshold if side == "safe" else costs > threshold
                kept, count = change(kept, on_side)
                if count:
                    key = f"{threshold:g} {side}"
                    moved[key] = moved.get(key, 0) + int(count)
        if len(kept) == before:
            break
    return kept, moved


def _fullest_first(bins: np.ndarray, members: np.ndarray, count: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Up to `count` of `members` (positions into `bins`), each taken from the bin holding the
    most of them at that moment (ties at random), never a bin's last member."""
    if count <= 0 or len(members) == 0:
        return np.zeros(0, dtype=np.int64)
    groups = {int(b): list(rng.permutation(members[bins[members] == b]))
              for b in np.unique(bins[members])}
    ties = {b: rank for rank, b in enumerate(rng.permutation(list(groups)))}
    taken = []
    while len(taken) < count:
        fullest = max(groups, key=lambda b: (len(groups[b]), ties[b]))
        if len(groups[fullest]) <= 1:
            break
        taken.append(groups[fullest].pop())
    return np.asarray(taken, dtype=np.int64)


def _round_robin(bins: np.ndarray, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`members` ordered one per bin in turn (bins and each bin's members shuffled), so that a
    prefix of any length spreads over as many bins as it can."""
    groups = [rng.permutation(members[bins[members] == b]) for b in rng.permutation(
        np.unique(bins[members]))]
    depth = max((len(g) for g in groups), default=0)
    return np.asarray([g[k] for k in range(depth) for g in groups if k < len(g)],
                      dtype=np.int64)


def _finite(value: float):
    return value if math.isfinite(value) else str(value)


# ------------------------------------------------------------------------ summary and targets


def summarize(spec: TaskSpec, reward_returns: np.ndarray, cost_returns: np.ndarray) -> dict:
    """The numbers of one dataset that `bench datasets` prints (returns of its trajectories)."""
    rewards = np.asarray(reward_returns, np.float64)
    costs = np.asarray(cost_returns, np.float64)
    safe_fraction, best, median = {}, {}, {}
    for threshold in spec.thresholds:
        safe = costs <= threshold
        key = f"{threshold:g}"
        safe_fraction[key] = float(safe.mean()) if len(costs) else 0.0
        best[key] = (float(spec.normalize(rewards[safe].max(), 0.0, threshold)[0])
                     if safe.any() else None)
        # where an agent that imitates the safe part of the file lands, roughly: the yardstick
        # for BC-Safe and LSPC-S, as the best safe trajectory is the ceiling of every safe agent
        median[key] = (float(spec.normalize(np.median(rewards[safe]), 0.0, threshold)[0])
                       if safe.any() else None)
    return {
        "task": spec.name,
        "trajectories": int(len(rewards)),
        "reward_min": float(rewards.min()) if len(rewards) else None,
        "reward_max": float(rewards.max()) if len(rewards) else None,
        "cost_max": float(costs.max()) if len(costs) else None,
        "best_normalized_reward_overall": (float(spec.normalize(rewards.max(), 0.0, 1.0)[0])
                                           if len(rewards) else None),
        "below_reward_min_fraction": float(np.mean(rewards < spec.reward_min))
        if len(rewards) else None,
        "safe_fraction": safe_fraction,
        "best_normalized_reward": best,
        "median_safe_normalized_reward": median,
        "official": official_numbers(spec),
    }


#: DSRL-likeness targets (issue "Local datasets that look like DSRL's")
TARGETS = {
    "best_reward": 0.9,  # best trajectory's normalized reward
    "cost_max_rel": 0.25,  # max cost return within this fraction of the official file's
    "share_each_side": 0.15,  # safe and unsafe share at every threshold, each at least
    "count_factor": 1.5,  # trajectories within this factor of the official count
    "below_rmin": 0.05,  # at most this share below dsrl's r_min
}


def dsrl_like(row: dict) -> dict[str, dict]:
    """Each target: holds (bool), ours and the target, for one `summarize` row."""
    official = row["official"]
    checks = {}
    best = row["best_normalized_reward_overall"]
    checks["best_reward"] = {"holds": best is not None and best >= TARGETS["best_reward"],
                             "ours": best, "target": f">= {TARGETS['best_reward']}"}
    gap = (abs(row["cost_max"] - official["cost_max"]) / official["cost_max"]
           if row["cost_max"] is not None and official["cost_max"] else None)
    checks["cost_max"] = {"holds": gap is not None and gap <= TARGETS["cost_max_rel"],
                          "ours": row["cost_max"],
                          "target": f"{official['cost_max']:g} +-{TARGETS['cost_max_rel']:.0%}"}
    for threshold, safe in row["safe_fraction"].items():
        side = TARGETS["share_each_side"]
        checks[f"share@{threshold}"] = {"holds": side <= safe <= 1 - side, "ours": safe,
                                        "target": f"safe and unsafe each >= {side:.0%}"}
    if official["trajectories"]:
        ratio = row["trajectories"] / official["trajectories"]
        factor = TARGETS["count_factor"]
        checks["count"] = {"holds": 1 / factor <= ratio <= factor, "ours": row["trajectories"],
                           "target": f"{official['trajectories']} within x{factor}"}
    below = row["below_reward_min_fraction"]
    checks["below_rmin"] = {"holds": below is not None and below <= TARGETS["below_rmin"],
                            "ours": below, "target": f"<= {TARGETS['below_rmin']:.0%}"}
    return checks


# ------------------------------------------------------------------------------- inventory


def find_datasets(spec: TaskSpec) -> list[tuple]:
    """(path, source, profile) of every dataset of this task on disk: the official file, then
    each local collection (`<Task>-local-<profile>.hdf5`), profiles in name order."""
    from tasks.datasets import local_dir, official_path

    found = []
    if official_path(spec).exists():
        found.append((official_path(spec), "dsrl", None))
    prefix = f"{spec.name}-local-"
    folder = local_dir()
    if folder.is_dir():
        for path in sorted(folder.glob(f"{prefix}*.hdf5")):
            found.append((path, "local", path.name[len(prefix):-len(".hdf5")]))
    return found


def describe_dataset(spec: TaskSpec, path, source: str, profile: str | None) -> dict:
    """The `bench datasets` row of one file: its summary, sha256, card and the targets."""
    import json

    from tasks.datasets import arrays_sha256, file_sha256, read_dsrl_file, split_trajectories

    arrays, attrs = read_dsrl_file(path, spec)
    trajectories = split_trajectories(arrays)
    row = summarize(spec, trajectories.reward_returns, trajectories.cost_returns)
    card = attrs.get("card")
    if source == "dsrl" and attrs.get("source") == "local":  # local data under the official name
        source, profile = "local", f"{attrs.get('profile', '?')} under the official name"
    row.update({"source": source, "profile": profile, "path": str(path),
                "sha256": file_sha256(path), "arrays_sha256": arrays_sha256(arrays),
                "transitions": int(len(arrays["rewards"])),
                "card": json.loads(card) if isinstance(card, str) else None})
    row["targets"] = dsrl_like(row)
    return row


def datasets_table(rows: list[dict]) -> str:
    """`bench datasets` as text: ours beside the official file's numbers, one row a file, the
    targets each row misses, then each file's sha256 (how two users know they share data)."""
    from tabulate import tabulate

    def num(value, fmt="{:.0f}"):
        return "-" if value is None else fmt.format(value)

    table = []
    for row in rows:
        official = row["official"]
        thresholds = list(row["safe_fraction"])
        missed = [name for name, check in row["targets"].items() if not check["holds"]]
        table.append([
            row["task"], row["source"] if row["source"] == "dsrl" else f"local {row['profile']}",
            f"{row['trajectories']} ({num(official['trajectories'])})",
            f"{num(row['reward_min'])}..{num(row['reward_max'])} "
            f"({official['reward_min']:.0f}..{official['reward_max']:.0f})",
            f"{num(row['cost_max'])} ({official['cost_max']:g})",
            " / ".join(f"{row['safe_fraction'][t]:.0%}" for t in thresholds),
            " / ".join(num(row["best_normalized_reward"][t], "{:.2f}") for t in thresholds),
            " / ".join(num(row.get("median_safe_normalized_reward", {}).get(t), "{:.2f}")
                       for t in thresholds),
            f"{num(row['below_reward_min_fraction'], '{:.0%}')}",
            "all" if not missed else "misses " + ", ".join(missed),
        ])
    thresholds = "/".join(rows[0]["safe_fraction"]) if rows else "thresholds"
    text = tabulate(table, headers=[
        "task", "source", "trajectories (DSRL)", "reward range (DSRL)", "max cost (DSRL)",
        f"safe share <= {thresholds}", f"best norm. reward, cost <= {thresholds}",
        "below r_min", "DSRL-like targets"])
    hashes = "\n".join(f"sha256 {row['sha256']}  {Path(row['path']).name}  (arrays "
                       f"{row['arrays_sha256'][:16]})" for row in rows)
    return text + ("\n\n" + hashes if rows else "")
