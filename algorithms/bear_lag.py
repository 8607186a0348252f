"""BEAR-Lag: BEAR (Kumar et al., "Stabilizing Off-Policy Q-Learning via Bootstrapping Error
Reduction", NeurIPS 2019) with a PID Lagrangian on the cost critic (Stooke et al., "Responsive
Safety in Reinforcement Learning by PID Lagrangian Methods", ICML 2020), the DSRL/OSRL baseline.

Reference code read for facts: OSRL (osrl/algorithms/bearl.py, osrl/common/net.py,
osrl/common/dataset.py, examples/configs/bearl_configs.py, examples/train/train_bearl.py).
What one step does, in OSRL's order:
1. a VAE (hidden 400, latent 2 x act_dim) learns the behaviour policy: mean squared error of
   the reconstruction + beta KL (both averaged over elements);
2. reward and cost critics, each two groups of `num_q` Q networks (OSRL's double-Q ensemble):
   the target for s' is, over `sample_action_num` actions of the target actor, the max of
   lmbda min(Q1, Q2) + (1 - lmbda) max(Q1, Q2), Qi the min over group i;
3. the squashed-Gaussian actor minimises -Q + alpha (MMD - target_mmd) + lambda_PID (Qc - d),
   the MMD with a Gaussian kernel between the pre-tanh actions of the actor and of the VAE
   decoder (z ~ N(0, I) clipped to [-0.5, 0.5]); Q and Qc at the first of those samples, each
   the min over all of its critics; lambda_PID from a PID controller on mean(Qc) - d;
4. log alpha moves by alpha_lr alpha (mean MMD - target_mmd), kept in [-5, 5];
5. Polyak updates of the critics and the actor.
d is the threshold on Qc: cost_limit (1 - gamma^L) / (1 - gamma) / L, the discounted value of
spending cost_limit / L per step, L the episode length (OSRL episode_len and qc_thres; here
spec.max_episode_steps, the same numbers).

Choices kept from OSRL, each visible in a Config field or stated here:
- done = terminal or timeout (OSRL's TransitionDataset) stops the reward bootstrap; the cost
  backup bootstraps through done (OSRL's cost_critic_loss has no (1 - done));
  `cost_done_mask=True` masks it like the reward;
- the MMD's Gaussian kernel is exp(-|x - y|^2 / (2 sigma)), sigma not squared (OSRL, from
  D4RL-Evaluations), with sqrt(. + 1e-6);
- rewards are multiplied by `reward_scale` (0.1) inside train_step, costs by `cost_scale` (1).

Same math, less work (the oracle tests in tests_oracle/ check the losses against osrl-lib):
- all 2 num_q + 2 num_qc Q networks are one EnsembleMLP with one Adam (Adam is per element,
  so this equals one optimizer per critic); the target of the reward group and the one of the
  cost group come from one batched pass, each group on its own sampled actions as in OSRL;
- the actor's trunk runs once per state and its mean/std are repeated for the
  `sample_action_num` samples (OSRL runs it on the repeated states);
- the VAE and the critics are independent, so their losses share one backward pass;
- the target critics (no gradient, 5120 rows) run one member at a time with in-place ReLU,
  about twice as fast on a CPU as the fused batched matmul (`ensemble_eval`).
The VAE, vae_loss, PIDLagrangian, the actor, ensemble_eval and per_step_threshold are shared
with the other methods (algorithms/nets.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from algorithms.base import TorchMethod, paper_steps_on
from algorithms.nets import (VAE, EnsembleMLP, PIDLagrangian, SquashedGaussianActor, done_flags,
                             ensemble_eval, per_step_threshold, soft_update, step_only,
                             vae_loss)

@dataclass(frozen=True)
class Config:
    batch_size: int = 512
    """transitions per step (OSRL batch_size)"""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor (OSRL actor_lr)"""
    critic_lr: float = 1e-3
    """Adam learning rate of the reward and cost critics (OSRL critic_lr)"""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE (OSRL vae_lr)"""
    alpha_lr: float = 1e-3
    """step size of log alpha, the MMD dual variable (OSRL BEARLTrainer alpha_lr default)"""
    actor_hidden: tuple[int, ...] = (256, 256)
    """actor hidden sizes (OSRL a_hidden_sizes)"""
    critic_hidden: tuple[int, ...] = (256, 256)
    """critic hidden sizes (OSRL c_hidden_sizes)"""
    vae_hidden: int = 400
    """width of the VAE's two hidden layers (OSRL vae_hidden_sizes)"""
    sample_action_num: int = 10
    """target actor actions per next state in the critic target (OSRL sample_action_num)"""
    gamma: float = 0.99
    """discount (OSRL gamma)"""
    polyak_tau: float = 0.005
    """Polyak rate of the target critics and actor (OSRL tau)"""
    kl_coef: float = 0.5
    """beta, weight of the VAE's KL term (OSRL beta)"""
    lmbda: float = 0.75
    """weight of min(Q1, Q2) against max(Q1, Q2) in the critic target (OSRL lmbda)"""
    mmd_sigma: float = 50.0
    """kernel width of the MMD (OSRL mmd_sigma)"""
    target_mmd: float = 0.05
    """epsilon of the MMD constraint (OSRL target_mmd_thresh)"""
    num_samples_mmd_match: int = 10
    """samples per state on each side of the MMD (OSRL num_samples_mmd_match)"""
    kernel: str = "gaussian"
    """MMD kernel: "gaussian" or "laplacian" (OSRL kernel)"""
    start_update_policy_step: int = 0
    """steps before -Q enters the actor loss (OSRL start_update_policy_step)"""
    num_q: int = 2
    """reward Q networks per group, two groups (OSRL num_q)"""
    num_qc: int = 2
    """cost Q networks per group, two groups (OSRL num_qc)"""
    pid: tuple[float, float, float] = (0.1, 0.003, 0.001)
    """KP, KI, KD of the PID Lagrangian (OSRL PID)"""
    log_alpha_bounds: tuple[float, float] = (-5.0, 5.0)
    """clamp of log alpha after each update (OSRL bearl.py)"""
    reward_scale: float = 0.1
    """rewards are multiplied by this (OSRL reward_scale)"""
    cost_scale: float = 1.0
    """costs are multiplied by this (OSRL cost_scale)"""
    cost_done_mask: bool = False
    """stop the cost bootstrap at done as the reward's (OSRL: False, it bootstraps through)"""


