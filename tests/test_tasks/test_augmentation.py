"""OSRL's augmentation for CDT: the Pareto front, OSRL's grid filter, the relabelling targets
and sources, and the relabelled copies appended to the data."""

import numpy as np

from tasks.augmentation import (append_relabelled, non_dominated, osrl_grid_filter,
                                pareto_augmentation)
from tasks.composition import grid_filter as dsrl_grid_filter
from tasks.datasets import split_trajectories, to_go


def test_non_dominated_points():
    costs = np.array([0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 0.0])
    rewards = np.array([1.0, 3.0, 2.0, 3.0, 5.0, 4.0, 1.0])
    # (0, 1) twice: kept, equal; (1, 2) loses to (1, 3); (2, 3) to (1, 3); (3, 4) to (2, 5)
    assert non_dominated(costs, rewards).tolist() == [True, True, False, False, True, False,
                                                      True]


def test_osrl_grid_filter_caps_crowded_cells_and_drops_sparse_ones():
    """Cells in the order of their first point; more than max_per_bin: that many drawn;
    min_per_bin or fewer: dropped."""
    costs = np.array([5.0, 0.0, 0.0, 5.0, 0.0, 5.0, 0.0, 0.0, 10.0, 10.0])
    rewards = np.zeros(10)
    kept = osrl_grid_filter(costs, rewards, np.random.default_rng(0), cost_bins=2,
                            reward_bins=1, max_per_bin=3, min_per_bin=2)
    # cost 5 (cell 1, three points: kept whole, first), cost 0 (cell 0, five: three drawn),
    # cost 10 (the top edge, a cell of its own with two points: dropped)
    assert kept[:3].tolist() == [0, 3, 5]
    assert len(kept) == 6 and set(kept[3:]) <= {1, 2, 4, 6, 7}
    assert len(set(kept[3:].tolist())) == 3


def test_osrl_grid_filter_is_not_dsrls():
    """Why both filters exist: DSRL's puts the top edge in the last bin and returns sorted
    indices, OSRL's gives the top edge a cell of its own and keeps its cells' order."""
    costs = np.array([10.0, 0.0, 10.0, 0.0, 10.0, 0.0, 9.0])
    rewards = np.zeros(7)
    rng = np.random.default_rng(0)
    osrl = osrl_grid_filter(costs, rewards, rng, cost_bins=2, reward_bins=1, max_per_bin=10,
                            min_per_bin=2)
    dsrl = dsrl_grid_filter(costs, rewards, (-np.inf, np.inf, -np.inf, np.inf), 2, 1, 10, 2,
                            rng)
    assert osrl.tolist() == [0, 2, 4, 1, 3, 5]  # 9.0 alone in its cell, below 10's
    assert dsrl.tolist() == [0, 1, 2, 3, 4, 5, 6]  # 9.0 shares the last bin with the 10s


def test_osrl_grid_filter_with_a_single_value():
    costs = rewards = np.full(4, 3.0)
    kept = osrl_grid_filter(costs, rewards, np.random.default_rng(0))
    assert kept.tolist() == [0, 1, 2, 3]


def test_augmentation_targets_lie_above_the_frontier():
    rng = np.random.default_rng(0)
    costs = rng.uniform(0, 50, 800)
    rewards = 100 + 2 * costs + rng.normal(0, 5, 800)
    sources, target_costs, target_rewards = pareto_augmentation(
        costs, rewards, np.random.default_rng(1), deg=1, max_rew_decrease=20.0, beta=1.0,
        percent=0.2, max_reward=400.0, min_reward=1.0)
    assert len(sources) == len(target_costs) == len(target_rewards) > 0
    np.testing.assert_allclose(np.diff(target_costs), np.diff(target_costs)[0])
    assert (target_rewards <= 400.0).all()
    assert np.median(target_rewards) > np.median(100 + 2 * target_costs + 1)
    # a source's cost return is at most its target's (OSRL's nearest point with cost <=)
    first = {}
    for source, cost in zip(sources, target_costs):
        first.setdefault(source, cost)
    assert all(costs[s] <= c + 1e-9 for s, c in first.items())


