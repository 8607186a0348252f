"""OSRL's data augmentation for CDT: copies of trajectories relabelled with (cost return, reward
return) targets above the data's Pareto frontier, so that a return-conditioned policy sees
high-reward prompts at every cost (OSRL osrl/common/dataset.py: `SequenceDataset` with
`augment_percent`, which calls `augmentation`, `filter_trajectory` / `grid_filter` and
`get_nearest_point`).

- `osrl_grid_filter`: the trajectories' (cost return, reward return) points are thinned by a
  10 x 50 grid over the data's range (at most 10 per cell, cells of <= 2 dropped). DSRL's
  dataset filter (tasks/composition.py, `grid_filter`) thins by the same scheme, but it is
  kept apart: it has a window, puts the top edge in the last bin and returns sorted indices,
  while this one keeps OSRL's cells and order, which the augmentation's draws depend on.
- `non_dominated`: the Pareto front (low cost, high reward) of the kept points.
- `pareto_augmentation`: a polynomial of degree `deg` is fitted to the front, and `percent`
  as many targets as points kept are drawn, costs evenly spaced over the data's range,
  rewards uniform between frontier + min_reward and max_reward. Sources as OSRL's
  get_nearest_point: the nearest point with cost <= the target's, and, for a point nearest to
  k targets, k - 1 more drawn with weight 1 / (distance + beta) among points within
  max_rew_decrease below it; targets and sources are paired in OSRL's order (grouped by first
  nearest point), not target by target.
- `append_relabelled`: each target relabels a copy of its source trajectory, whose
  returns-to-go and costs-to-go are shifted so that they start at the target.

Three cases where OSRL fails and this goes on, none of them met on DSRL's data, all on small
or locally collected data: where the grid filter leaves no trajectory, nothing is added; a
front with fewer distinct costs than deg + 1 gets the highest degree it supports; a frontier
above max_reward draws between the two, as numpy's legacy uniform does.
"""

from __future__ import annotations

import numpy as np

from tasks.datasets import Trajectories


def non_dominated(costs: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats (cost <=, reward >=, one of them strictly);
    equal points are all kept (oapackage's Pareto set, as OSRL uses it)."""
    unique_costs, group = np.unique(costs, return_inverse=True)
    best_at_cost = np.full(len(unique_costs), -np.inf)
    np.maximum.at(best_at_cost, group, rewards)
    best_below = np.concatenate([[-np.inf], np.maximum.accumulate(best_at_cost)[:-1]])
    return (best_below[group] < rewards) & (best_at_cost[group] <= rewards)


def osrl_grid_filter(costs, rewards, rng, cost_bins=10, reward_bins=50, max_per_bin=10,
                     min_per_bin=2) -> np.ndarray:
    """OSRL's outlier filter before its augmentation (its `filter_trajectory` with the
    data's own range as window): indices of the points in cells of a cost x reward grid
    holding more than min_per_bin points, at most max_per_bin (drawn at random) per cell,
    cells in order of their first point. Cells are (value - min) // (range / bins), so a value
    on the top edge has a cell of its own, as in OSRL; a zero range is one cell. Not DSRL's
    dataset filter (tasks/composition.py, `grid_filter`): see the module docstring."""
    keys = []
    for values, bins in ((costs, cost_bins), (rewards, reward_bins)):
        span = values.max() - values.min()
        keys.append((values - values.min()) // (span / bins if span > 0 else 1.0))
    cells: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*keys)):
        cells.setdefault(key, []).append(i)
    kept = []
    for members in cells.values():
        if len(members) > max_per_bin:
            kept += rng.choice(members, max_per_bin, replace=False).tolist()
        elif len(members) > min_per_bin:
            kept += members
    return np.asarray(kept, dtype=np.int64)


def pareto_augmentation(costs, rewards, rng, deg, max_rew_decrease, beta, percent, max_reward,
                        min_reward):
    """(source trajectory index, target cost return, target reward return) triples of OSRL's
    augmentation, from the trajectories' cost and reward returns (see the module docstring)."""
    kept = osrl_grid_filter(costs, rewards, rng)
    if len(kept) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    costs, rewards = costs[kept], rewards[kept]
    front = non_dominated(costs, rewards)
    # a front of fewer distinct costs than deg + 1 (one safe trajectory beating all others)
    # cannot fit the task's degree (polyfit's SVD fails on it); fit the highest degree it
    # supports, a constant for a single point. On a wide front this changes nothing.
    deg = min(deg, len(np.unique(costs[front])) - 1)
    frontier = np.poly1d(np.polyfit(costs[front], rewards[front], deg=deg))
    count = int(percent * len(kept))
    target_costs = np.linspace(costs.min(), costs.max(), count)
    # low + (high - low) U, as numpy's legacy uniform that OSRL calls: where the fitted
    # frontier plus min_reward lies above max_reward (a low-degree fit, or data whose reward
    # returns exceed the task's max_reward), the draw falls between the two instead of failing
    low = frontier(target_costs) + min_reward
    target_rewards = low + (max_reward - low) * rng.random(len(target_costs))
    nearest = []
    for cost, reward in zip(target_costs, target_rewards):
        allowed = np.nonzero(costs <= cost)[0]
        nearest.append(allowed[np.argmin(np.hypot(costs[allowed] - cost,
                                                  rewards[allowed] - reward))])
    sources = []
    for index in dict.fromkeys(nearest):  # first-occurrence order, as OSRL's Counter
        sources.append(index)
        extra = nearest.count(index) - 1
        if extra:
            near = np.nonzero((costs <= costs[index])
                              & (rewards >= rewards[index] - max_rew_decrease))[0]
            weight = 1.0 / (np.hypot(costs[near] - costs[index],
                                     rewards[near] - rewards[index]) + beta)
            sources += near[rng.choice(len(near), extra, p=weight / weight.sum())].tolist()
    return kept[np.asarray(sources, np.int64)], target_costs, target_rewards


def append_relabelled(arrays: dict[str, np.ndarray], trajectories: Trajectories,
                      sources: np.ndarray, target_costs: np.ndarray,
                      target_rewards: np.ndarray) -> dict[str, np.ndarray]:
    """`arrays` (with "returns_to_go" and "costs_to_go") followed by a copy of trajectory
    sources[i] for each i, its returns-to-go and costs-to-go shifted to start at
    (target_rewards[i], target_costs[i]). Every copy, and the data's last trajectory, ends
    with a terminal or a timeout, so the copies split as trajectories of their own."""
    if len(sources) == 0:
        return arrays
    starts, ends = trajectories.starts[sources], trajectories.ends[sources]
    index = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])
    shift = np.repeat(np.arange(len(sources)), ends - starts)
    copies = {key: value[index] for key, value in arrays.items()}
    copies["returns_to_go"] = (copies["returns_to_go"]
                               + (target_rewards - trajectories.reward_returns[sources])[shift])
    copies["costs_to_go"] = (copies["costs_to_go"]
                             + (target_costs - trajectories.cost_returns[sources])[shift])
    last = np.cumsum(ends - starts) - 1
    copies["timeouts"] = copies["timeouts"].copy()
    copies["timeouts"][last[copies["terminals"][last] == 0]] = 1
    arrays = dict(arrays)
    arrays["timeouts"] = arrays["timeouts"].copy()
    if not (arrays["terminals"][-1] or arrays["timeouts"][-1]):
        arrays["timeouts"][-1] = 1
    return {key: np.concatenate([arrays[key], copies[key]]) for key in arrays}
