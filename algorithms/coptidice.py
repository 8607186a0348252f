"""COptiDICE: Lee et al., "COptiDICE: Offline Constrained Reinforcement Learning via Stationary
Distribution Correction Estimation", ICLR 2022; the DSRL/OSRL baseline.

Reference code read for facts: OSRL (osrl/algorithms/coptidice.py, osrl/common/net.py,
osrl/common/dataset.py, examples/configs/coptidice_configs.py,
examples/train/train_coptidice.py). What one step does, in OSRL's notation:
- e(s, a, s') = r - lambda c + gamma (1 - done) nu(s') - nu(s), lambda = softplus(lambda~);
  the optimal ratio w(s, a) = max(0, (f')^-1(e / alpha)), f the soft-chi divergence;
- nu minimises (1 - gamma) E_init[nu(s0)] + E[w e - alpha f(w)] (w with gradient);
- the cost upper bound (cost_ub_epsilon > 0): chi and the temperature tau = softplus(tau~)
  give ell = (1 - gamma) chi(s0) + w (c + gamma (1 - done) chi(s') - chi(s)) (w detached),
  batch weights W = B softmax(ell / tau); chi minimises mean(W ell), tau minimises
  tau (epsilon - KL(W)), KL(W) = mean(W log W - W + 1), and the cost estimate is
  mean(W w c);
- lambda minimises lambda (d - cost estimate), d the per-step threshold
  cost_limit (1 - gamma^L) / (1 - gamma) / L, L = spec.max_episode_steps (OSRL episode_len);
- the squashed-Gaussian actor maximises mean(w log N(a + eps_a; mu(s + eps_s), sigma)),
  the Gaussian before tanh, eps ~ 0.1 std(data) per dimension, w from the updated nu and the
  lambda of before this step's update.
E_init is a mean over the batch of is_init / P(init), is_init marking the transition after
each done (and the first), P(init) its share of the dataset, as OSRL's TransitionDataset with
state_init=True: `training_data` adds `is_init` and computes P(init) and the data's std.
done = terminal or timeout (OSRL's TransitionDataset). Rewards are multiplied by
`reward_scale` (0.1) inside train_step, costs by `cost_scale` (1).

The statistics (P(init), the observation and action std) are float32 tensors: OSRL builds them
from the dataset's dtype, and a float64 std would turn the noisy observations into float64.

Same math, less work (tests_oracle/ checks the losses against osrl-lib): the chi, tau, nu and
lambda losses touch disjoint parameters, so they share one backward pass, and nu and chi one
Adam (per element, as one optimizer each), tau and lambda another; nu and chi see the states
and next states in one batched pass. OSRL's actor also draws an unused sample (rsample) and
its log-probability; that is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.base import TorchMethod, paper_steps_on
from algorithms.nets import (EnsembleMLP, SquashedGaussianActor, done_flags, ensemble_eval,
                             per_step_threshold)
from tasks.datasets import done_mask


@dataclass(frozen=True)
class Config:
    batch_size: int = 512
    """transitions per step (OSRL batch_size)"""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor (OSRL actor_lr)"""
    critic_lr: float = 1e-4
    """Adam learning rate of nu and chi (OSRL critic_lr)"""
    scalar_lr: float = 1e-4
    """Adam learning rate of lambda and tau (OSRL scalar_lr)"""
    actor_hidden: tuple[int, ...] = (256, 256)
    """actor hidden sizes (OSRL a_hidden_sizes)"""
    critic_hidden: tuple[int, ...] = (256, 256)
    """nu and chi hidden sizes (OSRL c_hidden_sizes)"""
    alpha: float = 0.5
    """alpha, weight of the f-divergence (OSRL alpha)"""
    gamma: float = 0.99
    """discount (OSRL gamma)"""
    cost_ub_epsilon: float = 0.01
    """epsilon, KL budget of the cost upper bound; 0 turns the bound off (OSRL cost_ub_epsilon)"""
    f_type: str = "softchi"
    """f-divergence: "softchi", "chi2" or "kl" (OSRL f_type)"""
    num_nu: int = 2
    """nu networks, their min is nu (OSRL num_nu)"""
    num_chi: int = 2
    """chi networks, their min is chi (OSRL num_chi)"""
    noise_scale: float = 0.1
    """std of the actor's input/target noise, in units of the data's std (OSRL: 0.1, fixed)"""
    reward_scale: float = 0.1
    """rewards are multiplied by this (OSRL reward_scale)"""
    cost_scale: float = 1.0
    """costs are multiplied by this (OSRL cost_scale)"""