def test_augmentation_where_the_frontier_is_above_max_reward():
    """Reward returns above OSRL's per-task max_reward (or a fit that overshoots it): OSRL's
    legacy numpy uniform then draws between max_reward and the frontier; it must not fail
    (numpy's Generator.uniform would: 'high - low < 0')."""
    rng = np.random.default_rng(0)
    costs = rng.uniform(0, 50, 600)
    rewards = 300 + 4 * costs + rng.normal(0, 5, 600)  # all above max_reward = 100
    sources, target_costs, target_rewards = pareto_augmentation(
        costs, rewards, np.random.default_rng(1), deg=1, max_rew_decrease=20.0, beta=1.0,
        percent=0.2, max_reward=100.0, min_reward=1.0)
    assert len(target_rewards) > 0 and np.isfinite(target_rewards).all()
    assert (target_rewards >= 100.0).all()  # between max_reward and the frontier
    assert (target_rewards <= 300 + 4 * target_costs + 50).all()
    assert len(sources) == len(target_costs)


def test_augmentation_with_a_one_point_front():
    """One safe trajectory with the best reward dominates all others: the frontier becomes
    that point's reward, not an SVD failure."""
    rng = np.random.default_rng(0)
    # five copies, so that the grid filter (cells of more than two points) keeps them
    costs = np.concatenate([np.zeros(5), rng.uniform(1, 50, 595)])
    rewards = np.concatenate([np.full(5, 500.0), rng.uniform(0, 400, 595)])
    sources, target_costs, target_rewards = pareto_augmentation(
        costs, rewards, np.random.default_rng(1), deg=3, max_rew_decrease=20.0, beta=1.0,
        percent=0.2, max_reward=1000.0, min_reward=1.0)
    assert len(target_rewards) > 0
    assert (target_rewards >= 501.0).all() and (target_rewards <= 1000.0).all()


def test_augmentation_of_data_the_grid_filter_empties_adds_nothing():
    sources, target_costs, target_rewards = pareto_augmentation(
        np.array([0.0, 5.0]), np.array([1.0, 2.0]), np.random.default_rng(0), deg=1,
        max_rew_decrease=1.0, beta=1.0, percent=0.2, max_reward=10.0, min_reward=1.0)
    assert len(sources) == len(target_costs) == len(target_rewards) == 0


def test_append_relabelled_copies_shift_the_prompts_to_their_targets():
    arrays = {"rewards": np.arange(1.0, 8.0), "costs": np.array([0, 1, 0, 1, 1, 0, 0.0]),
              "terminals": np.array([0, 0, 1, 0, 0, 0, 0.0]),
              "timeouts": np.zeros(7)}  # the last trajectory (steps 3..6) has no end flag
    trajectories = split_trajectories({**arrays, "timeouts": np.eye(7)[6]})
    arrays["returns_to_go"] = to_go(arrays["rewards"], trajectories)
    arrays["costs_to_go"] = to_go(arrays["costs"], trajectories)
    before = {key: value.copy() for key, value in arrays.items()}
    out = append_relabelled(arrays, trajectories, np.array([1, 0]), np.array([5.0, 7.0]),
                            np.array([100.0, 50.0]))
    for key in before:  # the input untouched, the data first
        np.testing.assert_array_equal(arrays[key], before[key])
        np.testing.assert_array_equal(out[key][:6], before[key][:6])
    assert out["timeouts"][6] == 1  # the data's last trajectory now ends
    # copies: trajectory 1 (steps 3..6) then trajectory 0 (steps 0..2)
    np.testing.assert_array_equal(out["rewards"][7:], arrays["rewards"][[3, 4, 5, 6, 0, 1, 2]])
    np.testing.assert_allclose(out["returns_to_go"][7:], [100, 96, 91, 85, 50, 49, 47])
    np.testing.assert_allclose(out["costs_to_go"][7:], [5, 4, 3, 3, 7, 7, 6])
    assert out["timeouts"][10] == 1 and out["terminals"][13] == 1 and out["timeouts"][13] == 0
    split = split_trajectories(out)
    assert split.starts.tolist() == [0, 3, 7, 11]
    assert append_relabelled(arrays, trajectories, np.zeros(0, np.int64), np.zeros(0),
                             np.zeros(0)) is arrays
