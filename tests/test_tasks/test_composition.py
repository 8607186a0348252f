"""The reward-cost composition of datasets (tasks/composition.py): DSRL's grid filter on small
hand-checkable arrays, the official numbers, the summary row and the DSRL-likeness targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.composition import (GridFilter, apply_grid_filter, bin_caps, draw, dsrl_like, grid_bins,
                               grid_filter, in_window, kept_count, official_numbers,
                               share_floor, smallest_cap, summarize, thin_to_floor,
                               window_of)
from tasks.registry import get_task

NO_WINDOW = (-math.inf, math.inf, -math.inf, math.inf)


def test_official_numbers_come_from_the_file_name():
    car = official_numbers(get_task("CarRun"))  # SafetyCarRun-v0-40-651.hdf5
    assert car["trajectories"] == 651 and car["cost_max"] == 40.0
    assert car["reward_min"] == pytest.approx(204.287, abs=1e-3)
    assert official_numbers(get_task("AntCircle"))["trajectories"] == 5728
    # the window reaches 20% above the file's largest cost (the target allows 25%)
    assert window_of(get_task("CarRun"), GridFilter()) == (0.0, 48.0, car["reward_min"],
                                                            math.inf)
    assert window_of(get_task("CarRun"), GridFilter(cost_margin=0.0))[1] == 40.0
    assert window_of(get_task("CarRun"), GridFilter(window="none")) == NO_WINDOW


def test_window_keeps_the_edges_and_drops_outside():
    costs = np.array([-1.0, 0.0, 5.0, 10.0, 11.0])
    rewards = np.array([5.0, 5.0, 0.0, 10.0, 5.0])
    assert in_window(costs, rewards, (0, 10, 0, 10)).tolist() == [False, True, True, True, False]


def test_grid_bins_span_the_data_and_put_the_top_edge_in_the_last_bin():
    # costs 0..4 in 2 cost bins of width 2, rewards all equal (one reward bin)
    costs = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    rewards = np.ones(5)
    bins = grid_bins(costs, rewards, NO_WINDOW, cost_bins=2, reward_bins=3)
    assert bins.tolist() == [0, 0, 3, 3, 3]  # cost bin * reward_bins + reward bin
    # a point outside the window has no bin; the grid then spans what is left (0..2)
    bins = grid_bins(costs, rewards, (0, 2, -math.inf, math.inf), cost_bins=2, reward_bins=1)
    assert bins.tolist() == [0, 1, 1, -1, -1]


def test_grid_filter_subsamples_crowded_bins_and_drops_sparse_ones():
    # bin A (cost 0): 5 trajectories, bin B (cost 10): 3, bin C (cost 20): 1
    costs = np.array([0, 0, 0, 0, 0, 10, 10, 10, 20], dtype=float)
    rewards = np.zeros(9)
    rng = np.random.default_rng(0)
    kept = grid_filter(costs, rewards, NO_WINDOW, cost_bins=3, reward_bins=1, max_per_bin=2,
                       min_per_bin=1, rng=rng)
    assert len(kept) == 4 and list(kept) == sorted(kept)
    assert (kept < 5).sum() == 2 and ((kept >= 5) & (kept < 8)).sum() == 2
    assert 8 not in kept  # a bin with min_per_bin or fewer is dropped, as DSRL's filter
    assert kept_count(grid_bins(costs, rewards, NO_WINDOW, 3, 1), 2, 1) == 4
    kept = grid_filter(costs, rewards, NO_WINDOW, 3, 1, max_per_bin=10, min_per_bin=0, rng=rng)
    assert kept.tolist() == list(range(9))  # nothing crowded, nothing sparse: all kept


def test_smallest_cap_reaching_a_count():
    costs = np.array([0, 0, 0, 0, 0, 10, 10, 10, 20], dtype=float)
    rewards = np.zeros(9)
    bins = grid_bins(costs, rewards, NO_WINDOW, 3, 1)
    # bins of 5 and 3 (the singleton is dropped): cap 2 keeps 4, cap 3 keeps 6
    assert smallest_cap(bins, min_per_bin=1, target=5) == 3
    assert smallest_cap(bins, min_per_bin=1, target=4) == 2
    assert smallest_cap(bins, min_per_bin=1, target=99) == 5


def test_bin_caps_give_one_back_at_random_until_the_count_is_exact():
    bins = np.array([0] * 5 + [1] * 3 + [2])
    # cap 3 keeps 3 + 3 (the singleton bin 2 is dropped); for 5, one bin at the cap keeps 2
    caps = bin_caps(bins, cap=3, min_per_bin=1, target=5, rng=np.random.default_rng(0))
    assert caps[2] == 0 and sum(caps.values()) == 5 and sorted([caps[0], caps[1]]) == [2, 3]
    assert bin_caps(bins, 3, 1, None, np.random.default_rng(0)) == {0: 3, 1: 3, 2: 0}
    # never below cap - 1: a target under what cap - 1 keeps is not reached
    assert sum(bin_caps(bins, 3, 1, 2, np.random.default_rng(0)).values()) == 4
    kept = draw(bins, {0: 2, 1: 3, 2: 0}, np.random.default_rng(0))
    assert (kept < 5).sum() == 2 and set(range(5, 8)) <= set(kept) and 8 not in kept


def test_share_floor_adds_the_fewest_safe_ones_back_from_filled_bins():
    # bin 0: four safe (cost 5), one kept; bin 1: ten unsafe, all kept; bin 2: safe, none kept
    costs = np.array([5.0] * 4 + [50.0] * 10 + [3.0] * 3)
    bins = np.array([0] * 4 + [1] * 10 + [2] * 3)
    kept = np.array([0] + list(range(4, 14)))  # 1 safe in 11: 9% at threshold 10
    out, added = share_floor(costs, bins, kept, [10], 0.15, np.random.default_rng(0))
    # (1 + x) / (11 + x) >= 0.15 needs x = 1; it comes from bin 0 (bin 2 kept nothing)
    assert added == {"10 safe": 1} and len(out) == 12 and set(kept) < set(out)
    assert set(out) - set(kept) <= {1, 2, 3}
    # a side with nothing left to add stays as it is (CarRun: nothing in its window is > 40)
    out, added = share_floor(costs, bins, kept, [60], 0.15, np.random.default_rng(0))
    assert added == {} and out.tolist() == sorted(kept.tolist())
    # with the floor met nothing changes
    out, added = share_floor(costs, bins, kept, [10], 0.05, np.random.default_rng(0))
    assert added == {} and len(out) == 11


def test_share_floor_keeps_every_threshold_at_the_floor_when_a_later_one_dilutes_it():
    # kept: 3 safe at 10 (cost 5) of 20, exactly 15%; one unsafe at 40 (cost 50), 5%. The 3
    # unsafe ones that 40 needs bring safe at 10 to 3 of 23 (13%): a second pass adds one back
    costs = np.array([5.0] * 6 + [30.0] * 16 + [50.0] * 6)
    bins = np.array([0] * 6 + [1] * 16 + [2] * 6)
    kept = np.array([0, 1, 2] + list(range(6, 22)) + [22])
    out, added = share_floor(costs, bins, kept, [10, 20, 40], 0.15, np.random.default_rng(0))
    assert added == {"40 unsafe": 3, "10 safe": 1} and len(out) == 24
    for threshold in (10, 20, 40):
        assert 0.15 <= float(np.mean(costs[out] <= threshold)) <= 0.85, threshold
    # one pass alone leaves 10 under the floor
    once, _ = share_floor(costs, bins, kept, [10, 20, 40], 0.15, np.random.default_rng(0),
                          passes=1)
    assert float(np.mean(costs[once] <= 10)) < 0.15


def test_thin_to_floor_takes_the_fewest_from_the_fullest_bins_of_the_other_side():
    # bin 0: 2 safe (cost 5); bin 1: 10 unsafe (cost 50); bin 2: 4 unsafe (cost 60); all kept:
    # 2 of 16 safe at 10 (12.5%). 2 / (16 - m) >= 0.15 needs m = 3, all from bin 1 (10 > 4)
    costs = np.array([5.0] * 2 + [50.0] * 10 + [60.0] * 4)
    bins = np.array([0] * 2 + [1] * 10 + [2] * 4)
    kept = np.arange(16)
    out, removed = thin_to_floor(costs, bins, kept, [10], 0.15, 0, np.random.default_rng(0))
    assert removed == {"10 safe": 3} and len(out) == 13
    assert set(kept) - set(out) <= set(range(2, 12)) and {0, 1} <= set(out)
    assert float(np.mean(costs[out] <= 10)) >= 0.15
    # never below `fewest` kept: 14 leaves 2 of 14 (14.3%), under the floor
    out, removed = thin_to_floor(costs, bins, kept, [10], 0.15, 14, np.random.default_rng(0))
    assert removed == {"10 safe": 2} and len(out) == 14
    # the fullest bin first: with 10 to take, bin 1 goes down to bin 2's size before bin 2
    # gives any, and no bin gives its last one
    out, _ = thin_to_floor(costs, bins, kept, [10], 0.5, 0, np.random.default_rng(0))
    assert len(out) == 4 and np.sum(bins[out] == 1) == 1 and np.sum(bins[out] == 2) == 1
    # the floor met, or a side with none at all: nothing changes
    for threshold, floor in ((10, 0.1), (1, 0.15)):
        out, removed = thin_to_floor(costs, bins, kept, [threshold], floor, 0,
                                     np.random.default_rng(0))
        assert removed == {} and out.tolist() == kept.tolist()


def test_apply_grid_filter_thins_the_other_side_where_the_pool_has_too_few_safe():
    spec = get_task("CarRun")  # window: cost 0..48, reward 204..; official count 651
    rng = np.random.default_rng(2)
    # 80 safe at 10 and 2,000 unsafe, each in a strip one reward bin high: adding
    # back every safe one leaves about 11% of the official count
    costs = np.concatenate([rng.uniform(0, 10, 80), rng.uniform(10.5, 48, 2000)])
    rewards = np.concatenate([rng.uniform(300, 307, 80), rng.uniform(400, 407, 2000)])
    kept, report = apply_grid_filter(spec, costs, rewards, GridFilter(), rng)
    assert report["removed_for_share"]["10 safe"] > 0
    safe = int(np.sum(costs[kept] <= 10))
    # the floor reached by the fewest removals, above 2/3 of the official 651
    assert safe / len(kept) >= 0.15 > safe / (len(kept) + 1) and len(kept) >= 434
    off, off_report = apply_grid_filter(spec, costs, rewards,
                                        GridFilter(thin_to_count_share=None),
                                        np.random.default_rng(2))
    assert "removed_for_share" not in off_report
    assert np.sum(costs[off] <= 10) / len(off) < 0.15


def test_apply_grid_filter_targets_the_official_count_inside_the_official_window():
    spec = get_task("CarRun")  # window: cost 0..48, reward 204..; official count 651
    rng = np.random.default_rng(1)
    costs = np.concatenate([rng.uniform(0, 40, 2000), rng.uniform(49, 90, 300)])
    rewards = np.concatenate([rng.uniform(210, 570, 2000), rng.uniform(210, 570, 300)])
    rewards[:100] = 50.0  # below r_min: outside the window
    kept, report = apply_grid_filter(spec, costs, rewards, GridFilter(), rng)
    assert report["in_window"] == 1900 and report["pool"] == 2300
    assert np.all(costs[kept] <= 48) and np.all(rewards[kept] >= spec.reward_min)
    assert len(kept) == report["kept"]
    # exactly the official count (a fractional cap), plus what the share floor added back
    assert len(kept) == 651 + sum(report["added_for_share"].values())
    # one less per bin would keep fewer than the official count
    window = window_of(spec, GridFilter())
    assert kept_count(grid_bins(costs, rewards, window, 60, 50), report["max_per_bin"] - 1, 1) < 651


def test_summary_row_by_hand():
    spec = get_task("BallRun")  # thresholds 10 / 20 / 40
    rewards = np.array([100.0, 500.0, 900.0, 20.0])
    costs = np.array([0.0, 15.0, 50.0, 5.0])
    row = summarize(spec, rewards, costs)
    assert row["trajectories"] == 4 and row["cost_max"] == 50.0
    assert row["safe_fraction"] == {"10": 0.5, "20": 0.75, "40": 0.75}
    norm = lambda r: (r - spec.reward_min) / (spec.reward_max - spec.reward_min)  # noqa: E731
    assert row["best_normalized_reward"]["10"] == pytest.approx(norm(100.0))
    assert row["best_normalized_reward"]["20"] == pytest.approx(norm(500.0))
    # median of the safe trajectories: {100, 20} at 10, {100, 500, 20} at 20 and 40
    assert row["median_safe_normalized_reward"]["10"] == pytest.approx(norm(60.0))
    assert row["median_safe_normalized_reward"]["40"] == pytest.approx(norm(100.0))
    assert row["best_normalized_reward_overall"] == pytest.approx(norm(900.0))
    assert row["below_reward_min_fraction"] == 0.25  # 20 < r_min = 26.3
    none_safe = summarize(spec, np.array([10.0]), np.array([99.0]))
    assert none_safe["best_normalized_reward"]["40"] is None
    assert none_safe["median_safe_normalized_reward"]["40"] is None


def test_each_dsrl_like_target_flips_where_it_should():
    spec = get_task("BallRun")  # official: 940 trajectories, max cost 80, r 26..1327
    rng = np.random.default_rng(0)
    costs = np.concatenate([rng.uniform(0, 9, 300), rng.uniform(11, 39, 340),
                            rng.uniform(41, 80, 300)])
    rewards = rng.uniform(30, 1300, 940)
    good = summarize(spec, rewards, costs)
    assert all(check["holds"] for check in dsrl_like(good).values()), dsrl_like(good)

    def fails(rewards, costs):
        return {name for name, c in dsrl_like(summarize(spec, rewards, costs)).items()
                if not c["holds"]}

    assert fails(rewards * 0.8, costs) == {"best_reward"}
    assert fails(rewards, costs * 1.3) == {"cost_max"}
    assert fails(rewards, np.where(costs <= 10, 12.0, costs)) == {"share@10"}
    assert fails(rewards, np.minimum(costs, 40.0)) >= {"share@40"}
    assert fails(rewards[:600], costs[:600]) >= {"count"}
    low = rewards.copy()
    low[:60] = 0.0  # 6% below r_min
    assert fails(low, costs) == {"below_rmin"}


def test_bench_datasets_on_an_official_layout_file(data_dirs, capsys):
    import json

    from bench.cli import main
    from tasks.datasets import official_path, write_dsrl_file

    spec = get_task("CarRun")
    rng = np.random.default_rng(0)
    episodes, length = 12, 5
    size = episodes * length
    rewards = np.repeat(np.linspace(50, 110, episodes), length)  # returns 250 .. 550
    costs = np.repeat(np.arange(episodes, dtype=float), length)  # returns 0, 5, .., 55
    timeouts = np.tile(np.r_[np.zeros(length - 1), 1.0], episodes)
    arrays = {"observations": rng.normal(size=(size, spec.obs_dim)),
              "next_observations": rng.normal(size=(size, spec.obs_dim)),
              "actions": rng.uniform(-1, 1, (size, spec.act_dim)), "rewards": rewards,
              "costs": costs, "terminals": np.zeros(size), "timeouts": timeouts}
    write_dsrl_file(official_path(spec), arrays, {})
    assert main(["datasets", "--tasks", "CarRun", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["source"] == "dsrl" and row["profile"] is None and row["card"] is None
    assert row["trajectories"] == 12 and row["cost_max"] == 55.0
    assert row["reward_min"] == pytest.approx(250.0) and row["reward_max"] == pytest.approx(550)
    assert row["safe_fraction"] == {"10": 3 / 12, "20": 5 / 12, "40": 9 / 12}
    best_safe = rewards[2 * length] * length  # the third episode, cost 10
    assert row["best_normalized_reward"]["10"] == pytest.approx(
        (best_safe - spec.reward_min) / (spec.reward_max - spec.reward_min), rel=1e-5)
    assert row["official"] == official_numbers(spec)
    assert not row["targets"]["count"]["holds"]  # 12 trajectories against 651
    assert main(["datasets", "--suite", "metadrive"]) == 0
    assert "no dataset found" in capsys.readouterr().out
    # the suite's scatters on one sheet (a panel per dataset found)
    out = data_dirs[0].parent / "sheet"
    assert main(["plot", "--kind", "datasets", "--suite", "bullet", "--data", "dsrl",
                 "--out", str(out)]) == 0
    assert out.with_suffix(".png").stat().st_size > 1000 and out.with_suffix(".pdf").exists()
    assert main(["plot", "--kind", "datasets", "--suite", "metadrive", "--data", "dsrl"]) == 2