#: OSRL's examples/configs/coptidice_configs.py: MetaDrive trains 200k steps; every other per-task
#: difference there is episode_len, which comes from the task spec here.
OVERRIDES: dict[str, dict] = {}
METADRIVE_STEPS = paper_steps_on("metadrive", 200_000)


def soft_chi(x: torch.Tensor) -> torch.Tensor:
    """f(x) = x log x - x + 1 for x < 1, (x - 1)^2 / 2 for x >= 1 (log of x + 1e-10)."""
    return torch.where(x < 1, x * (torch.log(x + 1e-10) - 1) + 1, 0.5 * (x - 1) ** 2)


def soft_chi_prime_inv(y: torch.Tensor) -> torch.Tensor:
    """(f')^-1 of soft-chi: f'(x) = log x below 1 and x - 1 above, so exp(y) for y < 0, y + 1
    for y >= 0."""
    return torch.where(y < 0, torch.exp(y.clamp(max=0.0)), y + 1)


F_DIVERGENCES = {
    "softchi": (soft_chi, soft_chi_prime_inv),
    "chi2": (lambda x: 0.5 * (x - 1) ** 2, lambda y: y + 1),
    "kl": (lambda x: x * torch.log(x + 1e-10), lambda y: torch.exp(y - 1)),
}


def optimal_w(cfg: Config, nu_s, nu_next, rewards, costs, done, lam):
    """e = r - lambda c + gamma (1 - done) nu(s') - nu(s) and w = relu((f')^-1(e / alpha))."""
    e = rewards - lam * costs + cfg.gamma * (1.0 - done) * nu_next - nu_s
    return e, F.relu(F_DIVERGENCES[cfg.f_type][1](e / cfg.alpha))


def dice_losses(cfg: Config, nu_values, chi_values, tau_raw, lmbda_raw, rewards, costs, done,
                is_init, init_proportion: float, threshold: float):
    """The chi, tau, nu and lambda losses, summed (each touches only its own parameters).

    nu_values, chi_values: (members, 2B) outputs on cat([s, s']); tau_raw, lmbda_raw: the
    unconstrained scalars (softplus gives tau and lambda)."""
    f = F_DIVERGENCES[cfg.f_type][0]
    batch = rewards.shape[0]
    lam, tau = F.softplus(lmbda_raw), F.softplus(tau_raw)
    nu_s, nu_next = nu_values.min(0).values.split(batch)
    e, w = optimal_w(cfg, nu_s, nu_next, rewards, costs, done, lam.detach())
    w_fixed = w.detach()
    stats = {"Df": f(w_fixed).mean()}
    if cfg.cost_ub_epsilon == 0:
        weighted_c = (w_fixed * costs).mean()
        chi_loss = tau_loss = kl = torch.zeros((), device=rewards.device)
    else:
        chi_s, chi_next = chi_values.min(0).values.split(batch)
        ell = ((1 - cfg.gamma) * chi_s * is_init / init_proportion
               + w_fixed * (costs + cfg.gamma * (1 - done) * chi_next - chi_s))
        logits = ell / tau.detach()
        weights = torch.softmax(logits, 0) * batch
        log_weights = torch.log_softmax(logits, 0) + math.log(batch)
        kl = (weights * log_weights - weights + 1).mean()
        weighted_c = (weights * w_fixed * costs).mean()
        chi_loss = (weights * ell).mean()
        tau_loss = (tau * (cfg.cost_ub_epsilon - kl.detach())).sum()
    nu_loss = ((1 - cfg.gamma) * (nu_s * is_init / init_proportion).mean()
               + (w * e - cfg.alpha * f(w)).mean())
    lmbda_loss = (lam * (threshold - weighted_c.detach())).sum()
    stats |= {"loss/chi": chi_loss.detach(), "loss/tau": tau_loss.detach(), "D_kl": kl.detach(),
              "td_error": e.detach().square().mean(), "loss/nu": nu_loss.detach(),
              "loss/lmbda": lmbda_loss.detach(), "cost_estimate": weighted_c.detach(),
              "tau": tau.detach().sum(), "lmbda": lam.detach().sum()}
    return chi_loss + tau_loss + nu_loss + lmbda_loss, lam.detach(), stats


def actor_loss(actor: SquashedGaussianActor, obs, actions, w):
    """-mean(w log N(a; mu(s), sigma(s))), the Gaussian before the tanh, summed over dims."""
    mean, log_std = actor(obs)
    log_prob = (-(actions - mean).square() / (2 * (2 * log_std).exp()) - log_std
                - 0.5 * math.log(2 * math.pi)).sum(-1)
    loss = -(w * log_prob).mean()
    return loss, {"loss/actor": loss.detach()}


