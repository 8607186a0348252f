"""Building the simulator environments of a task (for evaluation and for local collection).

- Bullet and Safety-Gymnasium tasks use DSRL's own registrations (`OfflineBallRun-v0`,
  `OfflineCarGoal1Gymnasium-v0`, `OfflineSwimmerVelocityGymnasium-v1`, ...), so the world,
  agent, time limit and cost are exactly DSRL's. Safety-Gymnasium needs the installed package
  patched for Python 3.11 (tasks/patch_safety_gymnasium.py; setup.sh and tox run it).
- MetaDrive tasks are DSRL's SafeMetaDrive configurations rebuilt for MetaDrive 0.4.3
  (tasks/metadrive_envs.py). MetaDrive allows one engine per process: make_vector_env steps one
  environment in this process, or several in subprocesses (BENCH_METADRIVE_ENVS).

Every environment reports the step cost as `info["cost"]`. Asking for an environment this
install cannot build gives one clear message (EnvUnavailableError).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings

import gymnasium as gym
import numpy as np

from tasks.metadrive_envs import make_metadrive_env
from tasks.registry import EnvUnavailableError, TaskSpec  # noqa: F401 (raised to the callers)


def _import_dsrl() -> None:
    # dsrl registers Bullet first, then Safety-Gymnasium, then MetaDrive, in one try block;
    # its warning about the MetaDrive part (old gym) is noise here
    os.environ.setdefault("DSRL_SUPPRESS_IMPORT_ERROR", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import dsrl  # noqa: F401
        except ImportError as err:
            raise EnvUnavailableError(
                f"the dsrl package is missing ({err}); install the project with "
                "`pip install -e .[bullet]` (see README)") from err


@contextlib.contextmanager
def _real_std_streams():
    """Bullet-Safety-Gym silences PyBullet by flushing the C stream named like sys.stdout
    ("<stdout>"); under a captured or replaced stream (pytest, notebooks) that lookup fails."""
    with contextlib.redirect_stdout(sys.__stdout__), contextlib.redirect_stderr(sys.__stderr__):
        yield


def make_env(spec: TaskSpec, seed: int | None = None) -> gym.Env:
    """One environment of the task, with DSRL's time limit; `info["cost"]` holds the step cost."""
    if spec.suite == "bullet":
        env = _make_bullet(spec)
    elif spec.suite == "safetygym":
        env = _make_safetygym(spec)
    elif spec.suite == "metadrive":
        env = make_metadrive_env(spec.name)
    else:
        raise EnvUnavailableError(f"{spec.name}: no simulator for the suite {spec.suite!r}")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _make_bullet(spec: TaskSpec) -> gym.Env:
    try:
        with _real_std_streams():
            import bullet_safety_gym  # noqa: F401
    except ImportError as err:
        raise EnvUnavailableError(
            f"{spec.name} needs Bullet-Safety-Gym ({err}); install the bullet extra: "
            "`pip install -e .[bullet]` then `pip install --no-deps bullet-safety-gym==1.4.0 "
            "dsrl==0.1.0` (scripts/setup.sh does both)") from err
    _import_dsrl()
    with warnings.catch_warnings(), _real_std_streams():
        warnings.simplefilter("ignore")
        return gym.make(spec.env_id, max_episode_steps=spec.max_episode_steps,
                        disable_env_checker=True)


def _require_safety_gymnasium(spec: TaskSpec) -> None:
    install = ("install the safetygym extra: `pip install -e .[safetygym]`, then `pip install "
               "--no-deps safety-gymnasium==0.4.0 dsrl==0.1.0` and `python -m "
               "tasks.patch_safety_gymnasium` (scripts/setup.sh does all three)")
    try:
        import safety_gymnasium  # noqa: F401
        # the asset dataclasses: what Python 3.11 refuses in the unpatched package
        from safety_gymnasium.assets import free_geoms, geoms, mocaps  # noqa: F401
    except ImportError as err:
        raise EnvUnavailableError(f"{spec.name} needs safety-gymnasium ({err}); {install}") \
            from err
    except ValueError as err:
        if "mutable default" not in str(err):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] == "safety_gymnasium"]:
            del sys.modules[name]  # half-imported; a patched package imports afresh
        raise EnvUnavailableError(
            f"{spec.name}: the installed safety-gymnasium does not import on Python 3.11 "
            f"({err}); run `python -m tasks.patch_safety_gymnasium` once") from err
    _headless_safety_gymnasium()


