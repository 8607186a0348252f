"""CPQ: Constraints Penalized Q-learning (Xu, Zhan & Zhu, "Constraints Penalized Q-learning for
Safe Offline Reinforcement Learning", AAAI 2022), as the baseline of OSRL/DSRL.

Reference code read for facts: OSRL (osrl/algorithms/cpq.py, osrl/common/net.py,
osrl/common/dataset.py, examples/configs/cpq_configs.py; osrl-lib 0.1.0 is the same code).
One training step, in OSRL's order:
1. a VAE of the behaviour policy is fitted (reconstruction MSE + beta * KL), used only to
   tell out-of-distribution actions apart: an action is OOD when the KL of its VAE posterior
   is in the top quarter of the batch's sampled actions;
2. the reward critic regresses on the constraints-penalized backup
   r + gamma (1 - d) 1[Qc'(s', a') <= kappa] Q'(s', a'), a' ~ pi(s');
3. the cost critic regresses on c + gamma Qc'(s', a'), a' ~ pi(s'), minus alpha times the
   penalty E[1[OOD] Qc(s, a~pi)] - kappa_c, and alpha follows
   log alpha += alpha_lr * alpha * (kappa_c - E[1[OOD] Qc]), clipped to [-5, 5];
4. the tanh-Gaussian actor maximises E[1[Qc(s, a) <= kappa] Q(s, a)], a ~ pi(s);
5. Polyak update of the target critics.

kappa is the per-step threshold C (1 - gamma^L) / ((1 - gamma) L) of an episode cost limit
C over L = the task's episode length (OSRL's q_thres), and kappa_c = qc_scalar * kappa
(OSRL's qc_thres, qc_scalar 1.5): kappa gates the backup and the actor, kappa_c the penalty.

OSRL's choices kept here, each a quirk of the code rather than the paper:
- the OOD penalty is evaluated by the target cost critic under no_grad
  (`ood_penalty_on_target=True`), so it moves alpha and the logged loss but gives the cost
  critic no gradient; False puts it on the live Qc, as the paper's cost critic objective;
- the OOD candidate actions are the actor's pre-tanh Gaussian samples, not squashed
  (`squash_ood_samples=False`);
- done = terminal or timeout (OSRL's TransitionDataset); the cost backup ignores done;
- Q and Qc ensembles are both reduced by min (optimistic for a cost);
- the VAE's KL is averaged over latent dimensions, its latent size is twice the action size.

Same math, different layout: twin critics are fused (EnsembleMLP), the reward and cost
critics share one Adam and one backward pass (Adam is per-parameter and the two losses share
no parameters), the actor's mean/log-std heads and the VAE's are one Linear layer each, the
VAE is only encoded where OSRL also decodes and drops the result, and the target actor OSRL
soft-updates but never uses is left out. OSRL draws random numbers it never uses there (an
action sample of the actor call that returns the OOD distribution, the dropped decode's z);
this file does not, so seeded runs of the two take different random streams (the oracle
test removes those unused draws from OSRL to compare step by step).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from algorithms.base import TorchMethod, paper_steps_on
from algorithms.nets import (VAE, EnsembleMLP, SquashedGaussianActor, done_flags, ensemble_eval,
                             gaussian_kl, optimizer_step, per_step_threshold, scale_batch,
                             soft_update, step_only, vae_loss)


@dataclass(frozen=True)
class Config:
    batch_size: int = 512
    """transitions per step (OSRL batch_size)"""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor (OSRL actor_lr)"""
    critic_lr: float = 1e-3
    """Adam learning rate of the reward and cost critics (OSRL critic_lr)"""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE (OSRL vae_lr)"""
    alpha_lr: float = 1e-4
    """step size of the multiplicative update of log alpha (OSRL alpha_lr)"""
    actor_hidden: tuple[int, ...] = (256, 256)
    """tanh-Gaussian actor hidden sizes (OSRL a_hidden_sizes)"""
    critic_hidden: tuple[int, ...] = (256, 256)
    """hidden sizes of every Q and Qc network (OSRL c_hidden_sizes)"""
    vae_hidden: int = 400
    """width of the VAE's two hidden layers, encoder and decoder (OSRL vae_hidden_sizes)"""
    gamma: float = 0.99
    """discount gamma (OSRL gamma)"""
    polyak_tau: float = 0.005
    """soft update rate of the target critics (OSRL tau)"""
    kl_coef: float = 0.5
    """beta, weight of the VAE's KL term (OSRL beta)"""
    num_q: int = 2
    """reward critics, reduced by min (OSRL num_q)"""
    num_qc: int = 2
    """cost critics, reduced by min (OSRL num_qc)"""
    qc_scalar: float = 1.5
    """kappa_c = qc_scalar * kappa, the OOD penalty's threshold (OSRL qc_scalar)"""
    sample_action_num: int = 10
    """actor samples per state for the OOD penalty (OSRL sample_action_num)"""
    ood_quantile: float = 0.75
    """a sample is OOD when its VAE KL is >= this quantile of the batch's (OSRL, fixed)"""
    log_alpha_init: float = 0.0
    """initial log alpha (OSRL: 0)"""
    log_alpha_bounds: tuple[float, float] = (-5.0, 5.0)
    """clip of log alpha after each update (OSRL, fixed)"""
    log_std_bounds: tuple[float, float] = (-20.0, 2.0)
    """clamp of the actor's log std (OSRL's SquashedGaussianMLPActor)"""
    reward_scale: float = 0.1
    """rewards are multiplied by this before learning (OSRL reward_scale)"""
    cost_scale: float = 1.0
    """costs are multiplied by this before learning (OSRL cost_scale)"""
    done_on_timeout: bool = True
    """bootstrap stops at timeouts as at terminals (OSRL's done = terminals | timeouts)"""
    ood_penalty_on_target: bool = True
    """OOD penalty from the target Qc under no_grad (OSRL); False: live Qc with gradient"""
    squash_ood_samples: bool = False
    """tanh the OOD candidate actions (False: OSRL's pre-tanh Gaussian samples)"""


