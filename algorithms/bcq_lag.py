"""BCQ-Lag: Batch-Constrained deep Q-learning (Fujimoto et al., "Off-Policy Deep Reinforcement
Learning without Exploration", ICML 2019) with a PID Lagrangian cost penalty (Stooke et al.,
"Responsive Safety in Reinforcement Learning by PID Lagrangian Methods", ICML 2020), the
safe offline baseline of OSRL/DSRL (Liu et al., "Datasets and Benchmarks for Offline Safe
Reinforcement Learning", 2023).

Reference code read for facts: OSRL (osrl/algorithms/bcql.py, osrl/common/net.py,
osrl/common/dataset.py, examples/configs/bcql_configs.py; osrl-lib 0.1.0 is the same code).
One training step, in OSRL's order:
1. the VAE G(a | s) is fitted to the data's actions (reconstruction MSE + beta * KL);
2. reward and cost critics regress on soft clipped double-Q targets: for each s', n actions
   are decoded from the VAE (z ~ N(0, I) clipped to [-0.5, 0.5]), perturbed by the target
   actor xi(s, a) = clip(a + phi tanh(f(s, a)), -1, 1), and the target is the max over the
   n actions of lambda min(Q1, Q2) + (1 - lambda) max(Q1, Q2);
3. the perturbation actor maximises min Q - multiplier * (min Qc - kappa), the multiplier
   given by a PID controller on the mean of min Qc minus kappa;
4. Polyak update of the target critics and target actor.

kappa is the per-step cost threshold: for an episode cost limit C and episode length L,
kappa = C (1 - gamma^L) / ((1 - gamma) L), the discounted value of spending C evenly.

OSRL's choices kept here (each the code's, not a derivation):
- done = terminal or timeout (OSRL's TransitionDataset);
- the cost backup c + gamma Qc' does not stop at done (OSRL's cost_critic_loss);
- the cost target uses the same soft clipped double-Q and max over sampled actions as the
  reward target, and the actor's penalty uses min Qc (optimistic for a cost);
- each of Q1 and Q2 is itself an ensemble of `num_q` networks reduced by min (OSRL's
  EnsembleDoubleQCritic; num_q = num_qc = 2 in bcql_configs, so 4 reward and 4 cost nets);
- the VAE's KL term is averaged over latent dimensions and the batch, and its latent size is
  twice the action size.

Same math, different layout: the 4 + 4 critics are one 8-member EnsembleMLP and one Adam
(Adam is elementwise, so one optimizer over stacked weights equals one per network), the
reward and cost critics take one backward pass, target values at the n B sampled actions
are computed member by member with addmm (`ensemble_eval`, faster than batched matmuls on a
CPU), and the VAE's mean/log-std heads are one Linear layer. Random numbers are drawn in
OSRL's order, so a seeded step equals osrl-lib's (tests_oracle/test_osrl_bcq_lag.py). The VAE,
vae_loss, PIDLagrangian, ensemble_eval and per_step_threshold are shared with the other
methods (algorithms/nets.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from algorithms.base import TorchMethod, paper_steps_on
from algorithms.nets import (VAE, EnsembleMLP, PIDLagrangian, done_flags, ensemble_eval, mlp,
                             optimizer_step, per_step_threshold, scale_batch, soft_update,
                             step_only, vae_loss)


@dataclass(frozen=True)
class Config:
    batch_size: int = 512
    """transitions per step (OSRL batch_size)"""
    actor_lr: float = 1e-3
    """Adam learning rate of the perturbation actor (OSRL actor_lr)"""
    critic_lr: float = 1e-3
    """Adam learning rate of the reward and cost critics (OSRL critic_lr)"""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE (OSRL vae_lr)"""
    actor_hidden: tuple[int, ...] = (256, 256)
    """perturbation actor hidden sizes, tanh activations (OSRL a_hidden_sizes)"""
    critic_hidden: tuple[int, ...] = (256, 256)
    """hidden sizes of every Q and Qc network (OSRL c_hidden_sizes)"""
    vae_hidden: int = 400
    """width of the VAE's two hidden layers, encoder and decoder (OSRL vae_hidden_sizes)"""
    gamma: float = 0.99
    """discount gamma (OSRL gamma)"""
    polyak_tau: float = 0.005
    """soft update rate of the target critics and target actor (OSRL tau)"""
    phi: float = 0.05
    """perturbation range Phi of the actor, as a fraction of the action limit (OSRL phi)"""
    lmbda: float = 0.75
    """lambda of the soft clipped double-Q target (OSRL lmbda)"""
    kl_coef: float = 0.5
    """beta, weight of the VAE's KL term (OSRL beta)"""
    pid: tuple[float, ...] = (0.1, 0.003, 0.001)
    """K_P, K_I, K_D of the PID Lagrangian (OSRL PID)"""
    num_q: int = 2
    """networks in each of Q1 and Q2, reduced by min (OSRL num_q)"""
    num_qc: int = 2
    """networks in each of Qc1 and Qc2, reduced by min (OSRL num_qc)"""
    sample_action_num: int = 10
    """n, VAE actions per next state in the targets (OSRL sample_action_num)"""
    latent_clip: float = 0.5
    """prior samples z ~ N(0, I) are clipped to [-c, c] when decoding (OSRL's VAE.decode)"""
    reward_scale: float = 0.1
    """rewards are multiplied by this before learning (OSRL reward_scale)"""
    cost_scale: float = 1.0
    """costs are multiplied by this before learning (OSRL cost_scale)"""
    done_on_timeout: bool = True
    """bootstrap stops at timeouts as at terminals (OSRL's done = terminals | timeouts)"""