def _make_safetygym(spec: TaskSpec) -> gym.Env:
    _require_safety_gymnasium(spec)
    _import_dsrl()
    if spec.env_id not in gym.registry:
        # dsrl registers these only after its Bullet part imported
        import dsrl.offline_safety_gymnasium  # noqa: F401
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(spec.env_id, max_episode_steps=spec.max_episode_steps,
                        disable_env_checker=True)


_SKYBOX = re.compile(r'<texture\b[^>]*\btype="skybox"[^>]*?(?:/>|>\s*</texture>)')


class _NoSkyboxMjModel:
    """mujoco.MjModel whose from_xml_string drops the skybox texture before compiling."""

    def __init__(self, real):
        self._real = real

    def from_xml_string(self, xml, *args, **kwargs):
        return self._real.from_xml_string(_SKYBOX.sub("", xml), *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)


class _HeadlessMujoco:
    """The mujoco module as safety_gymnasium.world sees it: all of it but the skybox."""

    def __init__(self, real):
        self._real = real
        self.MjModel = _NoSkyboxMjModel(real.MjModel)

    def __getattr__(self, name):
        return getattr(self._real, name)


def _headless_safety_gymnasium() -> None:
    """Safety-Gymnasium's navigation tasks (Button, Goal, Push) compile their MuJoCo world from
    XML at every reset, and 2.1 of its 2.15 s go to decoding the star_hd skybox PNGs, which only
    a rendered frame shows (observations are lidar and body states). Headless, the harness
    compiles the world without it: the same physics and observations (a test compares), about
    50x faster resets. Nothing renders in this harness."""
    import safety_gymnasium.world as world

    if not isinstance(world.mujoco, _HeadlessMujoco):
        world.mujoco = _HeadlessMujoco(world.mujoco)


def metadrive_envs_per_vector() -> int:
    """MetaDrive environments a vector env steps at once, each in its own subprocess when more
    than one (BENCH_METADRIVE_ENVS, default 1: one environment in this process; a job already
    has a core to itself, so subprocesses pay only where cores are idle)."""
    try:
        return max(1, int(os.environ.get("BENCH_METADRIVE_ENVS", "1")))
    except ValueError:
        raise EnvUnavailableError(
            f"BENCH_METADRIVE_ENVS={os.environ['BENCH_METADRIVE_ENVS']!r} is not a whole number")


def make_vector_env(spec: TaskSpec, num_envs: int) -> gym.vector.VectorEnv:
    """Up to `num_envs` copies of the task's environment stepped together (batched policy
    inference). MetaDrive gives fewer (metadrive_envs_per_vector): evaluate_policy then runs
    its episodes in waves of `envs.num_envs`."""
    if spec.suite == "metadrive":
        width = min(num_envs, metadrive_envs_per_vector())
        if width > 1:
            # one engine per process: each copy in a fresh (spawned) subprocess of its own
            return gym.vector.AsyncVectorEnv([lambda: make_env(spec)] * width,
                                             shared_memory=False, context="spawn")
        return gym.vector.SyncVectorEnv([lambda: make_env(spec)])
    return gym.vector.SyncVectorEnv([lambda: make_env(spec) for _ in range(num_envs)])


def max_envs_in_process(spec: TaskSpec) -> int | None:
    """How many environments of the task one process may hold open at once (None: any)."""
    return 1 if spec.suite == "metadrive" else None


def check_spaces(spec: TaskSpec, env: gym.Env) -> None:
    obs_shape = env.observation_space.shape
    act_shape = env.action_space.shape
    if obs_shape != (spec.obs_dim,) or act_shape != (spec.act_dim,):
        raise EnvUnavailableError(
            f"{spec.name}: the installed simulator gives observations {obs_shape} and actions "
            f"{act_shape}, DSRL's data have ({spec.obs_dim},) and ({spec.act_dim},); check the "
            "simulator versions against README")


def action_bounds(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    # asked of a wrapped single env, hasattr(env, "single_action_space") makes gymnasium warn
    vector = isinstance(env, gym.vector.VectorEnv)
    space = env.single_action_space if vector else env.action_space
    return space.low.astype(np.float32), space.high.astype(np.float32)