#: OSRL's examples/configs/bearl_configs.py: MetaDrive trains 200k steps; every other per-task
#: difference there is episode_len, which comes from the task spec here.
OVERRIDES: dict[str, dict] = {}
METADRIVE_STEPS = paper_steps_on("metadrive", 200_000)


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Per row b: sqrt(mean k(x_i, x_j) + mean k(y_i, y_j) - 2 mean k(x_i, y_j) + 1e-6) with
    k(u, v) = exp(-|u - v|^2 / (2 sigma)); x (B, N, d), y (B, M, d) -> (B,)."""
    def k(u, v):
        return torch.exp(-(u.unsqueeze(2) - v.unsqueeze(1)).square().sum(-1) / (2.0 * sigma))
    return (k(x, x).mean((1, 2)) + k(y, y).mean((1, 2)) - 2.0 * k(x, y).mean((1, 2))
            + 1e-6).sqrt()


def laplacian_mmd(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """As gaussian_mmd with k(u, v) = exp(-|u - v|_1 / (2 sigma))."""
    def k(u, v):
        return torch.exp(-(u.unsqueeze(2) - v.unsqueeze(1)).abs().sum(-1) / (2.0 * sigma))
    return (k(x, x).mean((1, 2)) + k(y, y).mean((1, 2)) - 2.0 * k(x, y).mean((1, 2))
            + 1e-6).sqrt()


def group_mins(cfg: Config, q: torch.Tensor):
    """Q1, Q2, Qc1, Qc2 from the stacked critics' (members, ...) output: each the min over
    its group of num_q (num_qc) networks."""
    nq, nqc = cfg.num_q, cfg.num_qc
    groups = torch.split(q, (nq, nq, nqc, nqc))
    return tuple(g.min(0).values for g in groups)


def critic_loss(cfg: Config, critics: EnsembleMLP, critics_target: EnsembleMLP,
                actor_target: SquashedGaussianActor, obs, actions, next_obs, rewards, costs,
                done):
    """Sum over every Q network of its mean squared TD error (reward and cost critics).

    Target: over `sample_action_num` actions a' ~ actor_target(s'), the max of
    lmbda min(Q1', Q2') + (1 - lmbda) max(Q1', Q2'); y = r + gamma (1 - done) target, and
    y_c = c + gamma target_c (masked by done only with cost_done_mask). The reward and cost
    critics each draw their own a' (OSRL samples once in each critic's loss)."""
    n, batch = cfg.sample_action_num, obs.shape[0]
    q = critics(torch.cat([obs, actions], -1)).squeeze(-1)  # (members, B)
    with torch.no_grad():
        mean, log_std = actor_target(next_obs)
        mean, std = mean.repeat_interleave(n, 0), log_std.exp().repeat_interleave(n, 0)
        next_rep = next_obs.repeat_interleave(n, 0)
        a_reward = torch.tanh(mean + std * torch.randn_like(mean))
        a_cost = torch.tanh(mean + std * torch.randn_like(mean))
        nr, nc = 2 * cfg.num_q, 2 * cfg.num_qc
        inputs = ([torch.cat([next_rep, a_reward], -1)] * nr
                  + [torch.cat([next_rep, a_cost], -1)] * nc)
        target = ensemble_eval(critics_target, inputs)
        q1, q2, qc1, qc2 = group_mins(cfg, target.squeeze(-1))

        def soft_min_max(a, b):
            mixed = cfg.lmbda * torch.minimum(a, b) + (1.0 - cfg.lmbda) * torch.maximum(a, b)
            return mixed.reshape(batch, n).max(1).values

        not_done = 1.0 - done
        backup = rewards + cfg.gamma * not_done * soft_min_max(q1, q2)
        cost_next = soft_min_max(qc1, qc2)
        backup_c = costs + cfg.gamma * (not_done * cost_next if cfg.cost_done_mask else cost_next)
    sq = (q - torch.cat([backup.expand(nr, -1), backup_c.expand(nc, -1)])).square().mean(1)
    loss_q, loss_qc = sq[:nr].sum(), sq[nr:].sum()
    return loss_q + loss_qc, {"loss/critic": loss_q.detach(), "loss/cost_critic": loss_qc.detach(),
                              "value/q": q[:nr].detach().mean(),
                              "value/qc": q[nr:].detach().mean()}


def actor_terms(cfg: Config, actor: SquashedGaussianActor, critics: EnsembleMLP, vae: VAE, obs):
    """Per state: Q = min of the reward critics and Qc = min of the cost critics at the first
    of the actor's samples, and the MMD between the actor's and the VAE's pre-tanh actions."""
    n, batch = cfg.num_samples_mmd_match, obs.shape[0]
    with torch.no_grad():
        z = vae.prior(batch * n, obs.device).view(batch, n, -1)
        vae_raw = vae.decode_raw(obs.unsqueeze(1).expand(-1, n, -1), z)  # (B, n, act)
    mean, log_std = actor(obs)
    mean, std = mean.repeat_interleave(n, 0), log_std.exp().repeat_interleave(n, 0)
    actor_raw = (mean + std * torch.randn_like(mean)).reshape(batch, n, -1)
    first = torch.tanh(actor_raw[:, 0])
    q1, q2, qc1, qc2 = group_mins(cfg, critics(torch.cat([obs, first], -1)).squeeze(-1))
    mmd_fn = gaussian_mmd if cfg.kernel == "gaussian" else laplacian_mmd
    return torch.minimum(q1, q2), torch.minimum(qc1, qc2), mmd_fn(vae_raw, actor_raw, cfg.mmd_sigma)


