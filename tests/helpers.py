"""What several test modules share: small fake data of a real task's shape, a method built
for it, real rollouts, the harness run in-process or as a subprocess, records to compare.
Fixtures are in conftest.py; these are plain functions and constants."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from algorithms import build_config, get_method
from bench.cli import main
from bench.records import comparable_records
from tasks.registry import get_task

ROOT = Path(__file__).resolve().parents[1]

SPEC = get_task("DroneRun")  # observations 17, actions 4


def fake_arrays(n=600, episode=50, seed=0):
    rng = np.random.default_rng(seed)
    costs = np.zeros(n, np.float32)
    # episode i has cost return i (0..11): some trajectories safe at every threshold
    for i in range(n // episode):
        costs[i * episode: i * episode + i] = 1.0
    timeouts = np.zeros(n, np.float32)
    timeouts[episode - 1::episode] = 1
    obs = rng.normal(size=(n, SPEC.obs_dim)).astype(np.float32)
    return {"observations": obs, "next_observations": np.roll(obs, -1, 0),
            "actions": np.tanh(obs[:, :SPEC.act_dim]).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32), "costs": costs,
            "terminals": np.zeros(n, np.float32), "timeouts": timeouts}


def build(name, threshold=10.0, seed=0, device="cpu"):
    _, cls = get_method(name)
    config = dataclasses.replace(build_config(cls, SPEC.name), batch_size=32)
    return cls(SPEC, config, None if cls.threshold_agnostic else threshold, seed, device)


def rollout_arrays(spec, episodes: int, seed: int = 0) -> dict:
    """DSRL-layout arrays from real simulator rollouts of a noisy forward-biased policy."""
    from tasks.envs import make_env

    env = make_env(spec)
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "costs",
                           "terminals", "timeouts")}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        bias, scale = rng.uniform(-0.5, 1.0), rng.uniform(0.1, 1.0)
        done = False
        while not done:
            action = np.clip(rng.normal(bias, scale, spec.act_dim), -1, 1).astype(np.float32)
            next_obs, reward, term, trunc, info = env.step(action)
            for key, value in zip(out, (obs, next_obs, action, reward, info["cost"], term, trunc)):
                out[key].append(value)
            obs, done = next_obs, term or trunc
    env.close()
    return {k: np.asarray(v) for k, v in out.items()}


def bench(*args, **popen):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


records = comparable_records  # by path, clocks and worker aside


def wait_for_step(results: Path, at_least: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in results.rglob("progress.json"):
            try:
                if json.loads(path.read_text())["checkpoint_step"] >= at_least:
                    return
            except (ValueError, KeyError, OSError):
                pass
        if proc.poll() is not None:
            pytest.fail(f"bench run ended before step {at_least}:\n{proc.stdout.read()}")
        time.sleep(0.05)
    pytest.fail(f"no checkpoint at step {at_least} within {timeout} s")


RUN = ["run", "--tasks", "BallRun", "--methods", "LSPC", "--profile", "smoke", "--steps", "60",
       "--checkpoint-every", "10", "--jobs", "1", "--quiet"]


def run(results, *extra):
    """`bench run` in this process: BallRun, the smoke profile, one job at a time, quiet."""
    return main(["run", "--tasks", "BallRun", "--profile", "smoke", "--results", str(results),
                 "--jobs", "1", "--quiet", *extra])


def load_script(name: str):
    """A script of scripts/ as a module, for its functions and its main()."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
