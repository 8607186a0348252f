import json
import os

import numpy as np
import pytest

from tasks.registry import TASKS, UnknownNameError, get_task, suite_tasks

PAPER_TASKS = {
    "bullet": ["BallRun", "CarRun", "DroneRun", "AntRun", "BallCircle", "CarCircle",
               "DroneCircle", "AntCircle"],
    "safetygym": ["CarButton1", "CarButton2", "CarGoal1", "CarGoal2", "CarPush1", "CarPush2",
                  "SwimmerVelocity", "HopperVelocity", "HalfCheetahVelocity",
                  "Walker2dVelocity", "AntVelocity"],
    "metadrive": ["easysparse", "easymean", "easydense", "mediumsparse", "mediummean",
                  "mediumdense", "hardsparse", "hardmean", "harddense"],
}


def test_the_28_tasks_and_their_suites_and_thresholds():
    assert len(TASKS) == 28
    for suite, names in PAPER_TASKS.items():
        assert [s.name for s in suite_tasks(suite)] == names
        expected = (20.0, 40.0, 80.0) if suite == "safetygym" else (10.0, 20.0, 40.0)
        assert all(s.thresholds == expected for s in suite_tasks(suite))


def test_constants_are_dsrls_own():
    from dsrl import infos

    for spec in TASKS.values():
        assert spec.max_episode_steps == infos.DEFAULT_MAX_EPISODE_STEPS[spec.name]
        assert spec.reward_min == infos.MIN_EPISODE_REWARD[spec.name]
        assert spec.reward_max == infos.MAX_EPISODE_REWARD[spec.name]
        assert spec.cost_max == infos.MAX_EPISODE_COST[spec.name]
        assert spec.dataset_file == os.path.basename(infos.DATASET_URLS[spec.name])


@pytest.mark.parametrize("name", sorted(TASKS))
def test_normalization_equals_dsrl_get_normalized_score(name):
    from dsrl import infos
    from dsrl.offline_env import OfflineEnv

    spec = TASKS[name]
    reference = OfflineEnv(max_episode_reward=infos.MAX_EPISODE_REWARD[name],
                           min_episode_reward=infos.MIN_EPISODE_REWARD[name],
                           max_episode_cost=infos.MAX_EPISODE_COST[name],
                           min_episode_cost=infos.MIN_EPISODE_COST[name])
    rng = np.random.default_rng(0)
    for threshold in (*spec.thresholds, 0.0):
        reference.set_target_cost(threshold)
        for reward, cost in zip(rng.uniform(-50, 1500, 5), rng.uniform(0, 200, 5)):
            assert spec.normalize(reward, cost, threshold) == pytest.approx(
                reference.get_normalized_score(reward, cost), rel=1e-12)


def test_zero_threshold_uses_epsilon_one():
    spec = get_task("BallRun")
    assert spec.normalize(spec.reward_max, 0.0, 0.0) == (1.0, 1.0)
    assert spec.normalize(spec.reward_min, 5.0, 10.0) == (0.0, 0.5)


@pytest.mark.parametrize("alias,name", [
    ("halfcheetahvel", "HalfCheetahVelocity"), ("HalfCheetahVel", "HalfCheetahVelocity"),
    ("easy sparse", "easysparse"), ("Easy_Sparse", "easysparse"), ("BALLRUN", "BallRun"),
    ("SwimmerVel", "SwimmerVelocity"), ("hard-dense", "harddense")])
def test_names_in_any_case_and_the_papers_short_forms(alias, name):
    assert get_task(alias).name == name


def test_unknown_task_suggests_the_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean BallRun"):
        get_task("BalRun")
    with pytest.raises(UnknownNameError, match="bullet"):
        suite_tasks("bulet")


def test_tasks_command_prints_json(capsys):
    from bench.cli import main

    assert main(["tasks", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 28
    ballrun = next(t for t in listed if t["name"] == "BallRun")
    assert ballrun["thresholds"] == [10.0, 20.0, 40.0]
    assert ballrun["max_episode_steps"] == 100
    assert ballrun["dataset_file"] == "SafetyBallRun-v0-80-940.hdf5"
    assert {"reward_min", "reward_max", "suite"} <= set(ballrun)
