"""The 28 DSRL tasks of the LSPC paper, as one table of frozen TaskSpecs.

Every number here is the one the `dsrl` package (0.1.0, dsrl/infos.py) ships:
episode lengths, reference reward min/max, the official dataset file name (the basename
of DSRL's download URL). tests/test_tasks/test_tasks.py checks them against dsrl itself.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

SUITES = ("bullet", "safetygym", "metadrive")

#: cost thresholds per suite (paper section 5; DSRL's evaluation protocol)
SUITE_THRESHOLDS = {
    "bullet": (10.0, 20.0, 40.0),
    "safetygym": (20.0, 40.0, 80.0),
    "metadrive": (10.0, 20.0, 40.0),
}


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: everything a method, the loader and the evaluator need to know."""

    name: str  # DSRL's name, e.g. "BallRun", "easysparse"
    suite: str  # bullet | safetygym | metadrive
    env_id: str  # the DSRL-registered gymnasium id of the simulator environment
    dataset_file: str  # official DSRL HDF5 file name
    max_episode_steps: int
    reward_min: float  # DSRL's MIN_EPISODE_REWARD
    reward_max: float  # DSRL's MAX_EPISODE_REWARD
    cost_max: float  # DSRL's MAX_EPISODE_COST (the top of the data's cost returns)
    obs_dim: int
    act_dim: int
    paper_name: str  # how the paper's tables print it
    #: env steps a second of the harness's collector (PPO-Lagrangian, updates included) on one
    #: CPU core: speed-scaled collection budgets give every task the same wall time by it
    #: (how it was measured: docs/data/README.md)
    collect_speed: float

    @property
    def thresholds(self) -> tuple[float, ...]:
        return SUITE_THRESHOLDS[self.suite]

    @property
    def dataset_url(self) -> str:
        """Current public location of the official file (DSRL moved to Hugging Face)."""
        return f"https://huggingface.co/datasets/YYY-45/DSRL/resolve/main/{self.dataset_file}"

    def normalize(self, reward_return, cost_return, threshold: float):
        """DSRL's get_normalized_score: R = (R - r_min)/(r_max - r_min), C = (C + e)/(k + e)."""
        eps = 1.0 if threshold == 0 else 0.0
        reward = (reward_return - self.reward_min) / (self.reward_max - self.reward_min)
        cost = (cost_return + eps) / (threshold + eps)
        return reward, cost

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "suite": self.suite,
            "env_id": self.env_id,
            "dataset_file": self.dataset_file,
            "max_episode_steps": self.max_episode_steps,
            "thresholds": list(self.thresholds),
            "reward_min": self.reward_min,
            "reward_max": self.reward_max,
            "cost_max": self.cost_max,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "paper_name": self.paper_name,
        }


# name, env_id, dataset_file, steps, reward_min, reward_max, cost_max, obs, act, paper name,
# collector speed
_BULLET = [
    ("BallRun", "OfflineBallRun-v0", "SafetyBallRun-v0-80-940.hdf5", 100,
     26.339754104614258, 1327.445556640625, 80.0, 7, 2, "BallRun", 3000.0),
    ("CarRun", "OfflineCarRun-v0", "SafetyCarRun-v0-40-651.hdf5", 200,
     204.28726196289062, 574.6533203125, 40.0, 7, 2, "CarRun", 1150.0),
    ("DroneRun", "OfflineDroneRun-v0", "SafetyDroneRun-v0-140-1990.hdf5", 200,
     10.557029724121094, 682.8330078125, 140.0, 17, 4, "DroneRun", 1850.0),
    ("AntRun", "OfflineAntRun-v0", "SafetyAntRun-v0-150-1816.hdf5", 200,
     0.001767391717990563, 955.4818725585938, 150.0, 33, 8, "AntRun", 1300.0),
    ("BallCircle", "OfflineBallCircle-v0", "SafetyBallCircle-v0-80-886.hdf5", 200,
     0.38312244415283203, 881.46337890625, 80.0, 8, 2, "BallCircle", 3050.0),
    ("CarCircle", "OfflineCarCircle-v0", "SafetyCarCircle-v0-100-1450.hdf5", 300,
     3.484419822692871, 534.3060913085938, 100.0, 8, 2, "CarCircle", 850.0),
    ("DroneCircle", "OfflineDroneCircle-v0", "SafetyDroneCircle-v0-100-1923.hdf5", 300,
     207.794189453125, 996.38916015625, 100.0, 18, 4, "DroneCircle", 1500.0),
    ("AntCircle", "OfflineAntCircle-v0", "SafetyAntCircle-v0-200-5728.hdf5", 500,
     0.0177031010389328, 460.7091979980469, 200.0, 34, 8, "AntCircle", 1050.0),
]

