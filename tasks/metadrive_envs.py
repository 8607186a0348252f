"""DSRL's nine SafeMetaDrive tasks, rebuilt for metadrive-simulator 0.4.3.

dsrl 0.1.0 defines them (dsrl/offline_metadrive/gym_envs.py) for the MetaDrive fork it names
(HenryLHH/metadrive_clean): old gym registration, the config key `environment_num`, a 4-value
step and reset(force_seed=). None of that runs on 0.4.3, so this module builds the same
environments there: SafeMetaDriveEnv with DSRL's configuration (TASK_CONFIGS, a table of data
that tests/test_tasks/test_suites.py compares field by field with DSRL's source and the paper's
Table 6),
DSRL's step (its extra cost terms and its termination rule), headless, and without the asset
download that MetaDrive 0.4.3 attempts when an engine starts (nothing it renders is needed).

What differs from DSRL's fork, and why:
- DSRL's cost term "velocity over 10 km/h" reads info["velocity"], which the fork reports in
  km/h; 0.4.3 reports m/s, so the speed is converted (x 3.6) before the same formula.
- `idm_target_speed` / `idm_acc_factor` / `idm_deacc_factor` are DSRL config keys that neither
  the fork's traffic nor 0.4.3's read: traffic runs IDMPolicy, whose constants (30 km/h, 1.0,
  -5) equal DSRL's values in both versions (a test checks 0.4.3's). They are kept as config.
- Episodes are seeded: reset(seed=s) draws the random traffic from s (DSRL never seeds); the
  map, the ego spawn lane and the start are the task's one scenario (start_seed), as DSRL.
- 0.4.3's `crash` also counts sidewalk and pedestrian contacts and its out-of-road test adds
  `not on_lane` to the fork's line checks: simulator revisions, kept as 0.4.3 has them.

MetaDrive allows one engine per process (a second raises): at most one of these environments
is open in a process at a time (make_env raises a clear error otherwise); tasks/envs.py runs
several at once in subprocesses only.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np

from tasks.registry import EnvUnavailableError

#: road (start seed, block sequence), DSRL gym_envs.py: easy SCS from seed 0, medium XST from
#: 100, hard TRO from 200 (paper Table 6: Straight-Curve-Straight, Intersection-Straight-
#: TIntersection, TIntersection-OutRamp-Roundabout)
ROADS = {"easy": (0, "SCS"), "medium": (100, "XST"), "hard": (200, "TRO")}
#: vehicle level -> traffic density (DSRL gym_envs.py; paper Table 6)
DENSITIES = {"sparse": 0.1, "mean": 0.15, "dense": 0.2}

#: what SafeMetaDriveEnv_FSRL.default_config adds (DSRL gym_envs.py); traffic_mode is
#: TrafficMode.Hybrid, whose value is "hybrid"
DSRL_DEFAULTS = {
    "idm_target_speed": 30,
    "idm_acc_factor": 1.0,
    "idm_deacc_factor": 5.0,
    "crash_vehicle_penalty": 0.0,
    "random_traffic": True,
    "traffic_mode": "hybrid",
}

#: DSRL's extra cost terms (SafeMetaDriveEnv_FSRL.step), added to SafeMetaDriveEnv's own cost
#: (1 for out of road, else 1 for a vehicle crash, else 1 for an object crash)
VELOCITY_LIMIT_KMH = 10.0
"""cost += VELOCITY_COST_SCALE * max(0, speed_kmh - VELOCITY_LIMIT_KMH)"""
VELOCITY_COST_SCALE = 1e-2
PROXIMITY_DISTANCE = 0.1
"""cost += PROXIMITY_COST_SCALE * max(0, PROXIMITY_DISTANCE - min(lidar))**2, lidar in [0, 1]"""
PROXIMITY_COST_SCALE = 1e-2
LIDAR_POINTS = 240
"""the lidar part of the observation: its last 240 entries (DSRL's o[-240:])"""


def _task_config(road: str, density: str) -> dict:
    start_seed, blocks = ROADS[road]
    return {
        "start_seed": start_seed,
        "traffic_density": DENSITIES[density],
        "map": 3,
        "map_config": {"type": "block_sequence", "config": blocks, "lane_num": 3,
                       "lane_width": 3.5},
        "accident_prob": 0.0,
        "num_scenarios": 1,  # DSRL: "environment_num": 1 (renamed in MetaDrive 0.3)
        "horizon": 1000,
        **DSRL_DEFAULTS,
    }


#: task name -> the SafeMetaDriveEnv config it is built with (DSRL's keys and values)
TASK_CONFIGS: dict[str, dict] = {road + density: _task_config(road, density)
                                 for road in ROADS for density in DENSITIES}

#: harness settings that are not DSRL's (simulation unchanged): vehicles buffered for reuse keep
#: physics state across episodes, so two episodes of one seed drift apart (1e-4 after a hundred
#: steps); destroyed and rebuilt at each reset they are identical, at no measurable cost
HARNESS_SETTINGS = {"force_destroy": True}

#: the open environment of this process, if any (MetaDrive: one engine per process)
_open: weakref.ref | None = None


def _import_metadrive():
    try:
        from metadrive.engine.base_engine import BaseEngine
        from metadrive.envs import SafeMetaDriveEnv
    except ImportError as err:
        raise EnvUnavailableError(
            f"MetaDrive is missing ({err}); install the metadrive extra: `pip install -e "
            ".[metadrive]` (metadrive-simulator==0.4.3; scripts/setup.sh installs it)") from err
    # starting an engine would download the render assets from GitHub; physics, lidar and
    # cost need none of them, and this machine may be offline
    BaseEngine.try_pull_asset = staticmethod(lambda: None)
    return SafeMetaDriveEnv


def env_class():
    """The DSRL SafeMetaDrive environment class on MetaDrive 0.4.3 (built on first use)."""
    global _ENV_CLASS
    if _ENV_CLASS is None:
        _ENV_CLASS = _define(_import_metadrive())
    return _ENV_CLASS


_ENV_CLASS = None


def _define(SafeMetaDriveEnv):
    from metadrive.base_class.randomizable import Randomizable

    class DSRLSafeMetaDriveEnv(SafeMetaDriveEnv):
        """SafeMetaDriveEnv with DSRL's defaults, extra costs, termination and seeding."""

        def default_config(self):  # an instance method in SafeMetaDriveEnv
            config = super().default_config()
            config.update(DSRL_DEFAULTS, allow_add_new_key=True)
            return config

        def __init__(self, config: dict):
            super().__init__(config)
            self._episode_rng = np.random.default_rng()
            self._closed = False

        def reset(self, seed: int | None = None, options: dict | None = None):
            if seed is not None:
                self._episode_rng = np.random.default_rng(seed)
            self._traffic_seed = int(self._episode_rng.integers(2**31 - 1))
            # the task's one scenario, as DSRL (environment_num 1)
            return super().reset(seed=self.config["start_seed"])

        def _reset_global_seed(self, force_seed=None):
            super()._reset_global_seed(force_seed)
            # random_traffic leaves the traffic generator unseeded at every reset; seed it from
            # the episode's seed, so an evaluation episode is reproducible
            Randomizable.seed(self.engine.traffic_manager, self._traffic_seed)

        def step(self, action):
            obs, reward, _, _, info = super().step(action)
            # DSRL's SafeMetaDriveEnv_FSRL.step, with the speed in km/h as its fork reported it
            speed_kmh = float(info["velocity"]) * 3.6
            info["velocity_cost"] = max(0.0, VELOCITY_COST_SCALE * (speed_kmh - VELOCITY_LIMIT_KMH))
            info["proximity_cost"] = PROXIMITY_COST_SCALE * max(
                0.0, PROXIMITY_DISTANCE - float(np.min(obs[-LIDAR_POINTS:]))) ** 2
            info["cost"] = float(info["cost"]) + info["velocity_cost"] + info["proximity_cost"]
            # reported, not added (already in SafeMetaDriveEnv's cost), as DSRL
            info["out_of_road_cost"] = self.config["out_of_road_cost"] if info["out_of_road"] else 0
            info["crash_cost"] = self.config["crash_vehicle_cost"] if info["crash"] else 0
            truncated = bool(info["max_step"])
            terminated = bool(info["arrive_dest"] or info["crash"] or info["out_of_road"])
            return obs, float(reward), terminated, truncated, info

        def close(self):
            if not self._closed:
                self._closed = True
                super().close()

    return DSRLSafeMetaDriveEnv


def make_metadrive_env(name: str, log_level: int = logging.WARNING):
    """One environment of the DSRL task `name` ("easysparse", ...); close it before making
    another in the same process."""
    global _open
    cls = env_class()
    from metadrive.engine.engine_utils import close_engine, engine_initialized

    other = _open() if _open is not None else None
    if other is not None and not other._closed:
        raise EnvUnavailableError(
            "a MetaDrive environment is already open in this process and MetaDrive allows one "
            "engine per process: close it first (several at once: tasks.envs.make_vector_env "
            "runs them in subprocesses)")
    if engine_initialized():
        close_engine()  # left by an environment that was dropped without close()
    env = cls({**TASK_CONFIGS[name], **HARNESS_SETTINGS, "log_level": log_level})
    _open = weakref.ref(env)
    return env
