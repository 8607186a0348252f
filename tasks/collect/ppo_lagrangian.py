"""PPO-Lagrangian: the agent whose every episode goes into a collected dataset.

One agent is a Gaussian policy and two critics (reward and cost), each a 64x64 tanh MLP, and
one Lagrange multiplier. An epoch goes:

1. `Rollout.collect_epoch`: the agent steps its environments together for `steps_per_epoch`
   env steps; every finished episode is kept whole for the dataset;
2. `gae`: reward and cost advantages and returns;
3. `update_multiplier`: the multiplier moves by the epoch's mean episode cost against the
   agent's cost limit (projected onto lam >= 0);
4. `lagrangian_advantages`: the policy's advantage is (A_r - lam A_c) / (1 + lam), normalised
   over the epoch;
5. `ppo_update`: a few passes of minibatch gradient steps on `ppo_lagrangian_loss` (clipped
   surrogate plus both critics' squared errors), cut short by the approximate KL.

The pure pieces (gae, update_multiplier, lagrangian_advantages, ppo_lagrangian_loss) hold all
of the arithmetic; `Rollout` and `train_agent` only move data between them. Every random draw
comes from one generator per agent, in a fixed order (action noise, then minibatch order), so
an agent's episodes depend only on its arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tasks.collect.budgets import CollectBudget
from tasks.collect.seeding import derive_seed, global_rng_guard, seed_globals
from tasks.datasets import KEYS
from tasks.registry import TaskSpec

# ------------------------------------------------------------------------ the pure arithmetic


def gae(rew: np.ndarray, val: np.ndarray, last_val: np.ndarray, done: np.ndarray, gamma: float,
        lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns of a [T, E] rollout.

    `val[t]` is the critic's value of the observation at step t, `last_val` that of the
    observation after the last step; `done[t]` = 1 ends the trajectory after step t, so that
    nothing after it is bootstrapped. Returns (advantages, advantages + values).
    """
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


def update_multiplier(lam: float, mean_episode_cost: float, cost_limit: float,
                      lr: float) -> float:
    """One gradient-ascent step of the Lagrange multiplier, projected onto lam >= 0.

    The multiplier grows while episodes cost more than the limit and shrinks (to 0 at least)
    while they cost less. An infinite limit (the unconstrained agent) leaves it unchanged.
    """
    if not math.isfinite(cost_limit):
        return lam
    return max(0.0, lam + lr * (mean_episode_cost - cost_limit))


def lagrangian_advantages(adv_r: np.ndarray, adv_c: np.ndarray, lam: float) -> np.ndarray:
    """The policy's advantage, flat: (A_r - lam A_c) / (1 + lam), normalised to mean 0, std 1.

    Dividing by 1 + lam keeps the advantage's scale as the multiplier grows. The cost enters
    the policy loss here, before the normalisation over the whole epoch (not per minibatch).
    """
    adv = (adv_r - lam * adv_c) / (1.0 + lam)
    adv = adv.reshape(-1)
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def ppo_lagrangian_loss(mean, log_std, actions, old_logp, adv, value_r, value_c, ret_r, ret_c,
                        clip_ratio: float):
    """The loss of one minibatch, and its statistics.

    `mean` and `log_std` are the policy's current Gaussian, `value_r`/`value_c` the critics'
    current values, `old_logp` the log-probabilities of `actions` when they were drawn, `adv`
    the Lagrangian advantages (lagrangian_advantages), `ret_r`/`ret_c` the GAE returns.
    loss = clipped surrogate + 0.5 (reward critic's squared error + cost critic's).
    Returns (loss, {"policy_loss", "value_loss", "approx_kl"}), the statistics as floats.
    """
    import torch

    dist = torch.distributions.Normal(mean, torch.exp(log_std))
    logp = dist.log_prob(actions).sum(-1)
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    policy_loss = -torch.min(ratio * adv,
                             torch.clamp(ratio, 1 - clip_ratio, 1 + clip_ratio) * adv).mean()
    value_loss = ((value_r - ret_r) ** 2).mean() + ((value_c - ret_c) ** 2).mean()
    loss = policy_loss + 0.5 * value_loss
    with torch.no_grad():
        stats = {"policy_loss": float(policy_loss.detach()),
                 "value_loss": float(value_loss.detach()),
                 # the low-variance estimator of KL(old || new): E[(r - 1) - log r]
                 "approx_kl": float(((ratio - 1) - log_ratio).mean())}
    return loss, stats