def actor_objective(cfg: Config, q, qc, mmd, alpha, multiplier, threshold: float,
                    use_q: bool = True):
    """mean(-Q + alpha (MMD - target_mmd)) + mean(lambda (Qc - d)); alpha and lambda fixed."""
    constraint = alpha * (mmd - cfg.target_mmd)
    main = (constraint - q).mean() if use_q else constraint.mean()
    penalty = ((qc - threshold) * multiplier).mean()
    loss = main + penalty
    return loss, {"loss/actor": loss.detach(), "loss/mmd": mmd.detach().mean(),
                  "loss/qc_penalty": penalty.detach(), "lagrangian": multiplier.detach(),
                  "alpha": alpha.detach()}


class BEARLag(TorchMethod):
    Config = Config
    threshold_agnostic = False
    overrides = OVERRIDES
    task_steps = METADRIVE_STEPS
    profile_steps = {"smoke": 10, "quick": 300, "study": 300_000, "paper": 300_000}
    #: --precision bf16: the hidden layers of the actor, the critics (and their targets) and
    #: the VAE; heads, targets, the MMD, the PID Lagrangian, alpha and every loss stay fp32
    bf16_networks = ("actor", "actor_target", "critics", "critics_target", "vae")
    state_attributes = ("actor", "actor_target", "critics", "critics_target", "vae",
                        "actor_optim", "critic_optim", "vae_optim", "pid", "log_alpha", "steps")
    state_counters = ("steps",)

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        cfg, obs_dim, act_dim = config, spec.obs_dim, spec.act_dim
        self.actor = SquashedGaussianActor(obs_dim, act_dim, cfg.actor_hidden).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        members = 2 * cfg.num_q + 2 * cfg.num_qc  # Q1 group, Q2 group, Qc1 group, Qc2 group
        self.critics = EnsembleMLP(obs_dim + act_dim, 1, cfg.critic_hidden, members).to(device)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.vae = VAE(obs_dim, act_dim, cfg.vae_hidden, 2 * act_dim).to(device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optim = torch.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        self.vae_optim = torch.optim.Adam(self.vae.parameters(), lr=cfg.vae_lr)
        self.log_alpha = torch.zeros((), device=device)
        # kappa: the per-step cost budget, the episode threshold spread over the horizon
        self.kappa = per_step_threshold(threshold, cfg.gamma, spec.max_episode_steps)
        self.pid = PIDLagrangian(*cfg.pid, self.kappa, device=device)
        self.steps = 0

    def train_step(self, batch):
        cfg = self.config
        obs, actions = batch["observations"], batch["actions"]
        done = done_flags(batch)
        # 1-2: VAE and critics (independent: one backward pass, two optimizers)
        loss_vae, stats = vae_loss(cfg.kl_coef, self.vae, obs, actions)
        loss_critic, critic_stats = critic_loss(
            cfg, self.critics, self.critics_target, self.actor_target, obs, actions,
            batch["next_observations"], batch["rewards"] * cfg.reward_scale,
            batch["costs"] * cfg.cost_scale, done)
        self.vae_optim.zero_grad(set_to_none=True)
        self.critic_optim.zero_grad(set_to_none=True)
        (loss_vae + loss_critic).backward()
        self.vae_optim.step()
        self.critic_optim.step()
        # 3: the actor against the updated critics and VAE
        q, qc, mmd = actor_terms(cfg, self.actor, self.critics, self.vae, obs)
        multiplier = self.pid.update(qc.detach())
        alpha = self.log_alpha.exp()
        loss_actor, actor_stats = actor_objective(
            cfg, q, qc, mmd, alpha, multiplier, self.kappa,
            use_q=self.steps >= cfg.start_update_policy_step)
        step_only(self.actor_optim, self.actor, loss_actor)
        # 4: dual ascent on log alpha
        with torch.no_grad():
            step = cfg.alpha_lr * alpha * (mmd.detach() - cfg.target_mmd).mean()
            self.log_alpha = (self.log_alpha + step).clamp(*cfg.log_alpha_bounds)
        self.steps += 1
        # 5: targets
        soft_update(self.critics_target, self.critics, cfg.polyak_tau)
        soft_update(self.actor_target, self.actor, cfg.polyak_tau)
        return stats | critic_stats | actor_stats

    def _act_tensor(self, obs):
        return self.actor.mode(obs)