#: OSRL's bcql_configs vary per task only episode_len (here spec.max_episode_steps) and, on
#: MetaDrive, update_steps (200k), which is a training budget (task_steps), not a Config field.
OVERRIDES: dict[str, dict] = {}
METADRIVE_STEPS = paper_steps_on("metadrive", 200_000)


class PerturbationActor(nn.Module):
    """xi(s, a) = clip(a + phi * max_action * tanh(f(s, a)), -max_action, max_action)."""

    def __init__(self, obs_dim, act_dim, hidden, phi, max_action=1.0):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, act_dim, hidden, activation=nn.Tanh,
                       output_activation=nn.Tanh)
        self.phi, self.max_action = phi, max_action

    def forward(self, obs, actions):
        shift = self.phi * self.max_action * self.net(torch.cat([obs, actions], -1))
        return (actions + shift).clamp(-self.max_action, self.max_action)


def soft_clipped_double_q(q: torch.Tensor, num: int, lmbda: float) -> torch.Tensor:
    """(2 num, N) ensemble outputs -> lambda min(Q1, Q2) + (1 - lambda) max(Q1, Q2), where
    Q1 = min of the first `num` networks and Q2 = min of the next `num`."""
    q1, q2 = q[:num].amin(0), q[num:2 * num].amin(0)
    return lmbda * torch.minimum(q1, q2) + (1.0 - lmbda) * torch.maximum(q1, q2)


def critic_losses(cfg: Config, critics, critics_target, actor_target, vae: VAE, batch):
    """Reward and cost critic losses (OSRL critic_loss + cost_critic_loss), summed.

    `critics` / `critics_target` map (B, in) or (members, B, in) to (members, B, 1); members
    [0, 2 num_q) are the reward nets Q1 then Q2, the rest Qc1 then Qc2. Rewards and costs of
    the batch are already scaled. Returns (reward loss + cost loss, stats).
    """
    obs, actions = batch["observations"], batch["actions"]
    n, nq, nqc = cfg.sample_action_num, cfg.num_q, cfg.num_qc
    batch_size = obs.shape[0]
    with torch.no_grad():
        next_obs = torch.repeat_interleave(batch["next_observations"], n, 0)  # (nB, obs)
        # two independent sets of decoded actions, reward target first (OSRL's order)
        reward_in, cost_in = (torch.cat([next_obs, actor_target(next_obs, vae.decode(next_obs))],
                                        -1) for _ in range(2))
        target = ensemble_eval(critics_target, [reward_in] * (2 * nq) + [cost_in] * (2 * nqc))
        target = target.squeeze(-1)  # (members, nB)
        target_q = soft_clipped_double_q(target[:2 * nq], nq, cfg.lmbda)
        target_qc = soft_clipped_double_q(target[2 * nq:], nqc, cfg.lmbda)
        target_q = target_q.view(batch_size, n).amax(1)
        target_qc = target_qc.view(batch_size, n).amax(1)
        not_done = 1.0 - done_flags(batch, cfg.done_on_timeout)
        backup = batch["rewards"] + cfg.gamma * not_done * target_q
        cost_backup = batch["costs"] + cfg.gamma * target_qc  # OSRL: no done for costs
    q = critics(torch.cat([obs, actions], -1)).squeeze(-1)  # (members, B)
    q_loss = (q[:2 * nq] - backup).square().mean(1).sum()
    qc_loss = (q[2 * nq:] - cost_backup).square().mean(1).sum()
    stats = {"loss/critic": q_loss.detach(), "loss/cost_critic": qc_loss.detach(),
             "value/q": q[:2 * nq].detach().mean(), "value/qc": q[2 * nq:].detach().mean()}
    return q_loss + qc_loss, stats