# ------------------------------------------------------------------------------ the networks


def mlp(in_dim: int, out_dim: int, hidden: int, out_gain: float):
    """Two tanh hidden layers, orthogonal init (gain sqrt 2, `out_gain` on the output)."""
    from torch import nn

    layers = [nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
              nn.Linear(hidden, out_dim)]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            gain = out_gain if layer is layers[-1] else math.sqrt(2.0)
            nn.init.orthogonal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class RunningNorm:
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


class ActorCritic:
    """The policy (a state-independent log std), both critics, and one Adam over all three."""

    def __init__(self, obs_dim: int, act_dim: int, budget: CollectBudget, init_seed: int):
        import torch

        with torch.random.fork_rng(devices=[]):  # the caller's torch generator is untouched
            torch.manual_seed(init_seed)
            self.actor = mlp(obs_dim, act_dim, budget.hidden, 0.01)
            self.critic_r = mlp(obs_dim, 1, budget.hidden, 1.0)
            self.critic_c = mlp(obs_dim, 1, budget.hidden, 1.0)
        self.log_std = torch.nn.Parameter(torch.full((act_dim,), budget.init_log_std))
        # this order numbers Adam's saved moments (state/adam.<i>.*): keep it
        self.params = (list(self.actor.parameters()) + [self.log_std]
                       + list(self.critic_r.parameters()) + list(self.critic_c.parameters()))
        self.optim = torch.optim.Adam(self.params, lr=budget.lr)

    def nets(self):
        return (("actor", self.actor), ("critic_r", self.critic_r), ("critic_c", self.critic_c))

    def act(self, obs_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The policy's mean action and both values of a batch of normalised observations."""
        import torch

        with torch.no_grad():
            x = torch.as_tensor(obs_norm)
            mean = self.actor(x).numpy()
            v_r = self.critic_r(x).squeeze(-1).numpy().astype(np.float64)
            v_c = self.critic_c(x).squeeze(-1).numpy().astype(np.float64)
        return mean, v_r, v_c

    def values(self, obs_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            x = torch.as_tensor(obs_norm)
            return (self.critic_r(x).squeeze(-1).numpy().astype(np.float64),
                    self.critic_c(x).squeeze(-1).numpy().astype(np.float64))

    def std(self) -> np.ndarray:
        import torch

        return torch.exp(self.log_std).detach().numpy().astype(np.float64)


# ------------------------------------------------------------------------------ the rollout


@dataclass
class EpochBatch:
    """One epoch of interaction, [T, E] per array (T steps of E environments)."""

    obs: np.ndarray  # normalised, as the policy saw them
    raw_obs: np.ndarray
    actions: np.ndarray  # as drawn, before clipping to the action box
    logp: np.ndarray
    rewards: np.ndarray  # a truncated episode's last reward includes gamma * V(final obs)
    costs: np.ndarray  # likewise with the cost critic
    values_r: np.ndarray
    values_c: np.ndarray
    done: np.ndarray
    last_r: np.ndarray  # values of the observations after the last step
    last_c: np.ndarray
    episode_returns: list[tuple[float, float]]  # (reward, cost) of the episodes that ended


def _empty_episode() -> dict[str, list]:
    return {"observations": [], "next_observations": [], "actions": [], "rewards": [],
            "costs": []}


class Rollout:
    """An agent's environments, stepped together, its observation normaliser, and the
    episodes they have produced (every one, whole, for the dataset).

    Each environment fills its own episode, kept once it ends. While `collecting`, an ended
    episode is followed by a reset; afterwards (`finish`) an environment stops instead.
    """

    def __init__(self, spec: TaskSpec, num_envs: int, seed: int, agent: int,
                 norm: RunningNorm, bar=None):
        from tasks.envs import check_spaces, make_env

        self.seed, self.agent, self.num_envs, self.norm, self.bar = seed, agent, num_envs, norm, bar
        self.envs = []
        for i in range(num_envs):
            seed_globals(derive_seed(seed, agent, 4, i))
            self.envs.append(make_env(spec))
        check_spaces(spec, self.envs[0])
        self.low, self.high = self.envs[0].action_space.low, self.envs[0].action_space.high
        self.obs_dim, self.act_dim = spec.obs_dim, spec.act_dim
        self.episodes: list[dict[str, np.ndarray]] = []
        self.episode_returns: list[tuple[float, float]] = []
        self.n_resets = 0  # every reset of the agent has its own seed
        self.current = [_empty_episode() for _ in range(num_envs)]
        self.collecting = True
        self.obs = np.stack([self._reset(i) for i in range(num_envs)])
        self.active = np.ones(num_envs, dtype=bool)

    def _reset(self, i: int) -> np.ndarray:
        episode_seed = derive_seed(self.seed, self.agent, 3, self.n_resets)
        seed_globals(episode_seed)
        first, _ = self.envs[i].reset(seed=episode_seed)
        self.n_resets += 1
        return np.asarray(first, dtype=np.float32)

    def step(self, raw_actions: np.ndarray, which: np.ndarray):
        """Step the environments in `which` with the actions clipped to the box; return the
        rewards, costs, done flags and {env: final observation} of the truncated episodes."""
        clipped = np.clip(raw_actions, self.low, self.high).astype(np.float32)
        rew = np.zeros(self.num_envs)
        cost = np.zeros(self.num_envs)
        done = np.zeros(self.num_envs)
        trunc_obs = {}
        for i in np.nonzero(which)[0]:
            nxt, r, term, trunc, info = self.envs[i].step(clipped[i])
            nxt = np.asarray(nxt, dtype=np.float32)
            c = float(info.get("cost", 0.0))
            ep = self.current[i]
            ep["observations"].append(self.obs[i].copy())
            ep["next_observations"].append(nxt)
            ep["actions"].append(clipped[i])  # the dataset holds what the simulator received
            ep["rewards"].append(float(r))
            ep["costs"].append(c)
            rew[i], cost[i] = float(r), c
            if term or trunc:
                if not term:
                    trunc_obs[i] = nxt
                self._keep_episode(i, terminated=bool(term))
                done[i] = 1.0
                if self.collecting:
                    self.obs[i] = self._reset(i)
                else:
                    self.active[i] = False
            else:
                self.obs[i] = nxt
        if self.bar is not None:
            self.bar.update(int(which.sum()))
        return rew, cost, done, trunc_obs

    def _keep_episode(self, i: int, terminated: bool) -> None:
        ep = self.current[i]
        length = len(ep["rewards"])
        flat = {key: np.asarray(value, dtype=np.float32) for key, value in ep.items()}
        flat["terminals"] = np.zeros(length, dtype=bool)
        flat["timeouts"] = np.zeros(length, dtype=bool)
        flat["terminals" if terminated else "timeouts"][-1] = True
        self.episodes.append(flat)
        self.episode_returns.append((float(flat["rewards"].sum()), float(flat["costs"].sum())))
        self.current[i] = _empty_episode()

    def collect_epoch(self, net: ActorCritic, horizon: int, gamma: float,
                      rng: np.random.Generator) -> EpochBatch:
        """`horizon` steps of every environment with the current policy, then the observation
        statistics take in the epoch's observations (after it, so that every sample of the
        epoch is normalised alike)."""
        num_envs, obs_dim, act_dim = self.num_envs, self.obs_dim, self.act_dim
        shape = (horizon, num_envs)
        batch = EpochBatch(
            obs=np.zeros(shape + (obs_dim,), dtype=np.float32),
            raw_obs=np.zeros(shape + (obs_dim,), dtype=np.float32),
            actions=np.zeros(shape + (act_dim,), dtype=np.float32),
            logp=np.zeros(shape), rewards=np.zeros(shape), costs=np.zeros(shape),
            values_r=np.zeros(shape), values_c=np.zeros(shape), done=np.zeros(shape),
            last_r=None, last_c=None, episode_returns=[])
        self.episode_returns = batch.episode_returns
        std = net.std()
        for t in range(horizon):
            obs_norm = self.norm(self.obs)
            mean, v_r, v_c = net.act(obs_norm)
            noise = rng.standard_normal((num_envs, act_dim))
            raw = mean.astype(np.float64) + std * noise
            # the Gaussian log-density of the drawn action, from its standardised noise
            logp = (-0.5 * noise ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
            batch.obs[t], batch.raw_obs[t], batch.actions[t] = obs_norm, self.obs, raw
            batch.logp[t], batch.values_r[t], batch.values_c[t] = logp, v_r, v_c
            rew, cost, done, trunc_obs = self.step(raw, self.active)
            if trunc_obs:  # time limit: bootstrap from the value of the final observation
                idx = sorted(trunc_obs)
                boot_r, boot_c = net.values(self.norm(np.stack([trunc_obs[i] for i in idx])))
                rew[idx] += gamma * boot_r
                cost[idx] += gamma * boot_c
            batch.rewards[t], batch.costs[t], batch.done[t] = rew, cost, done
        batch.last_r, batch.last_c = net.values(self.norm(self.obs))
        self.norm.update(batch.raw_obs.reshape(horizon * num_envs, obs_dim))
        return batch

    def finish(self, net: ActorCritic, rng: np.random.Generator) -> None:
        """Once the budget is spent: play the episodes in progress to their end (no resets, no
        training), so that every episode in the dataset is whole, then close the envs."""
        self.collecting = False
        for i in range(self.num_envs):  # an episode that has not started yet is not begun
            self.active[i] = len(self.current[i]["rewards"]) > 0
        while self.active.any():
            mean, _, _ = net.act(self.norm(self.obs))
            raw = mean.astype(np.float64) + net.std() * rng.standard_normal(
                (self.num_envs, self.act_dim))
            self.step(raw, self.active.copy())
        for env in self.envs:
            env.close()

    def dataset(self) -> dict[str, np.ndarray]:
        """Every kept episode, flat (the DSRL keys), and `episode_lengths`."""
        out = {key: np.concatenate([ep[key] for ep in self.episodes]) for key in KEYS}
        out["episode_lengths"] = np.asarray([len(ep["rewards"]) for ep in self.episodes],
                                            dtype=np.int64)
        return out


# ------------------------------------------------------------------------------ the training


def ppo_update(net: ActorCritic, batch: EpochBatch, adv: np.ndarray, ret_r: np.ndarray,
               ret_c: np.ndarray, budget: CollectBudget, rng: np.random.Generator) -> None:
    """Up to `update_epochs` passes over the epoch in shuffled minibatches; a pass whose mean
    approximate KL exceeds `target_kl` is the last."""
    import torch

    size = adv.size
    t_obs = torch.as_tensor(batch.obs.reshape(size, -1))
    t_act = torch.as_tensor(batch.actions.reshape(size, -1))
    t_logp = torch.as_tensor(batch.logp.reshape(size), dtype=torch.float32)
    t_adv = torch.as_tensor(adv, dtype=torch.float32)
    t_ret_r = torch.as_tensor(ret_r.reshape(size), dtype=torch.float32)
    t_ret_c = torch.as_tensor(ret_c.reshape(size), dtype=torch.float32)
    for _ in range(budget.update_epochs):
        order = rng.permutation(size)
        kls = []
        for start in range(0, size, budget.minibatch_size):
            mb = torch.as_tensor(order[start:start + budget.minibatch_size])
            x = t_obs[mb]
            loss, stats = ppo_lagrangian_loss(
                net.actor(x), net.log_std, t_act[mb], t_logp[mb], t_adv[mb],
                net.critic_r(x).squeeze(-1), net.critic_c(x).squeeze(-1), t_ret_r[mb],
                t_ret_c[mb], budget.clip_ratio)
            net.optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.params, 0.5)
            net.optim.step()
            kls.append(stats["approx_kl"])
        if np.mean(kls) > budget.target_kl:
            break


def train_agent(spec: TaskSpec, budget: CollectBudget, steps: int, seed: int, agent: int,
                cost_limit, bar=None, start: dict | None = None) -> dict[str, np.ndarray]:
    """Train one PPO-Lagrangian agent for `steps` env steps; return all its episodes, flat.

    `cost_limit` is one episode cost limit, or a sequence of one per epoch (an annealed limit).
    `start` is the `state/...` part of an earlier result: the agent continues from there
    (weights, observation statistics, multiplier and Adam's moments); its environments and
    random streams are the new segment's own.
    The returned dict holds the DSRL keys plus `episode_lengths`, per-epoch logs (`log_lambda`,
    `log_ep_cost`, `log_ep_reward`, `log_cost_limit`) and the final state (`state/...`).
    Depends only on (spec, budget, steps, seed, agent, cost_limit, start); the caller's global
    random generators are left as they were.
    """
    with global_rng_guard():
        return _train(spec, budget, steps, seed, agent, cost_limit, bar, start)


def _train(spec, budget, steps, seed, agent, cost_limit, bar, start):
    rng = np.random.default_rng(derive_seed(seed, agent, 1))
    net = ActorCritic(spec.obs_dim, spec.act_dim, budget, derive_seed(seed, agent, 2))
    norm = RunningNorm(spec.obs_dim)
    lam = budget.lagrange_init
    if start is not None:
        lam = load_state(start, net, norm)
    rollout = Rollout(spec, budget.num_envs, seed, agent, norm, bar)

    n_epochs = steps // budget.steps_per_epoch
    horizon = budget.steps_per_epoch // budget.num_envs
    limits = np.broadcast_to(np.asarray(cost_limit, dtype=np.float64), (n_epochs,))
    log_lambda, log_cost, log_reward = [], [], []
    for epoch in range(n_epochs):
        batch = rollout.collect_epoch(net, horizon, budget.gamma, rng)
        adv_r, ret_r = gae(batch.rewards, batch.values_r, batch.last_r, batch.done,
                           budget.gamma, budget.gae_lambda)
        adv_c, ret_c = gae(batch.costs, batch.values_c, batch.last_c, batch.done,
                           budget.gamma, budget.gae_lambda)
        if batch.episode_returns:  # an epoch where no episode ended leaves lam as it is
            ep_cost = float(np.mean([c for _, c in batch.episode_returns]))
            ep_rew = float(np.mean([r for r, _ in batch.episode_returns]))
            lam = update_multiplier(lam, ep_cost, limits[epoch], budget.lagrange_lr)
        else:
            ep_cost = ep_rew = float("nan")
        log_lambda.append(lam)
        log_cost.append(ep_cost)
        log_reward.append(ep_rew)
        ppo_update(net, batch, lagrangian_advantages(adv_r, adv_c, lam), ret_r, ret_c, budget,
                   rng)
    rollout.finish(net, rng)

    out = rollout.dataset()
    out["log_lambda"] = np.asarray(log_lambda)
    out["log_ep_cost"] = np.asarray(log_cost)
    out["log_ep_reward"] = np.asarray(log_reward)
    out["log_cost_limit"] = np.asarray(limits)
    out.update(agent_state(net, norm, lam))
    return out


# ------------------------------------------------------- saving an agent between segments


def agent_state(net: ActorCritic, norm: RunningNorm, lam: float) -> dict[str, np.ndarray]:
    """Everything a later segment needs to continue the agent, as `state/...` arrays: weights,
    log std, observation statistics, multiplier, and Adam's moments and step counts."""
    state = {}
    for name, module in net.nets():
        for key, value in module.state_dict().items():
            state[f"state/{name}.{key}"] = value.detach().numpy().copy()
    state["state/log_std"] = net.log_std.detach().numpy().copy()
    state["state/norm_mean"], state["state/norm_var"] = norm.mean.copy(), norm.var.copy()
    state["state/norm_count"] = np.asarray(norm.count)
    state["state/lambda"] = np.asarray(lam)
    for i, param in enumerate(net.params):
        for key, value in net.optim.state.get(param, {}).items():
            state[f"state/adam.{i}.{key}"] = value.detach().numpy().copy()
    return state


def load_state(state: dict[str, np.ndarray], net: ActorCritic, norm: RunningNorm) -> float:
    """Load `agent_state`'s arrays into the networks, Adam and the normaliser; return lam."""
    import torch

    for name, module in net.nets():
        module.load_state_dict({key: torch.as_tensor(state[f"state/{name}.{key}"])
                                for key in module.state_dict()})
    with torch.no_grad():
        net.log_std.copy_(torch.as_tensor(state["state/log_std"]))
    norm.mean = np.array(state["state/norm_mean"], dtype=np.float64)
    norm.var = np.array(state["state/norm_var"], dtype=np.float64)
    norm.count = float(state["state/norm_count"])
    for i, param in enumerate(net.params):
        keys = [k for k in state if k.startswith(f"state/adam.{i}.")]
        if keys:
            net.optim.state[param] = {k.rsplit(".", 1)[1]: torch.as_tensor(np.array(state[k]))
                                      for k in keys}
    return float(state["state/lambda"])