_SAFETYGYM = [
    ("CarButton1", "OfflineCarButton1Gymnasium-v0", "SafetyCarButton1Gymnasium-v0-250-2656.hdf5",
     1000, 0.0028926206826067613, 44.420003345738984, 250.0, 88, 2, "CarButton1", 400.0),
    ("CarButton2", "OfflineCarButton2Gymnasium-v0", "SafetyCarButton2Gymnasium-v0-300-3755.hdf5",
     1000, 0.001767391717990563, 41.99513815522894, 300.0, 88, 2, "CarButton2", 400.0),
    ("CarGoal1", "OfflineCarGoal1Gymnasium-v0", "SafetyCarGoal1Gymnasium-v0-120-1671.hdf5",
     1000, 0.012232819540852091, 39.907809198384705, 120.0, 72, 2, "CarGoal1", 1150.0),
    ("CarGoal2", "OfflineCarGoal2Gymnasium-v0", "SafetyCarGoal2Gymnasium-v0-200-4105.hdf5",
     1000, 0.001032874531954775, 28.902897990056502, 200.0, 72, 2, "CarGoal2", 470.0),
    ("CarPush1", "OfflineCarPush1Gymnasium-v0", "SafetyCarPush1Gymnasium-v0-200-2871.hdf5",
     1000, 0.013700173533941762, 16.304467598905237, 200.0, 88, 2, "CarPush1", 900.0),
    ("CarPush2", "OfflineCarPush2Gymnasium-v0", "SafetyCarPush2Gymnasium-v0-250-4407.hdf5",
     1000, 0.00029391133526335267, 15.141648491514314, 250.0, 88, 2, "CarPush2", 730.0),
    ("SwimmerVelocity", "OfflineSwimmerVelocityGymnasium-v1",
     "SafetySwimmerVelocityGymnasium-v1-200-1686.hdf5",
     1000, 0.07114458084106445, 238.95831298828125, 200.0, 8, 2, "SwimmerVel", 5400.0),
    ("HopperVelocity", "OfflineHopperVelocityGymnasium-v1",
     "SafetyHopperVelocityGymnasium-v1-250-2240.hdf5",
     1000, 37.05154800415039, 1911.396728515625, 250.0, 11, 3, "HopperVel", 3800.0),
    ("HalfCheetahVelocity", "OfflineHalfCheetahVelocityGymnasium-v1",
     "SafetyHalfCheetahVelocityGymnasium-v1-250-2495.hdf5",
     1000, 5.7509765625, 2806.93310546875, 250.0, 17, 6, "HalfCheetahVel", 4900.0),
    ("Walker2dVelocity", "OfflineWalker2dVelocityGymnasium-v1",
     "SafetyWalker2dVelocityGymnasium-v1-300-2729.hdf5",
     1000, 18.668498992919922, 3418.223876953125, 300.0, 17, 6, "Walker2dVel", 4200.0),
    ("AntVelocity", "OfflineAntVelocityGymnasium-v1",
     "SafetyAntVelocityGymnasium-v1-250-2249.hdf5",
     1000, 6.1519012451171875, 2976.276611328125, 250.0, 27, 8, "AntVel", 2700.0),
]

