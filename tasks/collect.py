"""Collecting a DSRL-format dataset from the real simulator, with our own PPO-Lagrangian agents.

The official DSRL files were made by training online safe RL agents (TRPO/PPO-Lagrangian) at
several cost limits and keeping every rollout of their training, so the data cover the
reward-cost plane on both sides of the evaluation thresholds. This module does the same in
spirit, on a laptop budget:

- several agents per task, each a compact PPO-Lagrangian (64x64 tanh MLPs, Gaussian policy,
  GAE, separate reward and cost critics, one Lagrange multiplier updated once per epoch from
  the mean episode cost against the agent's own cost limit), plus one unconstrained agent;
- every episode of every agent, from the first (near random) to the last, goes into the file;
- each agent steps a few environments together (batched policy inference);
- the actions stored are the ones the simulator received (clipped to the Box).

Deterministic per seed (network init, action noise and every episode's reset seed derive from
(seed, agent, episode)), resumable (each finished agent is saved to a hidden partial folder
beside the output), and it never writes under an official DSRL file name.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.composition import GridFilter
from tasks.datasets import KEYS, local_path, split_trajectories, write_dsrl_file
from tasks.files import write_atomic, write_text_atomic
from tasks.registry import TASKS, TaskSpec

#: bump when a change to this file changes what a given (task, profile, seed) collects;
#: partial files of another version are not reused
COLLECTOR_VERSION = "1"
COLLECTOR_NAME = "ppo-lagrangian (bench)"

#: collector throughput (env steps/s, PPO updates included, one CPU core) measured per task on
#: the reference 2-core laptop (another job running beside it); speed-scaled budgets use it so
#: every task takes about the same wall time. Random-policy simulator speeds of the Bullet tasks
#: are roughly 6k, 1.7k, 3.4k, 1.9k, 5.4k, 1.2k, 2.5k, 1.3k steps/s in the same order.
TASK_SPEED = {
    "BallRun": 3000.0,
    "CarRun": 1150.0,
    "DroneRun": 1850.0,
    "AntRun": 1300.0,
    "BallCircle": 3050.0,
    "CarCircle": 850.0,
    "DroneCircle": 1500.0,
    "AntCircle": 1050.0,
    # Safety-Gymnasium and MetaDrive: measured on the same machine relative to CarRun (4,000
    # steps per task, a heavier load beside), scaled to CarRun's 1150. Car navigation tasks run
    # about 300-800 random steps/s, the velocity tasks 3k-23k, MetaDrive 200-450 (one env)
    "CarButton1": 400.0,
    "CarButton2": 400.0,
    "CarGoal1": 1150.0,
    "CarGoal2": 470.0,
    "CarPush1": 900.0,
    "CarPush2": 730.0,
    "SwimmerVelocity": 5400.0,
    "HopperVelocity": 3800.0,
    "HalfCheetahVelocity": 4900.0,
    "Walker2dVelocity": 4200.0,
    "AntVelocity": 2700.0,
    "easysparse": 350.0,
    "easymean": 340.0,
    "easydense": 290.0,
    "mediumsparse": 520.0,
    "mediummean": 450.0,
    "mediumdense": 380.0,
    "hardsparse": 490.0,
    "hardmean": 330.0,
    "harddense": 300.0,
}
#: the speed that a speed-scaled `env_steps_per_agent` is written for (steps/s)
REFERENCE_SPEED = 2000.0


@dataclass(frozen=True)
class CollectBudget:
    """How much data a profile collects per task, and the PPO-Lagrangian settings that make it."""

    env_steps_per_agent: int
    """env steps each agent trains for (at REFERENCE_SPEED when speed_scaled; see steps_for)"""
    cost_limits: tuple[float, ...]
    """one agent per entry: its episode cost limit on the Bullet scale (thresholds 10/20/40),
    multiplied by (suite's largest threshold / 40) for other suites; inf = unconstrained"""
    speed_scaled: bool = False
    """scale env_steps_per_agent by TASK_SPEED[task] / REFERENCE_SPEED (same wall time per task)"""
    num_envs: int = 4
    """environments each agent steps together (batched inference)"""
    steps_per_epoch: int = 2000
    """env steps (all envs together) collected between two PPO updates"""
    update_epochs: int = 10
    """passes over one epoch's rollout per PPO update (cut short by target_kl)"""
    minibatch_size: int = 250
    """samples per gradient step"""
    lr: float = 3e-4
    """Adam learning rate of actor and both critics"""
    gamma: float = 0.99
    """discount of rewards and costs"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip_ratio: float = 0.2
    """PPO clip range"""
    target_kl: float = 0.02
    """stop an update's passes early once the approximate KL exceeds this"""
    lagrange_lr: float = 0.05
    """step size of the multiplier: lam <- max(0, lam + lagrange_lr * (mean ep cost - limit))"""
    lagrange_init: float = 0.0
    """initial Lagrange multiplier"""
    init_log_std: float = -0.5
    """initial log standard deviation of the Gaussian policy"""
    hidden: int = 64
    """width of the two hidden tanh layers of every network"""
    anneal_from: float | None = None
    """None: each agent keeps its cost limit all along. A number: the limit starts there and
    rises linearly to the agent's own over `anneal_window`, as DSRL annealed its agents'
    target costs (e.g. CarCircle 5 -> 100 over epochs 100-900 of 1000): an agent that starts
    safe learns the task under a tight limit, then spends its cost as the limit loosens, so one
    agent's episodes cover the cost axis from the bottom up"""
    anneal_window: tuple[float, float] = (0.1, 0.9)
    """the shares of an agent's epochs where the annealed limit starts and stops rising"""
    segment_steps: int = 0
    """train and save each agent in pieces of about this many env steps, so an interrupted
    collection loses at most one piece (0: one piece per agent)"""
    agent_scale: tuple[tuple[str, float], ...] = ()
    """per-task multiplier of env_steps_per_agent, as data: (task, factor) pairs (the ants and
    the circles learn slower, measured in the README)"""
    grid_filter: GridFilter | None = None
    """DSRL's grid filter on the pooled trajectories (None: every episode is kept)"""


COLLECT_PROFILES: dict[str, CollectBudget] = {
    # seconds per task: tiny, for tests (2 agents x a few episodes)
    "smoke": CollectBudget(env_steps_per_agent=400, cost_limits=(10.0, math.inf), num_envs=2,
                           steps_per_epoch=200, update_epochs=2, minibatch_size=100),
    # about 2 minutes per Bullet task on one core of a laptop
    "quick": CollectBudget(env_steps_per_agent=44_000, cost_limits=(5.0, 15.0, 30.0, 60.0,
                                                                    math.inf),
                           speed_scaled=True),
    # DSRL-like data on every Bullet task (cost per task in docs/data/README.md): four agents
    # from scratch whose cost limits rise from 2 to 10, 20 and 40, and one unconstrained, every
    # episode pooled, then DSRL's grid filter in the official file's window. Agents started from
    # an unconstrained expert were tried first: an expert that violates the limit at every step
    # gives flat cost advantages, so its constrained children never learned to slow down
    "study": CollectBudget(env_steps_per_agent=400_000, cost_limits=(10.0, 20.0, 40.0, math.inf),
                           num_envs=8, steps_per_epoch=4000, minibatch_size=500,
                           anneal_from=2.0, segment_steps=200_000,
                           agent_scale=(("CarCircle", 1.25), ("DroneCircle", 2.0),
                                        ("AntRun", 3.0), ("AntCircle", 3.0)),
                           grid_filter=GridFilter()),
    # the real thing, for a cluster
    "paper": CollectBudget(env_steps_per_agent=2_000_000,
                           cost_limits=(5.0, 10.0, 20.0, 30.0, 40.0, 60.0, 80.0, math.inf),
                           num_envs=8, steps_per_epoch=20_000, minibatch_size=1000),
}


class CollectError(RuntimeError):
    """Collection cannot proceed (existing output, official file name, bad profile)."""


def get_budget(profile: str) -> CollectBudget:
    if profile not in COLLECT_PROFILES:
        raise CollectError(f"unknown collect profile {profile!r}; use one of "
                           f"{', '.join(COLLECT_PROFILES)}")
    return COLLECT_PROFILES[profile]


def budget_for(profile: str, spec: TaskSpec) -> CollectBudget:
    """The profile's budget as this task runs it: MetaDrive allows one engine per process, so
    its agents step one environment (the epochs keep their size)."""
    from tasks.envs import max_envs_in_process

    budget = get_budget(profile)
    most = max_envs_in_process(spec)
    if most is not None and budget.num_envs > most:
        budget = dataclasses.replace(budget, num_envs=most)
    return budget


def steps_for(budget: CollectBudget, spec: TaskSpec) -> int:
    """The env-step budget of one agent on this task (a whole number of epochs)."""
    steps = float(budget.env_steps_per_agent) * _task_scale(budget.agent_scale, spec)
    if budget.speed_scaled:
        steps *= TASK_SPEED.get(spec.name, REFERENCE_SPEED) / REFERENCE_SPEED
    epochs = max(1, round(steps / budget.steps_per_epoch))
    return epochs * budget.steps_per_epoch


def agent_cost_limits(budget: CollectBudget, spec: TaskSpec) -> tuple[float, ...]:
    scale = spec.thresholds[-1] / 40.0
    return tuple(float(limit) * scale for limit in budget.cost_limits)


def _derive_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _seed_globals(value: int) -> None:
    # Bullet-Safety-Gym ignores reset(seed=...): its worlds, spawn points and joint noise draw
    # from the global `numpy.random` and `random` generators, so those are what we seed
    np.random.seed(value % 2**32)
    random.seed(value)


@contextmanager
def _global_rng_guard():
    """Leave the caller's global numpy/random generator states as they were."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


# ------------------------------------------------------------------------------------- agent


def _mlp(in_dim: int, out_dim: int, hidden: int, out_gain: float):
    from torch import nn

    layers = [nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
              nn.Linear(hidden, out_dim)]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            gain = out_gain if layer is layers[-1] else math.sqrt(2.0)
            nn.init.orthogonal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class _RunningNorm:
    """Observation normaliser (running mean/var over everything seen, clipped to +-10)."""

    def __init__(self, dim: int):
        self.mean = np.zeros(dim, dtype=np.float64)
        self.var = np.ones(dim, dtype=np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch = batch.astype(np.float64)
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), len(batch)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta ** 2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        out = (obs - self.mean) / np.sqrt(self.var + 1e-8)
        return np.clip(out, -10.0, 10.0).astype(np.float32)


def _gae(rew, val, last_val, done, gamma, lam):
    """GAE over a [T, E] rollout; `done[t]` ends the trajectory after step t (no bootstrap)."""
    steps = len(rew)
    adv = np.zeros_like(rew)
    running = np.zeros(rew.shape[1], dtype=np.float64)
    for t in reversed(range(steps)):
        next_val = last_val if t == steps - 1 else val[t + 1]
        alive = 1.0 - done[t]
        delta = rew[t] + gamma * next_val * alive - val[t]
        running = delta + gamma * lam * alive * running
        adv[t] = running
    return adv, adv + val


def _train_agent(spec: TaskSpec, budget: CollectBudget, steps: int, seed: int, agent: int,
                 cost_limit, bar=None, start: dict | None = None) -> dict[str, np.ndarray]:
    """Train one PPO-Lagrangian agent for `steps` env steps; return all its episodes, flat.

    `cost_limit` is one episode cost limit, or a sequence of one per epoch (an annealed limit).
    `start` is the `state/...` part of an earlier result: the agent continues from there
    (weights, observation statistics, multiplier and Adam's moments); its environments and
    random streams are the new segment's own.
    The returned dict holds the DSRL keys plus `episode_lengths`, per-epoch logs (`log_lambda`,
    `log_ep_cost`, `log_ep_reward`, `log_cost_limit`) and the final state (`state/...`).
    Depends only on (spec, budget, steps, seed, agent, cost_limit, start).
    """
    with _global_rng_guard():
        return _train(spec, budget, steps, seed, agent, cost_limit, bar, start)


def _agent_state(actor, log_std, critic_r, critic_c, norm, lam) -> dict[str, np.ndarray]:
    state = {}
    for name, net in (("actor", actor), ("critic_r", critic_r), ("critic_c", critic_c)):
        for key, value in net.state_dict().items():
            state[f"state/{name}.{key}"] = value.detach().numpy().copy()
    state["state/log_std"] = log_std.detach().numpy().copy()
    state["state/norm_mean"], state["state/norm_var"] = norm.mean.copy(), norm.var.copy()
    state["state/norm_count"] = np.asarray(norm.count)
    state["state/lambda"] = np.asarray(lam)
    return state


def _adam_state(optim) -> dict[str, np.ndarray]:
    """Adam's moments and step counts, so that the next segment continues the same optimizer."""
    out = {}
    for i, param in enumerate(optim.param_groups[0]["params"]):
        for key, value in optim.state.get(param, {}).items():
            out[f"state/adam.{i}.{key}"] = value.detach().numpy().copy()
    return out


def _load_adam_state(optim, state) -> None:
    import torch

    for i, param in enumerate(optim.param_groups[0]["params"]):
        keys = [k for k in state if k.startswith(f"state/adam.{i}.")]
        if keys:
            optim.state[param] = {k.rsplit(".", 1)[1]: torch.as_tensor(np.array(state[k]))
                                  for k in keys}


def _load_agent_state(state, actor, log_std, critic_r, critic_c, norm) -> float:
    import torch

    for name, net in (("actor", actor), ("critic_r", critic_r), ("critic_c", critic_c)):
        net.load_state_dict({key: torch.as_tensor(state[f"state/{name}.{key}"])
                             for key in net.state_dict()})
    with torch.no_grad():
        log_std.copy_(torch.as_tensor(state["state/log_std"]))
    norm.mean = np.array(state["state/norm_mean"], dtype=np.float64)
    norm.var = np.array(state["state/norm_var"], dtype=np.float64)
    norm.count = float(state["state/norm_count"])
    return float(state["state/lambda"])


def _train(spec, budget, steps, seed, agent, cost_limit, bar, start=None):
    import torch

    from tasks.envs import check_spaces, make_env

    rng = np.random.default_rng(_derive_seed(seed, agent, 1))
    num_envs = budget.num_envs
    horizon = budget.steps_per_epoch // num_envs
    envs = []
    for i in range(num_envs):
        _seed_globals(_derive_seed(seed, agent, 4, i))
        envs.append(make_env(spec))
    check_spaces(spec, envs[0])
    low, high = envs[0].action_space.low, envs[0].action_space.high
    obs_dim, act_dim = spec.obs_dim, spec.act_dim

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_derive_seed(seed, agent, 2))
        actor = _mlp(obs_dim, act_dim, budget.hidden, 0.01)
        critic_r = _mlp(obs_dim, 1, budget.hidden, 1.0)
        critic_c = _mlp(obs_dim, 1, budget.hidden, 1.0)
    log_std = torch.nn.Parameter(torch.full((act_dim,), budget.init_log_std))
    params = list(actor.parameters()) + [log_std] + list(critic_r.parameters()) + list(
        critic_c.parameters())
    optim = torch.optim.Adam(params, lr=budget.lr)
    norm = _RunningNorm(obs_dim)
    lam = budget.lagrange_init
    if start is not None:
        lam = _load_agent_state(start, actor, log_std, critic_r, critic_c, norm)
        _load_adam_state(optim, start)
    n_epochs = steps // budget.steps_per_epoch
    limits = np.broadcast_to(np.asarray(cost_limit, dtype=np.float64), (n_epochs,))

    # ---- episode bookkeeping: each env fills its own episode, flushed whole when it ends
    episodes: list[dict[str, np.ndarray]] = []
    n_resets = 0

    def reset(i: int) -> np.ndarray:
        nonlocal n_resets
        episode_seed = _derive_seed(seed, agent, 3, n_resets)
        _seed_globals(episode_seed)
        first, _ = envs[i].reset(seed=episode_seed)
        n_resets += 1
        return np.asarray(first, dtype=np.float32)

    def empty() -> dict[str, list]:
        return {"observations": [], "next_observations": [], "actions": [], "rewards": [],
                "costs": []}

    current = [empty() for _ in range(num_envs)]
    collecting = True  # False once the budget is spent: finished envs are not reset
    obs = np.stack([reset(i) for i in range(num_envs)])
    active = np.ones(num_envs, dtype=bool)
    epoch_returns: list[tuple[float, float]] = []

    def policy(obs_norm: np.ndarray):
        with torch.no_grad():
            x = torch.as_tensor(obs_norm)
            mean = actor(x).numpy()
            v_r = critic_r(x).squeeze(-1).numpy().astype(np.float64)
            v_c = critic_c(x).squeeze(-1).numpy().astype(np.float64)
        return mean, v_r, v_c

    def values(obs_norm: np.ndarray):
        with torch.no_grad():
            x = torch.as_tensor(obs_norm)
            return (critic_r(x).squeeze(-1).numpy().astype(np.float64),
                    critic_c(x).squeeze(-1).numpy().astype(np.float64))

    def step_envs(raw_actions: np.ndarray, which: np.ndarray):
        """Step the envs in `which`; return rewards, costs, done and truncation info."""
        clipped = np.clip(raw_actions, low, high).astype(np.float32)
        rew = np.zeros(num_envs)
        cost = np.zeros(num_envs)
        done = np.zeros(num_envs)
        trunc_obs = {}
        for i in np.nonzero(which)[0]:
            nxt, r, term, trunc, info = envs[i].step(clipped[i])
            nxt = np.asarray(nxt, dtype=np.float32)
            c = float(info.get("cost", 0.0))
            ep = current[i]
            ep["observations"].append(obs[i].copy())
            ep["next_observations"].append(nxt)
            ep["actions"].append(clipped[i])
            ep["rewards"].append(float(r))
            ep["costs"].append(c)
            rew[i], cost[i] = float(r), c
            if term or trunc:
                length = len(ep["rewards"])
                flat = {key: np.asarray(value, dtype=np.float32) for key, value in ep.items()}
                flat["terminals"] = np.zeros(length, dtype=bool)
                flat["timeouts"] = np.zeros(length, dtype=bool)
                if term:
                    flat["terminals"][-1] = True
                else:
                    flat["timeouts"][-1] = True
                    trunc_obs[i] = nxt
                episodes.append(flat)
                epoch_returns.append((float(flat["rewards"].sum()), float(flat["costs"].sum())))
                current[i] = empty()
                done[i] = 1.0
                if collecting:
                    obs[i] = reset(i)
                else:
                    active[i] = False
            else:
                obs[i] = nxt
        if bar is not None:
            bar.update(int(which.sum()))
        return rew, cost, done, trunc_obs

    log_lambda, log_cost, log_reward = [], [], []
    for epoch in range(n_epochs):
        buf_obs = np.zeros((horizon, num_envs, obs_dim), dtype=np.float32)
        buf_raw_obs = np.zeros((horizon, num_envs, obs_dim), dtype=np.float32)
        buf_act = np.zeros((horizon, num_envs, act_dim), dtype=np.float32)
        buf_logp = np.zeros((horizon, num_envs))
        buf_rew = np.zeros((horizon, num_envs))
        buf_cost = np.zeros((horizon, num_envs))
        buf_vr = np.zeros((horizon, num_envs))
        buf_vc = np.zeros((horizon, num_envs))
        buf_done = np.zeros((horizon, num_envs))
        std_vec = torch.exp(log_std).detach().numpy().astype(np.float64)
        epoch_returns.clear()
        for t in range(horizon):
            obs_norm = norm(obs)
            mean, v_r, v_c = policy(obs_norm)
            noise = rng.standard_normal((num_envs, act_dim))
            raw = mean.astype(np.float64) + std_vec * noise
            logp = (-0.5 * noise ** 2 - np.log(std_vec) - 0.5 * math.log(2 * math.pi)).sum(-1)
            buf_obs[t], buf_raw_obs[t], buf_act[t] = obs_norm, obs, raw
            buf_logp[t], buf_vr[t], buf_vc[t] = logp, v_r, v_c
            rew, cost, done, trunc_obs = step_envs(raw, active)
            if trunc_obs:  # time limit: bootstrap from the value of the final observation
                idx = sorted(trunc_obs)
                boot_r, boot_c = values(norm(np.stack([trunc_obs[i] for i in idx])))
                rew[idx] += budget.gamma * boot_r
                cost[idx] += budget.gamma * boot_c
            buf_rew[t], buf_cost[t], buf_done[t] = rew, cost, done
        last_r, last_c = values(norm(obs))
        adv_r, ret_r = _gae(buf_rew, buf_vr, last_r, buf_done, budget.gamma, budget.gae_lambda)
        adv_c, ret_c = _gae(buf_cost, buf_vc, last_c, buf_done, budget.gamma, budget.gae_lambda)

        # ---- Lagrange multiplier from this epoch's finished episodes
        if epoch_returns:
            ep_cost = float(np.mean([c for _, c in epoch_returns]))
            ep_rew = float(np.mean([r for r, _ in epoch_returns]))
            if math.isfinite(limits[epoch]):
                lam = max(0.0, lam + budget.lagrange_lr * (ep_cost - limits[epoch]))
        else:
            ep_cost = ep_rew = float("nan")
        log_lambda.append(lam)
        log_cost.append(ep_cost)
        log_reward.append(ep_rew)

        # ---- PPO update
        adv = (adv_r - lam * adv_c) / (1.0 + lam)
        size = horizon * num_envs
        adv = adv.reshape(size)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        t_obs = torch.as_tensor(buf_obs.reshape(size, obs_dim))
        t_act = torch.as_tensor(buf_act.reshape(size, act_dim))
        t_logp = torch.as_tensor(buf_logp.reshape(size), dtype=torch.float32)
        t_adv = torch.as_tensor(adv, dtype=torch.float32)
        t_ret_r = torch.as_tensor(ret_r.reshape(size), dtype=torch.float32)
        t_ret_c = torch.as_tensor(ret_c.reshape(size), dtype=torch.float32)
        for _ in range(budget.update_epochs):
            order = rng.permutation(size)
            kls = []
            for start in range(0, size, budget.minibatch_size):
                mb = torch.as_tensor(order[start:start + budget.minibatch_size])
                x = t_obs[mb]
                mean = actor(x)
                dist = torch.distributions.Normal(mean, torch.exp(log_std))
                logp = dist.log_prob(t_act[mb]).sum(-1)
                log_ratio = logp - t_logp[mb]
                ratio = torch.exp(log_ratio)
                a = t_adv[mb]
                pi_loss = -torch.min(ratio * a, torch.clamp(ratio, 1 - budget.clip_ratio,
                                                            1 + budget.clip_ratio) * a).mean()
                v_loss = ((critic_r(x).squeeze(-1) - t_ret_r[mb]) ** 2).mean() + (
                    (critic_c(x).squeeze(-1) - t_ret_c[mb]) ** 2).mean()
                optim.zero_grad()
                (pi_loss + 0.5 * v_loss).backward()
                torch.nn.utils.clip_grad_norm_(params, 0.5)
                optim.step()
                with torch.no_grad():
                    kls.append(float(((ratio - 1) - log_ratio).mean()))
            if np.mean(kls) > budget.target_kl:
                break
        norm.update(buf_raw_obs.reshape(size, obs_dim))

    # ---- budget spent: finish the episodes in progress (no more resets, no more training)
    collecting = False
    for i in range(num_envs):  # an episode that has not started yet is not begun
        active[i] = len(current[i]["rewards"]) > 0
    while active.any():
        mean, _, _ = policy(norm(obs))
        std_vec = torch.exp(log_std).detach().numpy().astype(np.float64)
        raw = mean.astype(np.float64) + std_vec * rng.standard_normal((num_envs, act_dim))
        step_envs(raw, active.copy())
    for env in envs:
        env.close()

    out = {key: np.concatenate([ep[key] for ep in episodes]) for key in KEYS}
    out["episode_lengths"] = np.asarray([len(ep["rewards"]) for ep in episodes], dtype=np.int64)
    out["log_lambda"] = np.asarray(log_lambda)
    out["log_ep_cost"] = np.asarray(log_cost)
    out["log_ep_reward"] = np.asarray(log_reward)
    out["log_cost_limit"] = np.asarray(limits)
    out.update(_agent_state(actor, log_std, critic_r, critic_c, norm, lam))
    out.update(_adam_state(optim))
    return out


# ---------------------------------------------------------------------------- collect_task


def _fingerprint(spec: TaskSpec, profile: str, budget: CollectBudget, seed: int, agent: int,
                 limit: float, steps: int) -> str:
    return json.dumps({"collector": COLLECTOR_VERSION, "task": spec.name, "profile": profile,
                       "seed": seed, "agent": agent, "cost_limit": repr(limit), "steps": steps,
                       "budget": {k: repr(v) for k, v in dataclasses.asdict(budget).items()}},
                      sort_keys=True)


def _load_partial(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            return {key: data[key] for key in data.files if key != "fingerprint"}
    except (OSError, ValueError, KeyError):
        return None  # a torn or foreign file: recompute that agent


def _save_partial(path: Path, arrays: dict[str, np.ndarray], fingerprint: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append .npz to a name
            np.savez(handle, fingerprint=np.asarray(fingerprint), **arrays)

    write_atomic(path, write)


def partial_dir(out_path: Path, seed: int) -> Path:
    """The hidden folder holding finished agents of an interrupted collection."""
    out_path = Path(out_path)
    return out_path.parent / ".partial" / f"{out_path.stem}-seed{seed}"


def _versions() -> str:
    from importlib import metadata

    found = {}
    for package in ("torch", "gymnasium", "pybullet", "bullet-safety-gym", "dsrl", "numpy",
                    "safety-gymnasium", "mujoco", "metadrive-simulator"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    try:  # the harness's own version, from its package metadata (tasks imports nothing of ours)
        found["bench"] = metadata.version("lspc-bench")
    except metadata.PackageNotFoundError:
        found["bench"] = "unknown"
    found["collector"] = COLLECTOR_VERSION
    return json.dumps(found, sort_keys=True)


@dataclass(frozen=True)
class Stage:
    """One resumable piece of a collection: an agent trained `steps` env steps, from scratch or
    continuing from the final state of `parent`."""

    name: str
    agent: int  # seeds its networks, noise and resets (see _train)
    steps: int
    cost_limits: tuple[float, ...]  # one per epoch
    parent: str | None
    lineage: str  # the agent it belongs to, for the card ("limit 10", "unconstrained")


def plan_stages(budget: CollectBudget, spec: TaskSpec) -> list[Stage]:
    """The stages of one collection, in the order they run (a segment before the next).

    One agent per cost limit, each from scratch; with `segment_steps` an agent trains in
    segments, each continuing from the state its predecessor saved. With `anneal_from` its
    limit rises from there to its own over `anneal_window` of its epochs (DSRL's schedule).
    """
    limits = agent_cost_limits(budget, spec)
    steps = steps_for(budget, spec)
    epoch = budget.steps_per_epoch
    n_epochs = steps // epoch
    if budget.segment_steps <= 0 and budget.anneal_from is None:  # the quick profile
        return [Stage(f"agent{a}", a, steps, (limit,) * n_epochs, None,
                      _lineage_name(limit)) for a, limit in enumerate(limits)]
    stages = []
    for a, limit in enumerate(limits):
        schedule = _schedule(budget, limit, n_epochs, spec.thresholds[-1] / 40.0)
        parent, done = None, 0
        for j, seg in enumerate(_segments(steps, budget.segment_steps, epoch)):
            name = f"agent{a}-seg{j}"
            count = seg // epoch
            stages.append(Stage(name, a * 1000 + j, seg, tuple(schedule[done:done + count]),
                                parent, _lineage_name(limit)))
            parent, done = name, done + count
    # round robin over the agents, segment by segment: every agent's progress shows early (a
    # task its unconstrained agent cannot learn is seen in the first hour, not the last). Each
    # stage depends on its parent's saved state only, so the order changes no data
    segment_of = {stage.name: int(stage.name.rsplit("seg", 1)[1]) for stage in stages}
    return sorted(stages, key=lambda stage: (segment_of[stage.name], stage.agent // 1000))


def _schedule(budget: CollectBudget, limit: float, n_epochs: int, scale: float) -> list[float]:
    """The agent's cost limit in each epoch: flat at anneal_from (times the suite's scale, as the
    limits), a linear rise, flat at its own limit. An unconstrained agent stays unconstrained."""
    if budget.anneal_from is None or not math.isfinite(limit):
        return [limit] * n_epochs
    first, last = (round(share * n_epochs) for share in budget.anneal_window)
    low = min(limit, budget.anneal_from * scale)
    out = []
    for e in range(n_epochs):
        if e < first:
            out.append(low)
        elif e >= last:
            out.append(limit)
        else:
            out.append(low + (limit - low) * (e - first + 1) / max(1, last - first))
    return out


def _lineage_name(limit: float) -> str:
    return "unconstrained" if not math.isfinite(limit) else f"limit {limit:g}"


def _whole_epochs(steps: float, epoch: int) -> int:
    return max(1, round(steps / epoch)) * epoch


def _segments(steps: int, segment: int, epoch: int) -> list[int]:
    """Split `steps` into pieces of about `segment` steps, each a whole number of epochs."""
    if segment <= 0 or steps <= segment:
        return [steps]
    epochs = steps // epoch
    pieces = max(1, round(epochs / max(1, segment // epoch)))
    sizes = [epochs // pieces + (1 if i < epochs % pieces else 0) for i in range(pieces)]
    return [size * epoch for size in sizes]


def _task_scale(table: tuple[tuple[str, float], ...], spec: TaskSpec) -> float:
    return dict(table).get(spec.name, 1.0)


def official_cost_max(spec: TaskSpec) -> float:
    from tasks.composition import official_numbers

    return float(official_numbers(spec)["cost_max"])


def _stage_fingerprint(spec: TaskSpec, profile: str, budget: CollectBudget, seed: int,
                       stage: Stage, parent_fingerprint: str | None) -> str:
    return json.dumps({"collector": COLLECTOR_VERSION, "task": spec.name, "profile": profile,
                       "seed": seed, "stage": dataclasses.asdict(stage),
                       "parent": parent_fingerprint,
                       "budget": {k: repr(v) for k, v in dataclasses.asdict(budget).items()}},
                      sort_keys=True, default=repr)


def _episode_returns(data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    ends = np.cumsum(data["episode_lengths"])
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    rew = np.add.reduceat(data["rewards"].astype(np.float64), starts) if len(starts) else []
    cost = np.add.reduceat(data["costs"].astype(np.float64), starts) if len(starts) else []
    return np.asarray(rew), np.asarray(cost)


def _keep_episodes(data: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """The stage's data restricted to the episodes in `keep` (a boolean per episode)."""
    lengths = data["episode_lengths"]
    mask = np.repeat(keep, lengths)
    out = {key: value for key, value in data.items() if key not in KEYS}
    out.update({key: data[key][mask] for key in KEYS})
    out["episode_lengths"] = lengths[keep]
    return out


def _run_stages(spec, profile, budget, seed, stages, partial, bar, say=None):
    """Train every stage not saved yet; return each stage's saved arrays and which resumed.
    `say` (when given) gets one line per stage: how far the collection is, without a bar."""
    from tasks.composition import in_window, window_of

    window = window_of(spec, budget.grid_filter) if budget.grid_filter else None
    done: dict[str, dict] = {}
    prints: dict[str, str] = {}
    resumed = []
    for stage in stages:
        fingerprint = _stage_fingerprint(spec, profile, budget, seed, stage,
                                         prints.get(stage.parent))
        prints[stage.name] = fingerprint
        file = partial / f"{stage.name}.npz"
        data = _load_partial(file, fingerprint)
        if data is None:
            start = None
            if stage.parent is not None:
                start = {k: v for k, v in done[stage.parent].items() if k.startswith("state/")}
            start_n = bar.n
            began, began_cpu = time.perf_counter(), time.process_time()
            data = _train_agent(spec, budget, stage.steps, seed, stage.agent,
                                stage.cost_limits if len(set(stage.cost_limits)) > 1
                                else stage.cost_limits[0], bar=bar, start=start)
            # core time is the process's CPU time (one torch thread, the simulator in process):
            # what the stage costs, whatever else shared the machine; wall time beside it
            data["seconds"] = np.asarray(time.perf_counter() - began)
            data["cpu_seconds"] = np.asarray(time.process_time() - began_cpu)
            bar.update(max(0, start_n + stage.steps - bar.n))  # the tail steps overshoot
            rewards, costs = _episode_returns(data)
            data["episode_reward_returns"], data["episode_cost_returns"] = rewards, costs
            if window is not None:
                # episodes that can never be kept are not stored (an ant's pool is gigabytes)
                data = _keep_episodes(data, in_window(costs, rewards, window))
            _save_partial(file, data, fingerprint)
        else:
            resumed.append(stage.name)
            bar.update(stage.steps)
        done[stage.name] = data
        if say is not None:
            rewards = data["episode_reward_returns"]
            costs = data["episode_cost_returns"]
            tail = max(1, len(rewards) // 10)
            share = sum(s.steps for s in stages if s.name in done) / sum(s.steps for s in stages)
            how = "resumed" if stage.name in resumed else "trained"
            say(f"{spec.name} ({profile}): {stage.name} {how} ({len(done)}/{len(stages)} "
                f"stages, {share:.0%} of the steps); "
                f"its last episodes: reward {rewards[-tail:].mean():.0f}, cost "
                f"{costs[-tail:].mean():.1f}, limit {stage.cost_limits[-1]:g}")
    return done, resumed


def _harness_commit() -> str | None:
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha or None


def collect_task(spec: TaskSpec, profile: str = "quick", seed: int = 0, out_path=None,
                 progress: bool = True, force: bool = False) -> dict:
    """Collect the task's dataset with PPO-Lagrangian agents; write it, plot it, summarise it.

    Returns the summary dict (also what gets printed, see format_summary); the dataset card
    (how the file was made) is in the file's attribute `card` and in `<file>.card.json`.
    """
    import torch

    from tasks.composition import apply_grid_filter, summarize

    budget = budget_for(profile, spec)
    out_path = Path(out_path) if out_path is not None else local_path(spec, profile)
    official_names = {task.dataset_file for task in TASKS.values()}
    if out_path.name in official_names:
        raise CollectError(
            f"{out_path}: {out_path.name} is the name of an official DSRL file; locally "
            "collected data must not pose as official data, choose another name")
    if out_path.exists() and not force:
        raise CollectError(
            f"{out_path} already exists; pass --force (force=True) to collect again and "
            "overwrite it")

    stages = plan_stages(budget, spec)
    partial = partial_dir(out_path, seed)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bar = None
    try:
        from tqdm import tqdm

        bar = tqdm(total=sum(stage.steps for stage in stages), unit="step",
                   disable=not progress, desc=f"collect {spec.name} ({profile})",
                   dynamic_ncols=True)
        say = None if progress else (lambda line: print(line, flush=True))
        done, resumed = _run_stages(spec, profile, budget, seed, stages, partial, bar, say)
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()

    results = [done[stage.name] for stage in stages]
    arrays = {key: np.concatenate([r[key] for r in results]) for key in KEYS}
    stage_of = np.repeat(np.arange(len(stages)), [len(r["episode_lengths"]) for r in results])
    if len(stage_of) == 0:
        raise CollectError(
            f"{spec.name}: none of the collected episodes lies inside DSRL's reward-cost window "
            f"(cost 0..{official_cost_max(spec):g}, reward >= {spec.reward_min:.0f}); the agents "
            "did not learn the task: give it more steps (agent_scale of the profile)")
    trajs = split_trajectories(arrays)
    filter_report = None
    if budget.grid_filter is not None:
        rng = np.random.default_rng(_derive_seed(seed, 7, 7))
        kept, filter_report = apply_grid_filter(spec, trajs.cost_returns, trajs.reward_returns,
                                                budget.grid_filter, rng)
        if len(kept) == 0:
            raise CollectError(
                f"{spec.name}: the grid filter kept none of the {len(trajs)} trajectories in "
                "DSRL's window (every bin too sparse); collect more (agent_scale)")
        mask = trajs.mask(np.isin(np.arange(len(trajs)), kept), len(arrays["rewards"]))
        arrays = {key: value[mask] for key, value in arrays.items()}
        stage_of = stage_of[kept]
        trajs = split_trajectories(arrays)

    limits = agent_cost_limits(budget, spec)
    card = {
        "source": "local",
        "collector": COLLECTOR_NAME,
        "collector_version": COLLECTOR_VERSION,
        "task": spec.name,
        "env_id": spec.env_id,
        "profile": profile,
        "seed": int(seed),
        "harness_commit": _harness_commit(),
        "versions": json.loads(_versions()),
        "budget": {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in _plain_budget(budget).items()},
        "cost_limits": [_json_float(v) for v in limits],
        "filter": filter_report,
        "agents": _agent_cards(stages, done, stage_of),
    }
    # what differs between two identical runs stays out of the file, so that its sha256 names
    # the data: timings and the date are in the card beside it only
    timing = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "core_seconds": _stage_seconds(stages, done, None, "cpu_seconds"),
        "wall_seconds": _stage_seconds(stages, done, None, "seconds"),
        "agents": {agent: _stage_seconds(stages, done, agent, "cpu_seconds")
                   for agent in dict.fromkeys(stage.lineage for stage in stages)},
        "resumed_stages": resumed,
    }
    attrs = {
        "source": "local",
        "collector": COLLECTOR_NAME,
        "task": spec.name,
        "env_id": spec.env_id,
        "profile": profile,
        "seed": int(seed),
        "cost_limits": np.asarray(limits, dtype=np.float64),
        "env_steps_per_agent": int(steps_for(budget, spec)),
        "n_agents": len(limits),
        "agent_episodes": np.asarray([int((stage_of == i).sum()) for i in range(len(stages))]),
        "versions": _versions(),
        "budget": json.dumps({k: repr(v) for k, v in dataclasses.asdict(budget).items()}),
        "card": json.dumps(card, sort_keys=True),
    }
    write_dsrl_file(out_path, arrays, attrs)
    card_path = card_path_for(out_path)
    write_text_atomic(card_path, json.dumps({**card, "timing": timing}, indent=1,
                                            sort_keys=True) + "\n")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.parent.rmdir()  # the .partial folder itself, when nothing else is pending
    except OSError:
        pass

    lineages = list(dict.fromkeys(stage.lineage for stage in stages))
    lineage_of = np.asarray([lineages.index(stages[i].lineage) for i in stage_of], dtype=int)
    plot = _plot(spec, profile, out_path, trajs.reward_returns, trajs.cost_returns,
                 {name: lineage_of == i for i, name in enumerate(lineages)})
    from tasks.datasets import file_sha256

    row = summarize(spec, trajs.reward_returns, trajs.cost_returns)
    return {
        "task": spec.name,
        "profile": profile,
        "seed": int(seed),
        "path": str(out_path),
        "card": str(card_path),
        "sha256": file_sha256(out_path),
        "plot": str(plot),
        "n_trajectories": len(trajs),
        "n_transitions": int(len(arrays["rewards"])),
        "reward_return_min": float(trajs.reward_returns.min()),
        "reward_return_max": float(trajs.reward_returns.max()),
        "cost_return_min": float(trajs.cost_returns.min()),
        "cost_return_max": float(trajs.cost_returns.max()),
        "fraction_cost_le": {float(th): float(np.mean(trajs.cost_returns <= th))
                             for th in spec.thresholds},
        "cost_limits": list(limits),
        "env_steps_per_agent": int(steps_for(budget, spec)),
        "agents": card["agents"],
        "filter": filter_report,
        "resumed_stages": resumed,
        "row": row,
        "core_seconds": timing["core_seconds"],
        "agent_core_seconds": timing["agents"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def card_path_for(path: Path) -> Path:
    """Where the dataset card of a local file lies: `<file>.card.json` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".card.json")


def _json_float(value: float):
    return value if math.isfinite(value) else repr(value)


def _plain_budget(budget: CollectBudget) -> dict:
    out = {}
    for key, value in dataclasses.asdict(budget).items():
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else _json_float(v)
                     if isinstance(v, float) else v for v in value]
        out[key] = value
    return out


def _stage_seconds(stages, done, lineage: str | None, key: str) -> float:
    """Seconds (`cpu_seconds` or wall `seconds`) of one agent's stages, or of all (None)."""
    return round(float(sum(float(done[s.name].get(key, 0.0)) for s in stages
                           if lineage is None or s.lineage == lineage)), 1)


def _agent_cards(stages, done, stage_of) -> list[dict]:
    """Per agent (lineage): its cost limit, steps, core time, episodes trained and kept, the
    reward and cost of its last tenth of episodes, and its final multiplier."""
    cards = []
    for lineage in dict.fromkeys(stage.lineage for stage in stages):
        mine = [stage for stage in stages if stage.lineage == lineage]
        rewards = np.concatenate([done[s.name]["episode_reward_returns"] for s in mine])
        costs = np.concatenate([done[s.name]["episode_cost_returns"] for s in mine])
        tail = max(1, len(rewards) // 10)
        kept = sum(int((stage_of == stages.index(s)).sum()) for s in mine)
        last = done[mine[-1].name]
        cards.append({
            "agent": lineage,
            "env_steps": int(sum(s.steps for s in mine)),
            "episodes": int(len(rewards)),
            "episodes_kept": kept,
            "last10pct_reward": float(rewards[-tail:].mean()) if len(rewards) else None,
            "last10pct_cost": float(costs[-tail:].mean()) if len(costs) else None,
            "final_lambda": float(last["state/lambda"]) if "state/lambda" in last else None,
            "final_cost_limit": _json_float(float(mine[-1].cost_limits[-1])),
        })
    return cards


def _plot(spec: TaskSpec, profile: str, out_path: Path, rewards: np.ndarray, costs: np.ndarray,
          groups: dict[str, np.ndarray]) -> Path:
    """Reward return vs cost return per trajectory (as DSRL's Fig. 10), beside the data file."""
    from tasks.figures import plot_returns

    title = f"{spec.name}: locally collected ({profile}, {len(rewards)} trajectories)"
    return plot_returns(spec, rewards, costs, title, out_path.with_suffix(".png"), groups)


def format_summary(summary: dict) -> str:
    """Human-readable lines for the CLI."""
    fractions = ", ".join(f"<= {th:g}: {frac:.0%}"
                          for th, frac in summary["fraction_cost_le"].items())
    lines = [
        f"{summary['task']} ({summary['profile']}, seed {summary['seed']}): "
        f"{summary['n_trajectories']} trajectories, {summary['n_transitions']} transitions "
        f"in {summary['seconds']:.0f}s ({summary['core_seconds'] / 3600:.2f} core-hours of "
        "training, resumed segments included)",
        f"  file: {summary['path']}",
        f"  plot: {summary['plot']}",
        f"  reward return: {summary['reward_return_min']:.1f} .. "
        f"{summary['reward_return_max']:.1f}",
        f"  cost return:   {summary['cost_return_min']:.1f} .. {summary['cost_return_max']:.1f}",
        f"  trajectories with cost {fractions}",
    ]
    for agent in summary.get("agents", []):
        lines.append(
            f"  {agent['agent']}: {agent['episodes']} episodes ({agent['episodes_kept']} kept), "
            f"last 10%: reward {agent['last10pct_reward']:.1f}, cost "
            f"{agent['last10pct_cost']:.1f}, lambda {agent['final_lambda']:.2f}, "
            f"{summary['agent_core_seconds'][agent['agent']] / 60:.1f} core-min")
    if summary.get("filter"):
        f = summary["filter"]
        lines.append(f"  grid filter: {f['pool']} pooled, {f['in_window']} in DSRL's window, "
                     f"{f['kept']} kept (at most {f['max_per_bin']} per bin)")
    if summary.get("resumed_stages"):
        lines.append(f"  resumed: {', '.join(summary['resumed_stages'])}")
    lines.append(f"  sha256: {summary['sha256']}")
    return "\n".join(lines)