#: OSRL's cpq_configs vary per task only episode_len (here spec.max_episode_steps) and, on
#: MetaDrive, update_steps (200k), which is a training budget (task_steps), not a Config field.
OVERRIDES: dict[str, dict] = {}
METADRIVE_STEPS = paper_steps_on("metadrive", 200_000)


def ood_penalty(cfg: Config, actor, vae: VAE, qc_net, obs):
    """E over states and n actor samples of 1[KL >= its quantile] * min Qc(s, a).

    The KL of q(z | s, a) under the (just updated) VAE marks the OOD samples; `qc_net` is the
    target cost critic (OSRL, evaluated without gradient) or the live one (gradient kept).
    """
    n, (batch_size, obs_dim) = cfg.sample_action_num, obs.shape
    with torch.no_grad():
        mean, log_std = actor(obs)
        samples = mean + torch.randn(n, *mean.shape, device=obs.device) * log_std.exp()
        if cfg.squash_ood_samples:
            samples = torch.tanh(samples)
        samples = samples.reshape(n * batch_size, -1)
        stacked_obs = obs.expand(n, batch_size, obs_dim).reshape(n * batch_size, obs_dim)
        z_mean, z_log_std = vae.encode(stacked_obs, samples)
        kl = gaussian_kl(z_mean, z_log_std).mean(-1).view(n, batch_size)
        ood = (kl >= torch.quantile(kl, cfg.ood_quantile)).float()
    sa = torch.cat([stacked_obs, samples], -1)
    qc = ensemble_eval(qc_net, sa) if cfg.ood_penalty_on_target else qc_net(sa)
    qc = qc.squeeze(-1).amin(0)
    return (ood * qc.view(n, batch_size)).mean(0).mean()


def critic_losses(cfg: Config, q_ens, qc_ens, q_target, qc_target, actor, vae: VAE, batch,
                  threshold: float, log_alpha: torch.Tensor):
    """Reward and cost critic losses (OSRL critic_loss + cost_critic_loss).

    `threshold` is kappa; the ensembles map (B, in) to (members, B, 1); rewards and costs of
    the batch are already scaled. Returns (sum of both losses, the OOD penalty value E[1[OOD]
    Qc] detached for alpha's update, stats).
    """
    obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
    with torch.no_grad():
        next_sa = torch.cat([next_obs, actor.sample(next_obs)], -1)
        target_q = ensemble_eval(q_target, next_sa).squeeze(-1).amin(0)
        target_qc = ensemble_eval(qc_target, next_sa).squeeze(-1).amin(0)
        not_done = 1.0 - done_flags(batch, cfg.done_on_timeout)
        feasible = (target_qc <= threshold).float()
        backup = batch["rewards"] + cfg.gamma * not_done * feasible * target_q
        # the cost critic's own next action (OSRL samples a second one)
        next_sa = torch.cat([next_obs, actor.sample(next_obs)], -1)
        next_qc = ensemble_eval(qc_target, next_sa).squeeze(-1).amin(0)
        cost_backup = batch["costs"] + cfg.gamma * next_qc
    qc_ood = ood_penalty(cfg, actor, vae, qc_target if cfg.ood_penalty_on_target else qc_ens,
                         obs)
    sa = torch.cat([obs, actions], -1)
    q, qc = q_ens(sa).squeeze(-1), qc_ens(sa).squeeze(-1)
    q_loss = (q - backup).square().mean(1).sum()
    alpha = log_alpha.exp()
    ood_term = alpha * (qc_ood - cfg.qc_scalar * threshold)
    qc_loss = (qc - cost_backup).square().mean(1).sum() - ood_term
    stats = {"loss/critic": q_loss.detach(), "loss/cost_critic": qc_loss.detach(),
             "value/q": q.detach().mean(), "value/qc": qc.detach().mean(),
             "value/qc_ood": qc_ood.detach(), "alpha": alpha.detach(),
             "feasible_fraction": feasible.mean()}
    return q_loss + qc_loss, qc_ood.detach(), stats


