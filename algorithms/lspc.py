"""LSPC: Latent Safety-Constrained Policy (Koirala & Fleming, "Latent Safety-Constrained Policy
Approach for Safe Offline Reinforcement Learning", Algorithm 2 and appendix A.3).

One training run gives two policies:
- LSPC-S: the CVAE decoder with z drawn from the prior restricted to the box [-eps_S, eps_S]
  (the high-probability region), a conservatively safe policy;
- LSPC-O: the decoder at the latent safety encoder's z = eps * tanh(u), u its mean, the
  reward-maximising policy inside the same restricted latent space.

Reference code read for facts: PrajwalKoirala/LSPC-Safe-Offline-RL (lspc_iql.py,
lspc_iql_configs.py). Choices where the paper is silent, each a Config field:
- done = terminal or timeout for bootstrapping (the authors' code; the paper does not say),
  clipped at 1 (the code adds the two flags: `clip_done=False`);
- cost values clamped at >= 0 where they serve as targets and in the cost advantage (costs
  are non-negative; the authors' code clamps Vc and Qc), but not inside V^c's own loss: eq. 41
  has no clamp, and the code's clamp there zeroes V^c's gradient wherever V^c < 0; on our
  BallRun data that left V^c = 0 in every state within 5k steps, so Q^c only ever saw one-step
  costs (`clamp_vc_in_loss=True` restores the code's version);
- the CVAE's KL term is averaged over latent dimensions (the authors' code), so the KL
  coefficient 0.5 of A.3.1 means what it meant in their runs; `kl_reduction="sum"` is the
  textbook KL;
- the squared action error is summed over action dimensions (the Gaussian log-likelihood of
  eq. 43 up to scale, as the authors' code);
- eq. 40 and 42 sum the twin critics' losses (the paper's formula; the code averages them,
  which Adam makes nearly the same: `twin_loss_reduction="mean"`);
- no observation normalisation (neither the paper nor the code normalises);
- LSPC-O acts at the encoder's mean: the paper trains with z ~ mu_delta(. | s) (eq. 14)
  and is silent on how the policy acts when evaluated, where a deterministic policy is the
  usual reading; the code samples from it (`optimal_samples_latent=True`);
- LSPC-S's restriction eps_S = 0.25 everywhere (the paper's A.3.1); the authors' code uses
  eps_S = eps (0.6 on seven Bullet tasks): `safe_epsilon=None` follows the code.
Every choice of the authors' code at once is the method LSPC-code (algorithms/lspc_code.py,
recorded as LSPC-S-code and LSPC-O-code), which also tabulates where the code departs.
Where the authors' code orders updates (critics, then CVAE, then the encoder through the
just-updated decoder), this file keeps that order; the critics' four losses use only
pre-update values, so they share one forward pass and one optimizer step.

Speed without changing the math: after the critics' forward pass, the critic backward/step
and the CVAE + encoder updates depend on nothing of each other (both read only pre-update
values), so on a multi-core CPU they run side by side, one core each, instead of splitting
every small matmul over all cores (`parallel_updates`, on by default with >= 2 torch threads).
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.base import ConfigError, TorchMethod
from algorithms.nets import (EnsembleMLP, done_flags, exp_weights, expectile_loss, gaussian_kl,
                             mlp, optimizer_step, soft_update, step_only)
from tasks.registry import task_names


@dataclass(frozen=True)
class Config:
    batch_size: int = 1024
    """|B|, Table 2"""
    gamma: float = 0.99
    """discount gamma, Table 2"""
    polyak_tau: float = 0.005
    """soft update rate T of the target Q networks, Table 2"""
    lr: float = 3e-4
    """learning rate of every network, Table 2"""
    expectile: float = 0.7
    """xi of the asymmetric L2 loss, eq. 39 and 41, Table 2"""
    cost_inverse_temperature: float = 2.0
    """lambda in w_c = exp(lambda (V^c - Q^c)), eq. 43, Table 2"""
    reward_inverse_temperature: float = 2.0
    """zeta in exp(zeta (Q^r - V^r)), eq. 44, Table 2"""
    max_weight: float = 200.0
    """clip of both exponentiated advantage weights, Table 2"""
    kl_coef: float = 0.5
    """KL coefficient of the CVAE ELBO, A.3.1"""
    kl_reduction: str = "mean"
    """"mean" over latent dims (authors' code) or "sum" (the textbook KL)"""
    latent_dim: int = 32
    """dimension of the latent safety space, A.3.1"""
    epsilon: float = 0.25
    """restriction eps of the latent space: z = eps tanh(.) for LSPC-O, A.3.1"""
    safe_epsilon: float | None = 0.25
    """LSPC-S box [-eps_S, eps_S]; None uses `epsilon` (the authors' code)"""
    safe_value_threshold: float | None = None
    """w_c = 0 where V^c or Q^c exceeds this (0.02 on MetaDrive, A.3); None: off"""
    hidden: tuple[int, ...] = (256, 256)
    """hidden sizes of every network (authors' code)"""
    vae_log_std_bounds: tuple[float, float] = (-4.0, 15.0)
    """clamp of the CVAE encoder's log-std (authors' code)"""
    encoder_log_std_bounds: tuple[float, float] = (-10.0, 2.0)
    """clamp of the latent safety encoder's log-std (authors' code)"""
    done_on_timeout: bool = True
    """bootstrap stops at timeouts as at terminals (authors' code)"""
    clamp_cost_values: bool = True
    """V^c and Q^c clamped at >= 0 as targets and in the cost advantage (authors' code)"""
    clamp_vc_in_loss: bool = False
    """also clamp V^c inside its own loss, eq. 41 (authors' code; kills its gradient below 0)"""
    optimal_samples_latent: bool = False
    """LSPC-O samples z from mu_delta (code) instead of taking its mean (paper)"""
    twin_loss_reduction: str = "sum"
    """"sum" of the twin critics' losses (eq. 40, 42) or their "mean" (authors' code)"""
    clip_done: bool = True
    """done = min(terminal + timeout, 1); False: the sum, 2 where both are set (authors' code)"""


#: A.3.1: the restriction is relaxed to 0.6 on the Bullet tasks except AntRun; MetaDrive
#: masks the cost weights of transitions whose cost value exceeds 0.02.
OVERRIDES = {
    **{task: {"epsilon": 0.6} for task in ("BallRun", "CarRun", "DroneRun", "BallCircle",
                                             "CarCircle", "DroneCircle", "AntCircle")},
    **{task: {"safe_value_threshold": 0.02} for task in task_names("metadrive")},
}


class CVAE(nn.Module):
    """Encoder alpha: (s, a) -> q(z | s, a); decoder beta: (s, z) -> max_action tanh(.)."""

    def __init__(self, obs_dim, act_dim, latent_dim, hidden, log_std_bounds, max_action=1.0):
        super().__init__()
        self.encoder = mlp(obs_dim + act_dim, 2 * latent_dim, hidden)
        self.decoder = mlp(obs_dim + latent_dim, act_dim, hidden, output_activation=nn.Tanh)
        self.latent_dim, self.log_std_bounds = latent_dim, log_std_bounds
        self.max_action = max_action

    def encode(self, obs, actions):
        mean, log_std = self.encoder(torch.cat([obs, actions], -1)).chunk(2, -1)
        return mean, log_std.clamp(*self.log_std_bounds)

    def decode(self, obs, z):
        return self.max_action * self.decoder(torch.cat([obs, z], -1))


class LatentSafetyEncoder(nn.Module):
    """mu_delta(z | s): a Gaussian over the latent space, squashed to (-eps, eps) by eps tanh."""

    def __init__(self, obs_dim, latent_dim, hidden, log_std_bounds):
        super().__init__()
        self.net = mlp(obs_dim, 2 * latent_dim, hidden)
        self.log_std_bounds = log_std_bounds

    def forward(self, obs):
        mean, log_std = self.net(obs).chunk(2, -1)
        return mean, log_std.clamp(*self.log_std_bounds)


def critic_losses(cfg: Config, q_ens, v_ens, q_target, batch):
    """Eq. 39-42 from one forward pass. q_ens members: Q1, Q2, Qc1, Qc2; v_ens: V, Vc.

    Returns the summed critic loss, the reward advantage Q - V (eq. 44) and the cost
    advantage V^c - Q^c (eq. 43), both detached, the safety mask, and stats.
    """
    obs, actions = batch["observations"], batch["actions"]
    done = done_flags(batch, cfg.done_on_timeout, cfg.clip_done)
    sa = torch.cat([obs, actions], -1)
    with torch.no_grad():
        tq = q_target(sa).squeeze(-1)  # (4, B)
        target_q = torch.minimum(tq[0], tq[1])  # twin reward Qs: min
        target_qc = torch.maximum(tq[2], tq[3])  # twin cost Qs: max
        # V(s') and V^c(s') before this step's update, as the targets of eq. 40 and 42
        next_v, next_vc = v_ens(batch["next_observations"]).squeeze(-1)
        if cfg.clamp_cost_values:
            target_qc, next_vc = target_qc.clamp(min=0.0), next_vc.clamp(min=0.0)
        not_done = 1.0 - done
        q_backup = batch["rewards"] + cfg.gamma * not_done * next_v
        qc_backup = batch["costs"] + cfg.gamma * not_done * next_vc
    v, vc_raw = v_ens(obs).squeeze(-1)
    vc = vc_raw.clamp(min=0.0) if cfg.clamp_cost_values else vc_raw
    q = q_ens(sa).squeeze(-1)
    v_loss = expectile_loss(target_q - v, cfg.expectile)  # eq. 39
    vc_loss = expectile_loss((vc if cfg.clamp_vc_in_loss else vc_raw) - target_qc,
                             cfg.expectile)  # eq. 41
    twin = 0.5 if cfg.twin_loss_reduction == "mean" else 1.0
    q_loss = twin * (F.mse_loss(q[0], q_backup) + F.mse_loss(q[1], q_backup))  # eq. 40
    qc_loss = twin * (F.mse_loss(q[2], qc_backup) + F.mse_loss(q[3], qc_backup))  # eq. 42
    reward_adv = (target_q - v).detach()
    cost_adv = (vc - target_qc).detach()
    mask = None
    if cfg.safe_value_threshold is not None:
        mask = ((vc.detach() < cfg.safe_value_threshold)
                & (target_qc < cfg.safe_value_threshold)).float()
    stats = {"loss/v": v_loss.detach(), "loss/q": q_loss.detach(), "loss/vc": vc_loss.detach(),
             "loss/qc": qc_loss.detach(), "value/v": v.detach().mean(),
             "value/vc": vc_raw.detach().mean()}
    return v_loss + q_loss + vc_loss + qc_loss, reward_adv, cost_adv, mask, stats


def cost_weights(cfg: Config, cost_adv, mask):
    """w_c of eq. 43: min(exp(lambda A_c), 200), zero where the safety mask is."""
    weights = exp_weights(cost_adv, cfg.cost_inverse_temperature, cfg.max_weight)
    return weights if mask is None else weights * mask


def cvae_loss(cfg: Config, cvae: CVAE, obs, actions, cost_adv, mask):
    """Eq. 43: cost-advantage-weighted negative ELBO; w_c = min(exp(lambda A_c), 200)."""
    weights = cost_weights(cfg, cost_adv, mask)
    mean, log_std = cvae.encode(obs, actions)
    std = log_std.exp()
    z = mean + std * torch.randn_like(std)
    recon = (cvae.decode(obs, z) - actions).square().sum(-1)
    kl = gaussian_kl(mean, log_std, std)
    kl = kl.mean(-1) if cfg.kl_reduction == "mean" else kl.sum(-1)
    elbo = recon + cfg.kl_coef * kl
    loss = (weights * elbo).mean()
    return loss, {"loss/cvae": loss.detach(), "cvae/recon": recon.detach().mean(),
                  "cvae/kl": kl.detach().mean(), "weights/cost_mean": weights.mean(),
                  "weights/cost_max": weights.max()}


def latent_encoder_loss(cfg: Config, encoder: LatentSafetyEncoder, cvae: CVAE, obs, actions,
                        reward_adv):
    """Eq. 44: reward AWR through the decoder, z = eps tanh(u), u ~ mu_delta(. | s)."""
    weights = exp_weights(reward_adv, cfg.reward_inverse_temperature, cfg.max_weight)
    mean, log_std = encoder(obs)
    z = cfg.epsilon * torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
    error = (cvae.decode(obs, z) - actions).square().sum(-1)
    loss = (weights * error).mean()
    return loss, {"loss/encoder": loss.detach(), "weights/reward_mean": weights.mean()}


class LSPC(TorchMethod):
    Config = Config
    threshold_agnostic = True
    policies = ("LSPC-S", "LSPC-O")
    overrides = OVERRIDES
    graph_safe = True
    profile_steps = {"smoke": 10, "quick": 3000, "study": 100_000, "paper": 1_000_000}
    #: --precision bf16: the hidden layers of the critics (Q, Q^c and their targets; V, V^c),
    #: of the CVAE's encoder and decoder and of the latent safety encoder; their heads (values,
    #: Q values, means and log-stds, the decoder's tanh action), TD targets, advantages, the
    #: AWR weights, expectile, MSE and ELBO terms stay fp32
    bf16_networks = ("q_ens", "q_target", "v_ens", "cvae", "encoder")
    state_attributes = ("q_ens", "q_target", "v_ens", "cvae", "encoder", "critic_optim",
                        "cvae_optim", "encoder_optim")

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        cfg, obs_dim, act_dim = config, spec.obs_dim, spec.act_dim
        for key in ("kl_reduction", "twin_loss_reduction"):  # a typo would mean "sum" silently
            if getattr(cfg, key) not in ("sum", "mean"):
                raise ConfigError(f"{key} is 'sum' or 'mean', not {getattr(cfg, key)!r}")
        self.q_ens = EnsembleMLP(obs_dim + act_dim, 1, cfg.hidden, members=4).to(device)
        self.q_target = copy.deepcopy(self.q_ens).requires_grad_(False)
        self.v_ens = EnsembleMLP(obs_dim, 1, cfg.hidden, members=2).to(device)
        self.cvae = CVAE(obs_dim, act_dim, cfg.latent_dim, cfg.hidden,
                         cfg.vae_log_std_bounds).to(device)
        self.encoder = LatentSafetyEncoder(obs_dim, cfg.latent_dim, cfg.hidden,
                                           cfg.encoder_log_std_bounds).to(device)
        # Adam is per-parameter, so one optimizer over all critics equals one per network
        self.critic_optim = torch.optim.Adam([*self.q_ens.parameters(), *self.v_ens.parameters()],
                                             lr=cfg.lr)
        self.cvae_optim = torch.optim.Adam(self.cvae.parameters(), lr=cfg.lr)
        self.encoder_optim = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr)
        self.policy = self.policies[-1]
        # a run option, not a hyperparameter: it changes where the work runs, not what it is
        self.parallel_updates = device == "cpu" and torch.get_num_threads() >= 2
        self._actor_thread: ThreadPoolExecutor | None = None

    @property
    def safe_epsilon(self) -> float:
        cfg = self.config
        return cfg.epsilon if cfg.safe_epsilon is None else cfg.safe_epsilon

    def train_step(self, batch):
        obs, actions = batch["observations"], batch["actions"]
        # lines 5-12 (forward): every critic loss and both advantages, from pre-update values
        loss, reward_adv, cost_adv, mask, stats = critic_losses(
            self.config, self.q_ens, self.v_ens, self.q_target, batch)
        if not self.parallel_updates:
            self._step_critics(loss)  # lines 5-12
            stats |= self._update_actor(obs, actions, cost_adv, mask, reward_adv)  # 13-16
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one core for each side
            try:
                if self._actor_thread is None:
                    self._actor_thread = ThreadPoolExecutor(1, thread_name_prefix="lspc-actor")
                actor = self._actor_thread.submit(self._update_actor, obs, actions, cost_adv,
                                                  mask, reward_adv)
                self._step_critics(loss)
                stats |= actor.result()
            finally:
                torch.set_num_threads(threads)
        soft_update(self.q_target, self.q_ens, self.config.polyak_tau)  # lines 17-19
        return stats

    def train_critics(self, batch) -> dict[str, float]:
        """Lines 5-12 and 17-19 alone: the critics as train_step trains them, the policy left
        untrained (scripts/cost_value_fate.py follows V^c so, for thousands of steps a
        minute). The policy's updates read the critics' pre-update values only and never
        the target networks, so the critics' path is the same with or without them."""
        loss, *_, stats = critic_losses(self.config, self.q_ens, self.v_ens, self.q_target,
                                        batch)
        self._step_critics(loss)
        soft_update(self.q_target, self.q_ens, self.config.polyak_tau)
        return stats

    def _step_critics(self, loss):
        optimizer_step(self.critic_optim, loss)

    def _update_actor(self, obs, actions, cost_adv, mask, reward_adv):
        stats = self._update_cvae(obs, actions, cost_adv, mask)  # lines 13-14
        return stats | self._update_encoder(obs, actions, reward_adv)  # lines 15-16

    def _update_cvae(self, obs, actions, cost_adv, mask):
        loss, stats = cvae_loss(self.config, self.cvae, obs, actions, cost_adv, mask)
        optimizer_step(self.cvae_optim, loss)
        return stats

    def _update_encoder(self, obs, actions, reward_adv):
        """delta only: gradients flow through the decoder without touching its parameters."""
        loss, stats = latent_encoder_loss(self.config, self.encoder, self.cvae, obs, actions,
                                          reward_adv)
        step_only(self.encoder_optim, self.encoder, loss)
        return stats

    # ---- acting -------------------------------------------------------------------------
    def latent(self, obs: torch.Tensor, policy: str) -> torch.Tensor:
        """z of LSPC-S or LSPC-O (either name, or the class's record name of it)."""
        cfg = self.config
        safe, optimal = self.policies  # what records call them: LSPC-S / LSPC-O (-code)
        if policy in ("LSPC-S", safe):  # the prior N(0, I) restricted to the box
            z = torch.randn(obs.shape[0], cfg.latent_dim, device=obs.device)
            return z.clamp(-self.safe_epsilon, self.safe_epsilon)
        if policy in ("LSPC-O", optimal):
            mean, log_std = self.encoder(obs)
            u = (mean + log_std.exp() * torch.randn_like(mean) if cfg.optimal_samples_latent
                 else mean)
            return cfg.epsilon * torch.tanh(u)
        raise ValueError(f"{type(self).__name__} has policies {safe} and {optimal}, "
                         f"not {policy!r}")

    def _act_tensor(self, obs, policy: str | None = None):
        """The decoder at the latent of `policy` (LSPC-S or LSPC-O; None: self.policy)."""
        return self.cvae.decode(obs, self.latent(obs, policy or self.policy))

    @torch.no_grad()
    def latent_view(self, batch: dict) -> dict[str, torch.Tensor]:
        """What a trained run holds for a batch of dataset transitions (tensors, as a sampler
        gives them): where the CVAE puts each action (q(z | s, a)'s mean and std), its cost
        advantage A_c and the weight w_c of eq. 43 the critics as they stand give it, the latents LSPC-S and LSPC-O take at
        its state, and the squared action error (summed over action dimensions) of the decoder
        at the action's own code, at LSPC-S's and at LSPC-O's latent. `bench latent` reads it."""
        cfg = self.config
        obs, actions = batch["observations"], batch["actions"]
        _, _, cost_adv, mask, _ = critic_losses(cfg, self.q_ens, self.v_ens, self.q_target, batch)
        mean, log_std = self.cvae.encode(obs, actions)
        safe, optimal = self.policies
        out = {"code_mean": mean, "code_std": log_std.exp(), "cost_advantage": cost_adv,
               "cost_weight": cost_weights(cfg, cost_adv, mask),
               "z_safe": self.latent(obs, safe), "z_optimal": self.latent(obs, optimal)}
        for name, z in (("code", mean), ("safe", out["z_safe"]), ("optimal", out["z_optimal"])):
            out[f"error_{name}"] = (self.cvae.decode(obs, z) - actions).square().sum(-1)
        return {key: value.float() for key, value in out.items()}

    @torch.no_grad()
    def action_space_samples(self, obs: np.ndarray, n: int = 1000) -> dict:
        """For one state (paper Fig. 3): n actions of the unrestricted CVAE policy (z ~ N(0, I)),
        n of the restricted one (z = eps_S tanh(u), u ~ N(0, I): the authors' sample_n_actions,
        which squashes where LSPC-S acting clamps, so the samples fill the box's interior
        rather than piling on its faces), n of the latent safety encoder (z = eps tanh(u),
        u ~ mu_delta(s): the code's LSPC-O samples, for the density plot) and the action
        LSPC-O takes; each with its reward value Q_r = min(Q1, Q2)."""
        cfg = self.config
        state = self.to_device(obs).reshape(1, -1)
        states = state.expand(n, -1)
        z_free = torch.randn(n, cfg.latent_dim, device=self.device)
        z_safe = self.safe_epsilon * torch.tanh(torch.randn(n, cfg.latent_dim, device=self.device))
        mean, log_std = self.encoder(states)
        z_opt = cfg.epsilon * torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
        out = {"cvae": self.cvae.decode(states, z_free),
               "lspc_s": self.cvae.decode(states, z_safe),
               "lspc_o_samples": self.cvae.decode(states, z_opt),
               "lspc_o": self.cvae.decode(state, self.latent(state, "LSPC-O"))}
        result = {}
        for name, actions in out.items():
            q = self.q_ens(torch.cat([states[: len(actions)], actions], -1)).squeeze(-1)
            result[name] = actions.cpu().numpy()
            result[f"{name}_q"] = torch.minimum(q[0], q[1]).cpu().numpy()
        return result