_METADRIVE = [
    ("easysparse", 20.094310760498047, 425.8006286621094, 82.42418670654297, 85, 350.0),
    ("easymean", 22.142553329467773, 425.82440185546875, 82.38601684570312, 85, 340.0),
    ("easydense", 19.71139144897461, 425.81732177734375, 80.36358642578125, 85, 290.0),
    ("mediumsparse", 17.446578979492188, 269.80084228515625, 46.46459197998047, 50, 520.0),
    ("mediummean", 17.032529830932617, 269.8221435546875, 46.46154022216797, 50, 450.0),
    ("mediumdense", 15.102348327636719, 269.7813415527344, 46.45858383178711, 50, 380.0),
    ("hardsparse", 17.247974395751953, 486.80523681640625, 85.010009765625, 85, 490.0),
    ("hardmean", 19.387981414794922, 486.9967956542969, 84.33995056152344, 85, 330.0),
    ("harddense", 15.386894226074219, 486.63616943359375, 84.76679229736328, 85, 300.0),
]


def _build() -> dict[str, TaskSpec]:
    table: dict[str, TaskSpec] = {}
    for name, env_id, file, steps, rmin, rmax, cmax, obs, act, paper, speed in _BULLET:
        table[name] = TaskSpec(name, "bullet", env_id, file, steps, rmin, rmax, cmax, obs, act,
                               paper, speed)
    for name, env_id, file, steps, rmin, rmax, cmax, obs, act, paper, speed in _SAFETYGYM:
        table[name] = TaskSpec(name, "safetygym", env_id, file, steps, rmin, rmax, cmax, obs, act,
                               paper, speed)
    for name, rmin, rmax, cmax, file_cost, speed in _METADRIVE:
        road, density = re.match(r"(easy|medium|hard)(sparse|mean|dense)", name).groups()
        table[name] = TaskSpec(
            name, "metadrive", f"OfflineMetadrive-{name}-v0",
            f"SafeMetaDrive-{name}-v0-{file_cost}-1000.hdf5", 1000, rmin, rmax, cmax, 259, 2,
            f"{road} {density}", speed)
    return table


TASKS: dict[str, TaskSpec] = _build()


class EnvUnavailableError(RuntimeError):
    """The simulator for a task is not installed or not supported here; the message says why."""


class UnknownNameError(ValueError):
    """A task, suite or method name the harness does not know; the message suggests the fix."""


def _key(name: str) -> str:
    # "HalfCheetahVel", "halfcheetah-velocity", "easy sparse", "Easy_Sparse" all fold together
    key = re.sub(r"[\s_\-]", "", name).lower()
    return key[: -len("velocity")] + "vel" if key.endswith("velocity") else key


_ALIASES = {_key(spec.name): spec.name for spec in TASKS.values()}


def get_task(name: str) -> TaskSpec:
    """The TaskSpec for a name in DSRL's spelling, the paper's short form, any case."""
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(name, list(TASKS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(
            f"unknown task {name!r}.{hint} Known tasks: `python -m bench tasks`.")
    return TASKS[canonical]


def task_names(suite: str, prefix: str = "") -> tuple[str, ...]:
    """The names of a suite's tasks (those starting with `prefix`): what a method's per-task
    overrides list, taken from this table rather than typed again."""
    return tuple(spec.name for spec in suite_tasks(suite) if spec.name.startswith(prefix))


def suite_tasks(suite: str) -> list[TaskSpec]:
    """The tasks of a suite, of several ("bullet,metadrive"), or of all three ("all")."""
    names = [name.strip() for name in suite.split(",") if name.strip()]
    if names == ["all"]:
        return list(TASKS.values())
    for name in names or [suite]:
        if name not in SUITES:
            close = difflib.get_close_matches(name, (*SUITES, "all"), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise UnknownNameError(f"unknown suite {name!r}.{hint} Suites: {', '.join(SUITES)} "
                                   "(or all).")
    return [spec for spec in TASKS.values() if spec.suite in names]
