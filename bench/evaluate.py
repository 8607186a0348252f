"""Evaluation: run a policy for N episodes in vectorized environments, batched inference."""

from __future__ import annotations

import numpy as np

from tasks.envs import make_vector_env
from tasks.registry import TaskSpec


def evaluate_policy(act, spec: TaskSpec, episodes: int, seed: int, reset=None,
                    envs=None, threshold: float | None = None, observe=None) -> dict:
    """Per-episode raw reward and cost returns of `act` over `episodes` seeded episodes.

    Episode i is seeded with `seed + i`. The sub-environments of `envs` run one episode each,
    all stepped together; with fewer sub-environments than episodes (MetaDrive: one engine per
    process) the episodes run in waves of `envs.num_envs`. Only a sub-environment's first
    episode of a wave counts (gymnasium vector envs reset a finished copy automatically).
    Pass `envs` (from make_vector_env) to reuse simulators across calls; Bullet's Car and
    Drone worlds keep state through reset(seed), so reused ones make episodes depend on
    the calls before (the records and curves build new ones for each evaluation).
    `reset(num_envs, threshold)` starts each wave (a prompted method, CDT, takes the threshold
    as its target cost); `observe(rewards, costs, dones)` follows every step with the step's raw
    rewards and costs and terminated | truncated, one entry per sub-environment.
    """
    owned = envs is None
    envs = make_vector_env(spec, episodes) if owned else envs
    reward_returns = np.zeros(episodes)
    cost_returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=int)
    try:
        for start in range(0, episodes, envs.num_envs):
            wave = slice(start, min(episodes, start + envs.num_envs))
            rewards, costs, steps = _run_wave(act, spec, envs, seed + start,
                                              wave.stop - wave.start, reset, threshold, observe)
            reward_returns[wave], cost_returns[wave], lengths[wave] = rewards, costs, steps
    finally:
        if owned:
            envs.close()
    return {"reward_returns": reward_returns.tolist(), "cost_returns": cost_returns.tolist(),
            "lengths": lengths.tolist()}


def _run_wave(act, spec, envs, seed, counted, reset, threshold, observe):
    """One episode per sub-environment (seeds seed, seed + 1, ...); the first `counted` count."""
    width = envs.num_envs
    obs, _ = envs.reset(seed=[seed + i for i in range(width)])
    if reset is not None:
        reset(width, threshold)
    reward_returns = np.zeros(width)
    cost_returns = np.zeros(width)
    lengths = np.zeros(width, dtype=int)
    running = np.arange(width) < counted
    low, high = envs.single_action_space.low, envs.single_action_space.high
    while running.any():
        actions = np.asarray(act(obs.astype(np.float32)), dtype=np.float32)
        if actions.shape != (width, spec.act_dim) or not np.isfinite(actions).all():
            raise ValueError(f"policy returned actions of shape {actions.shape} "
                             f"(finite: {np.isfinite(actions).all()}), expected "
                             f"({width}, {spec.act_dim})")
        obs, rewards, terminated, truncated, infos = envs.step(np.clip(actions, low, high))
        costs = step_costs(infos, width)
        if observe is not None:
            observe(np.asarray(rewards, np.float64), costs, terminated | truncated)
        reward_returns += np.where(running, rewards, 0.0)
        cost_returns += np.where(running, costs, 0.0)
        lengths += running
        running &= ~(terminated | truncated)
    return reward_returns[:counted], cost_returns[:counted], lengths[:counted]


def step_costs(infos: dict, num_envs: int) -> np.ndarray:
    """The step cost of every sub-environment from a vector env's merged infos.

    A sub-environment that just finished was reset inside step(), so its cost sits in
    infos["final_info"][i], not in infos["cost"].
    """
    costs = np.zeros(num_envs)
    if "cost" in infos:
        costs = np.where(infos.get("_cost", True), infos["cost"], 0.0).astype(np.float64)
    for i, final in enumerate(infos.get("final_info", [None] * num_envs)):
        if final is not None and infos.get("_final_info", np.ones(num_envs, bool))[i]:
            costs[i] = float(final.get("cost", 0.0))
    return costs
