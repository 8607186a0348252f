"""Building the simulator environments of a task (for evaluation and for local collection).

Bullet tasks use DSRL's own registrations (`OfflineBallRun-v0`, ...), so the world, agent,
time limit and cost are exactly DSRL's. Asking for an environment this install cannot
build gives one clear message (EnvUnavailableError).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import gymnasium as gym
import numpy as np

from tasks.registry import TaskSpec


class EnvUnavailableError(RuntimeError):
    """The simulator for a task is not installed or not supported here; the message says why."""


def _import_dsrl() -> None:
    # dsrl registers Bullet first, then tries Safety-Gymnasium and MetaDrive in the same try
    # block; its warning about the optional families is noise for the Bullet suite.
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
            env = gym.make(spec.env_id, max_episode_steps=spec.max_episode_steps,
                           disable_env_checker=True)
    else:
        raise EnvUnavailableError(
            f"{spec.name}: building {spec.suite} environments is not supported by this version "
            "of the harness yet (only the bullet suite is); its official DSRL data still load")
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_vector_env(spec: TaskSpec, num_envs: int) -> gym.vector.VectorEnv:
    """`num_envs` copies of the task's environment stepped together (batched policy inference)."""
    return gym.vector.SyncVectorEnv([lambda: make_env(spec) for _ in range(num_envs)])


def check_spaces(spec: TaskSpec, env: gym.Env) -> None:
    obs_shape = env.observation_space.shape
    act_shape = env.action_space.shape
    if obs_shape != (spec.obs_dim,) or act_shape != (spec.act_dim,):
        raise EnvUnavailableError(
            f"{spec.name}: the installed simulator gives observations {obs_shape} and actions "
            f"{act_shape}, DSRL's data have ({spec.obs_dim},) and ({spec.act_dim},); check the "
            "simulator versions against README")


def action_bounds(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    space = env.single_action_space if hasattr(env, "single_action_space") else env.action_space
    return space.low.astype(np.float32), space.high.astype(np.float32)
