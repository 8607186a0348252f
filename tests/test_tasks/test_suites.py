"""The Safety-Gymnasium and MetaDrive suites on the installed simulators: the Python 3.11 patch
of safety-gymnasium, every task's environment, DSRL's MetaDrive configuration field by field,
evaluation in waves (one MetaDrive engine per process), and a smoke collect + run per suite.

No skips: the project's install (setup.sh, tox) provides both simulators, and a missing one must
fail here loudly rather than pass as skipped."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tasks.envs import EnvUnavailableError, check_spaces, make_env, make_vector_env
from tasks.registry import get_task, suite_tasks

NEW_TASKS = [spec.name for spec in suite_tasks("safetygym") + suite_tasks("metadrive")]


# ------------------------------------------------------------------------ safety-gymnasium


def test_installed_safety_gymnasium_is_patched_and_imports_in_a_fresh_interpreter():
    from tasks.patch_safety_gymnasium import patch_installed

    assert patch_installed(check=True) == {}  # nothing left to patch
    code = ("import safety_gymnasium\n"
            "from safety_gymnasium.assets import free_geoms, geoms, mocaps\n"
            "env = safety_gymnasium.make('SafetySwimmerVelocity-v1')\n"
            "obs, info = env.reset(seed=0)\n"
            "obs, reward, cost, terminated, truncated, info = env.step(env.action_space.sample())\n"
            "print(geoms.Hazards(num=1).color.tolist(), obs.shape)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 0, 1, 1] (8,)"


def test_patch_rewrites_numpy_defaults_once_and_adds_the_field_import():
    from tasks.patch_safety_gymnasium import patch_source

    original = ("from dataclasses import dataclass\n\n"
                "@dataclass\nclass Circle(Geom):\n"
                "    name: str = 'circle'\n"
                "    color: np.array = COLOR['circle']\n"
                "    group: np.array = GROUP['circle']  # lidar group\n")
    patched, count = patch_source(original)
    assert count == 1
    assert "from dataclasses import dataclass, field\n" in patched
    assert "    color: np.array = field(default_factory=lambda: COLOR['circle'].copy())\n" \
        in patched
    assert "    group: np.array = GROUP['circle']  # lidar group\n" in patched  # an int
    assert patch_source(patched) == (patched, 0)  # idempotent


def test_headless_worlds_drop_only_the_skybox():
    """The Car tasks compile their world without the skybox texture: same observations,
    rewards and costs as the full model."""
    import safety_gymnasium.world as world

    spec = get_task("CarGoal1")
    env = make_env(spec, seed=3)  # installs the headless world compiler
    # (the first episode after make differs from all later ones in the 14th digit)
    headless = world.mujoco
    runs = []
    try:
        for compiler in (headless, headless._real):
            world.mujoco = compiler
            obs, _ = env.reset(seed=3)
            steps = [obs]
            for action in np.random.default_rng(0).uniform(-1, 1, (25, 2)):
                obs, reward, _, _, info = env.step(action)
                steps.append(np.concatenate([obs, [reward, info["cost"]]]))
            runs.append((np.concatenate(steps), env.unwrapped.task.model.ntex))
    finally:
        world.mujoco = headless
        env.close()
    (fast, fast_textures), (full, full_textures) = runs
    np.testing.assert_array_equal(fast, full)
    assert fast_textures == full_textures - 1


# ------------------------------------------------------------------------------- every task


@pytest.mark.parametrize("name", NEW_TASKS)
def test_every_task_makes_resets_and_steps(name):
    spec = get_task(name)
    env = make_env(spec)
    try:
        check_spaces(spec, env)
        assert env.observation_space.shape == (spec.obs_dim,)
        assert env.action_space.shape == (spec.act_dim,)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (spec.obs_dim,) and np.isfinite(obs).all()
        rng = np.random.default_rng(0)
        for _ in range(5):
            action = rng.uniform(env.action_space.low, env.action_space.high)
            obs, reward, terminated, truncated, info = env.step(action.astype(np.float32))
            assert obs.shape == (spec.obs_dim,) and np.isfinite(obs).all()
            assert np.isfinite(reward) and float(info["cost"]) >= 0.0
            if terminated or truncated:
                break
        if spec.suite == "metadrive":
            from tasks.metadrive_envs import TASK_CONFIGS

            config = TASK_CONFIGS[name]
            blocks = env.unwrapped.current_map.blocks
            assert "".join(block.ID for block in blocks[1:]) == config["map_config"]["config"]
            assert env.unwrapped.current_map.config["lane_num"] == 3
    finally:
        env.close()


def test_episodes_last_dsrls_1000_steps():
    swimmer = make_env(get_task("SwimmerVelocity"), seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = swimmer.step(np.zeros(2, np.float32))
        steps, done = steps + 1, terminated or truncated
    assert (steps, truncated) == (1000, True)
    swimmer.close()

    car = make_env(get_task("easysparse"), seed=0)
    steps, done = 0, False
    while not done:  # braking: never crashes, never leaves the road
        _, _, terminated, truncated, info = car.step(np.array([0.0, -1.0], np.float32))
        steps, done = steps + 1, terminated or truncated
    assert (steps, truncated, terminated) == (1000, True, False) and info["max_step"]
    car.close()


# ------------------------------------------------------------------------------- MetaDrive

# DSRL's own values, written out from its source (liuzuxin/DSRL at 71064f2,
# dsrl/offline_metadrive/gym_envs.py, the nine *Env classes; the same dicts are in the
# MetaDrive fork it installs, HenryLHH/metadrive_clean, metadrive/fsrl_metadrive/register.py)
DSRL_ROADS = {"easy": (0, "SCS"), "medium": (100, "XST"), "hard": (200, "TRO")}
DSRL_DENSITY = {"sparse": 0.1, "mean": 0.15, "dense": 0.2}
DSRL_TASK = {"map": 3, "accident_prob": 0.0, "environment_num": 1, "horizon": 1000}
# SafeMetaDriveEnv_FSRL.default_config (same file); TrafficMode.Hybrid == "hybrid"
DSRL_DEFAULT = {"idm_target_speed": 30, "idm_acc_factor": 1.0, "idm_deacc_factor": 5.0,
                "crash_vehicle_penalty": 0.0, "random_traffic": True, "traffic_mode": "hybrid"}
# the fork's SafeMetaDriveEnv.default_config: one unit of cost per event
DSRL_EVENT_COSTS = {"crash_vehicle_cost": 1.0, "crash_object_cost": 1.0, "out_of_road_cost": 1.0}
# the paper's Table 6 (traffic density, block length, block sequence, horizon, lane width,
# lane count); start seeds are DSRL's (above)
PAPER_TABLE_6 = {  # its rows EasySparse, EasyMean, ..., HardDense
    "easysparse": (0.1, 3, "SCS", 1000, 3.5, 3), "easymean": (0.15, 3, "SCS", 1000, 3.5, 3),
    "easydense": (0.2, 3, "SCS", 1000, 3.5, 3), "mediumsparse": (0.1, 3, "XST", 1000, 3.5, 3),
    "mediummean": (0.15, 3, "XST", 1000, 3.5, 3), "mediumdense": (0.2, 3, "XST", 1000, 3.5, 3),
    "hardsparse": (0.1, 3, "TRO", 1000, 3.5, 3), "hardmean": (0.15, 3, "TRO", 1000, 3.5, 3),
    "harddense": (0.2, 3, "TRO", 1000, 3.5, 3),
}


def _dsrl_config(name: str) -> dict:
    road = next(r for r in DSRL_ROADS if name.startswith(r))
    start_seed, blocks = DSRL_ROADS[road]
    return {"start_seed": start_seed, "traffic_density": DSRL_DENSITY[name[len(road):]],
            "map_config": {"type": "block_sequence", "config": blocks}, **DSRL_TASK,
            **DSRL_DEFAULT}


@pytest.mark.parametrize("name", [s.name for s in suite_tasks("metadrive")])
def test_metadrive_configuration_is_dsrls_field_by_field(name):
    from tasks.metadrive_envs import TASK_CONFIGS, make_metadrive_env

    ours = TASK_CONFIGS[name]
    env = make_metadrive_env(name)  # configured, no engine yet: nothing is simulated
    try:
        built = env.config  # what MetaDrive 0.4.3 made of it
        for key, value in _dsrl_config(name).items():
            our_key = "num_scenarios" if key == "environment_num" else key  # renamed in 0.3
            if key == "map_config":
                for field, setting in value.items():
                    assert ours[key][field] == setting, (key, field)
                    assert built[key][field] == setting, (key, field)
            else:
                assert ours[our_key] == value, key
                assert built[our_key] == value, key
        for key, value in DSRL_EVENT_COSTS.items():
            assert built[key] == value, key
        density, length, blocks, horizon, width, lanes = PAPER_TABLE_6[name]
        assert (built["traffic_density"], len(built["map_config"]["config"]),
                built["map_config"]["config"], built["horizon"], built["map_config"]["lane_width"],
                built["map_config"]["lane_num"]) == (density, length, blocks, horizon, width, lanes)
        assert built["vehicle_config"]["lidar"]["num_lasers"] == 240  # o[-240:] in DSRL's cost
    finally:
        env.close()


def test_metadrive_traffic_and_extra_costs_are_dsrls():
    from metadrive.manager.traffic_manager import TrafficMode
    from metadrive.policy.idm_policy import IDMPolicy

    from tasks import metadrive_envs as md

    assert TrafficMode.Hybrid == DSRL_DEFAULT["traffic_mode"]

    # DSRL's idm_* keys are read by no traffic code; 0.4.3's IDMPolicy has the same values
    assert IDMPolicy.NORMAL_SPEED == DSRL_DEFAULT["idm_target_speed"]  # km/h
    assert IDMPolicy.ACC_FACTOR == DSRL_DEFAULT["idm_acc_factor"]
    assert -IDMPolicy.DEACC_FACTOR == DSRL_DEFAULT["idm_deacc_factor"]
    # SafeMetaDriveEnv_FSRL.step: 1e-2 * max(0, v - 10), 1e-2 * max(0, 0.1 - min(o[-240:]))**2
    assert (md.VELOCITY_COST_SCALE, md.VELOCITY_LIMIT_KMH) == (1e-2, 10.0)
    assert (md.PROXIMITY_COST_SCALE, md.PROXIMITY_DISTANCE, md.LIDAR_POINTS) == (1e-2, 0.1, 240)

    env = make_env(get_task("easydense"), seed=1)
    try:
        speeds = []
        for _ in range(40):  # full throttle along the first straight
            obs, _, terminated, truncated, info = env.step(np.array([0.0, 1.0], np.float32))
            speed_kmh = env.unwrapped.agent.speed_km_h
            speeds.append(speed_kmh)
            assert info["velocity_cost"] == pytest.approx(max(0.0, 1e-2 * (speed_kmh - 10)))
            assert info["proximity_cost"] == pytest.approx(
                1e-2 * max(0.0, 0.1 - obs[-240:].min()) ** 2)
            event = 1.0 if (info["out_of_road"] or info["crash_vehicle"]
                            or info["crash_object"]) else 0.0
            assert info["cost"] == pytest.approx(
                event + info["velocity_cost"] + info["proximity_cost"])
            assert terminated == bool(info["crash"] or info["out_of_road"] or info["arrive_dest"])
            if terminated or truncated:
                break
        assert max(speeds) > 20  # the velocity term was exercised
    finally:
        env.close()


def test_one_metadrive_engine_per_process():
    spec = get_task("easysparse")
    env = make_env(spec)
    try:
        with pytest.raises(EnvUnavailableError, match="one engine per process"):
            make_env(spec)
    finally:
        env.close()
    make_env(get_task("hardmean")).close()  # once closed, another one may open


def test_metadrive_evaluation_runs_in_seeded_waves():
    from bench.evaluate import evaluate_policy

    spec = get_task("mediumsparse")
    envs = make_vector_env(spec, 3)
    try:
        assert envs.num_envs == 1  # one engine in this process: the episodes run in turn

        def act(obs):  # steady throttle, a little steering: episodes end at some corner
            return np.tile([0.05, 0.6], (len(obs), 1))

        first = evaluate_policy(act, spec, 3, seed=7, envs=envs)
        again = evaluate_policy(act, spec, 3, seed=7, envs=envs)
        alone = evaluate_policy(act, spec, 1, seed=8, envs=envs)  # episode 1 of the above
    finally:
        envs.close()
    assert first == again
    assert len(first["reward_returns"]) == 3 and min(first["lengths"]) > 0
    assert alone["reward_returns"][0] == first["reward_returns"][1]


@pytest.mark.slow
def test_metadrive_subprocess_envs_give_the_same_episodes(monkeypatch):
    """BENCH_METADRIVE_ENVS=2: two engines, each in a spawned subprocess."""
    from bench.evaluate import evaluate_policy

    spec = get_task("easysparse")

    def act(obs):
        return np.tile([0.0, 0.5], (len(obs), 1))

    sequential = evaluate_policy(act, spec, 2, seed=3)
    monkeypatch.setenv("BENCH_METADRIVE_ENVS", "2")
    envs = make_vector_env(spec, 2)
    try:
        assert envs.num_envs == 2
        parallel = evaluate_policy(act, spec, 2, seed=3, envs=envs)
    finally:
        envs.close()
    assert parallel == sequential


# --------------------------------------------------------------------- collect, run, suites


def test_suite_all_and_suite_lists():
    assert len(suite_tasks("all")) == 28
    assert [s.suite for s in suite_tasks("safetygym,metadrive")] == ["safetygym"] * 11 + [
        "metadrive"] * 9


@pytest.mark.slow
@pytest.mark.parametrize("task", ["SwimmerVelocity", "easysparse"])
def test_smoke_collect_and_run(task, data_dirs, tmp_path, capsys):
    from bench.cli import main
    from tasks.datasets import local_path, read_dsrl_file

    spec = get_task(task)
    assert main(["collect", "--tasks", task, "--profile", "smoke", "--jobs", "1"]) == 0
    arrays, attrs = read_dsrl_file(local_path(spec, "smoke"), spec)
    assert attrs["source"] == "local" and arrays["observations"].shape[1] == spec.obs_dim
    if spec.suite == "metadrive":  # one engine per process: one environment per agent
        assert json.loads(attrs["budget"])["num_envs"] == "1"
    results = tmp_path / "results"
    assert main(["run", "--tasks", task, "--methods", "BC-All", "--profile", "smoke",
                 "--results", str(results), "--jobs", "1", "--quiet"]) == 0
    records = sorted(results.rglob("thr*-seed*.json"))
    assert len(records) == 3
    for path in records:
        record = json.loads(path.read_text())
        assert record["suite"] == spec.suite and record["data_source"] == "local"
        assert len(record["reward_returns"]) == 2 and np.isfinite(record["normalized_cost"])