def actor_loss(cfg: Config, actor, critics, vae: VAE, pid: PIDLagrangian, obs, threshold: float):
    """-min Q(s, xi(s, a)) + multiplier * (min Qc(s, xi(s, a)) - kappa), a ~ G(s); the PID
    multiplier is updated from this batch's min Qc before it is used (OSRL actor_loss)."""
    nq = cfg.num_q
    with torch.no_grad():
        decoded = vae.decode(obs)
    actions = actor(obs, decoded)
    q = critics(torch.cat([obs, actions], -1)).squeeze(-1)
    q_pi, qc_pi = q[:2 * nq].amin(0), q[2 * nq:].amin(0)
    multiplier = pid.update(qc_pi.detach())
    penalty = ((qc_pi - threshold) * multiplier).mean()
    loss = -q_pi.mean() + penalty
    return loss, {"loss/actor": loss.detach(), "loss/qc_penalty": penalty.detach(),
                  "lagrangian": multiplier, "value/qc_pi": qc_pi.detach().mean()}


class BCQLag(TorchMethod):
    """BCQ with a PID Lagrangian: one model per cost threshold."""

    Config = Config
    threshold_agnostic = False
    graph_safe = True
    overrides = OVERRIDES
    task_steps = METADRIVE_STEPS
    profile_steps = {"smoke": 10, "quick": 300, "study": 100_000, "paper": 100_000}
    #: --precision bf16: the hidden layers of the critics, the perturbation actor (and their
    #: targets) and the VAE; heads, soft clipped double-Q targets, the PID Lagrangian and
    #: every loss stay fp32
    bf16_networks = ("critics", "critics_target", "actor", "actor_target", "vae")
    state_attributes = ("critics", "critics_target", "actor", "actor_target", "vae",
                        "critic_optim", "actor_optim", "vae_optim", "pid")

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        cfg, obs_dim, act_dim = config, spec.obs_dim, spec.act_dim
        members = 2 * cfg.num_q + 2 * cfg.num_qc
        self.critics = EnsembleMLP(obs_dim + act_dim, 1, cfg.critic_hidden, members).to(device)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor = PerturbationActor(obs_dim, act_dim, cfg.actor_hidden, cfg.phi).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.vae = VAE(obs_dim, act_dim, cfg.vae_hidden, 2 * act_dim,
                       latent_clip=cfg.latent_clip).to(device)
        self.critic_optim = torch.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.vae_optim = torch.optim.Adam(self.vae.parameters(), lr=cfg.vae_lr)
        # kappa: the per-step cost budget, the episode threshold spread over the horizon
        self.kappa = per_step_threshold(threshold, cfg.gamma, spec.max_episode_steps)
        self.pid = PIDLagrangian(*cfg.pid, self.kappa, device=device)

    def train_step(self, batch):
        batch = scale_batch(batch, self.config.reward_scale, self.config.cost_scale)
        stats = self.update_vae(batch)
        stats |= self.update_critics(batch)
        stats |= self.update_actor(batch)
        self.update_targets()
        return stats

    def update_vae(self, batch):
        loss, stats = vae_loss(self.config.kl_coef, self.vae, batch["observations"],
                               batch["actions"])
        optimizer_step(self.vae_optim, loss)
        return stats

    def update_critics(self, batch):
        loss, stats = critic_losses(self.config, self.critics, self.critics_target,
                                    self.actor_target, self.vae, batch)
        optimizer_step(self.critic_optim, loss)
        return stats

    def update_actor(self, batch):
        """Gradients reach only the actor (they flow through the critics' inputs)."""
        loss, stats = actor_loss(self.config, self.actor, self.critics, self.vae, self.pid,
                                 batch["observations"], self.kappa)
        step_only(self.actor_optim, self.actor, loss)
        return stats

    def update_targets(self):
        soft_update(self.critics_target, self.critics, self.config.polyak_tau)
        soft_update(self.actor_target, self.actor, self.config.polyak_tau)

    def _act_tensor(self, obs):
        return self.actor(obs, self.vae.decode(obs))