class COptiDICE(TorchMethod):
    Config = Config
    threshold_agnostic = False
    graph_safe = True
    overrides = OVERRIDES
    task_steps = METADRIVE_STEPS
    profile_steps = {"smoke": 10, "quick": 1500, "study": 100_000, "paper": 100_000}
    #: --precision bf16: the hidden layers of the actor, nu and chi; their heads, e, w and
    #: f(w), the softmax weights of the cost bound, tau, lambda and every loss stay fp32
    bf16_networks = ("actor", "nu", "chi")
    state_attributes = ("actor", "nu", "chi", "scalars", "actor_optim", "critic_optim",
                        "scalar_optim", "init_proportion", "obs_std", "act_std")

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        cfg, obs_dim, act_dim = config, spec.obs_dim, spec.act_dim
        self.actor = SquashedGaussianActor(obs_dim, act_dim, cfg.actor_hidden).to(device)
        self.nu = EnsembleMLP(obs_dim, 1, cfg.critic_hidden, cfg.num_nu).to(device)
        self.chi = EnsembleMLP(obs_dim, 1, cfg.critic_hidden, cfg.num_chi).to(device)
        self.scalars = nn.ParameterDict({"tau": nn.Parameter(torch.ones(1, device=device)),
                                         "lmbda": nn.Parameter(torch.ones(1, device=device))})
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optim = torch.optim.Adam([*self.nu.parameters(), *self.chi.parameters()],
                                             lr=cfg.critic_lr)
        self.scalar_optim = torch.optim.Adam(self.scalars.parameters(), lr=cfg.scalar_lr)
        # kappa: the per-step cost budget, the episode threshold spread over the horizon
        self.kappa = per_step_threshold(threshold, cfg.gamma, spec.max_episode_steps)
        # dataset statistics, set by training_data
        self.init_proportion: float | None = None
        self.obs_std = torch.ones(1, obs_dim, device=device)
        self.act_std = torch.ones(1, act_dim, device=device)

    def training_data(self, arrays):
        """All transitions, plus is_init (after each done, and the first); records P(init) and
        the float32 std of observations and actions."""
        done = done_mask(arrays)
        is_init = np.ones(len(done), np.float32)
        is_init[1:] = done[:-1]
        self.init_proportion = float(is_init.mean())
        for name, key in (("obs_std", "observations"), ("act_std", "actions")):
            std = arrays[key].astype(np.float64).std(0, keepdims=True).astype(np.float32)
            setattr(self, name, torch.as_tensor(std, device=self.device))
        return {**arrays, "is_init": is_init}

    def train_step(self, batch):
        cfg = self.config
        if self.init_proportion is None or "is_init" not in batch:
            raise RuntimeError("COptiDICE trains on the output of training_data (is_init, P(init))")
        obs, next_obs, actions = batch["observations"], batch["next_observations"], batch["actions"]
        rewards, costs = batch["rewards"] * cfg.reward_scale, batch["costs"] * cfg.cost_scale
        done = done_flags(batch)
        both = torch.cat([obs, next_obs])
        # 1: nu, chi, tau, lambda (disjoint parameters: one backward pass)
        loss, lam, stats = dice_losses(
            cfg, self.nu(both).squeeze(-1),
            self.chi(both).squeeze(-1) if cfg.cost_ub_epsilon else None,
            self.scalars["tau"], self.scalars["lmbda"], rewards, costs, done,
            batch["is_init"], self.init_proportion, self.kappa)
        self.critic_optim.zero_grad(set_to_none=True)
        self.scalar_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optim.step()
        self.scalar_optim.step()
        # 2: policy extraction, w from the updated nu and the lambda of before the update
        obs_eps = torch.randn_like(obs) * self.obs_std * cfg.noise_scale
        act_eps = torch.randn_like(actions) * self.act_std * cfg.noise_scale
        with torch.no_grad():
            nu_s, nu_next = ensemble_eval(self.nu, both).squeeze(-1).min(0).values.split(
                obs.shape[0])
            _, w = optimal_w(cfg, nu_s, nu_next, rewards, costs, done, lam)
        loss_actor, actor_stats = actor_loss(self.actor, obs + obs_eps, actions + act_eps, w)
        self.actor_optim.zero_grad(set_to_none=True)
        loss_actor.backward()
        self.actor_optim.step()
        return stats | actor_stats

    def _act_tensor(self, obs):
        return self.actor.mode(obs)