def alpha_update(cfg: Config, log_alpha: torch.Tensor, qc_ood: torch.Tensor, threshold: float):
    """log alpha + alpha_lr * alpha * (kappa_c - E[1[OOD] Qc]), clipped (OSRL's rule)."""
    new = log_alpha + cfg.alpha_lr * log_alpha.exp() * (cfg.qc_scalar * threshold - qc_ood)
    return new.clamp(*cfg.log_alpha_bounds)


def actor_loss(actor, q_ens, qc_ens, obs, threshold: float):
    """-E[1[min Qc(s, a) <= kappa] min Q(s, a)], a ~ pi(s) reparameterised."""
    sa = torch.cat([obs, actor.sample(obs)], -1)
    q_pi, qc_pi = q_ens(sa).squeeze(-1).amin(0), qc_ens(sa).squeeze(-1).amin(0)
    feasible = (qc_pi <= threshold).float()
    loss = -(feasible * q_pi).mean()
    return loss, {"loss/actor": loss.detach(), "actor/feasible_fraction": feasible.mean()}


class CPQ(TorchMethod):
    """Constraints Penalized Q-learning: one model per cost threshold."""

    Config = Config
    threshold_agnostic = False
    graph_safe = True
    overrides = OVERRIDES
    task_steps = METADRIVE_STEPS
    profile_steps = {"smoke": 10, "quick": 800, "study": 100_000, "paper": 100_000}
    #: --precision bf16: the hidden layers of the actor, the critics and their targets and the
    #: VAE; heads, backups, the OOD KL and its quantile, alpha and every loss stay fp32
    bf16_networks = ("actor", "q_ens", "qc_ens", "q_target", "qc_target", "vae")
    state_attributes = ("actor", "q_ens", "qc_ens", "q_target", "qc_target", "vae",
                        "actor_optim", "critic_optim", "vae_optim", "log_alpha")

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        cfg, obs_dim, act_dim = config, spec.obs_dim, spec.act_dim
        self.actor = SquashedGaussianActor(obs_dim, act_dim, cfg.actor_hidden,
                                           cfg.log_std_bounds).to(device)
        self.q_ens = EnsembleMLP(obs_dim + act_dim, 1, cfg.critic_hidden, cfg.num_q).to(device)
        self.qc_ens = EnsembleMLP(obs_dim + act_dim, 1, cfg.critic_hidden, cfg.num_qc).to(device)
        self.q_target = copy.deepcopy(self.q_ens).requires_grad_(False)
        self.qc_target = copy.deepcopy(self.qc_ens).requires_grad_(False)
        self.vae = VAE(obs_dim, act_dim, cfg.vae_hidden, 2 * act_dim).to(device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optim = torch.optim.Adam([*self.q_ens.parameters(),
                                              *self.qc_ens.parameters()], lr=cfg.critic_lr)
        self.vae_optim = torch.optim.Adam(self.vae.parameters(), lr=cfg.vae_lr)
        self.log_alpha = torch.tensor(cfg.log_alpha_init, device=device)
        # kappa: the per-step cost budget, the episode threshold spread over the horizon
        self.kappa = per_step_threshold(threshold, cfg.gamma, spec.max_episode_steps)

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
        loss, qc_ood, stats = critic_losses(
            self.config, self.q_ens, self.qc_ens, self.q_target, self.qc_target, self.actor,
            self.vae, batch, self.kappa, self.log_alpha)
        optimizer_step(self.critic_optim, loss)
        # in place: a CUDA graph's replays read and write this one tensor
        self.log_alpha.copy_(alpha_update(self.config, self.log_alpha, qc_ood,
                                          self.kappa))
        return stats

    def update_actor(self, batch):
        """Gradients reach only the actor (they flow through the critics' inputs)."""
        loss, stats = actor_loss(self.actor, self.q_ens, self.qc_ens, batch["observations"],
                                 self.kappa)
        step_only(self.actor_optim, self.actor, loss)
        return stats

    def update_targets(self):
        soft_update(self.q_target, self.q_ens, self.config.polyak_tau)
        soft_update(self.qc_target, self.qc_ens, self.config.polyak_tau)

    def _act_tensor(self, obs):
        """The actor's mode tanh(mu(s)) (OSRL evaluates deterministically)."""
        return self.actor.mode(obs)
