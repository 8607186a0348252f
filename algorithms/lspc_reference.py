"""A straightforward LSPC training step: the yardstick for algorithms/lspc.py.

Written the way the authors' code, CORL and OSRL write such methods: a separate nn.Module and
Adam optimizer per network, one forward pass per loss, updates in the order of Algorithm 2.
It is not a registered method. It serves two purposes:
- tests/test_algorithms/test_lspc.py checks that the fused LSPC step computes the same update
  from the same weights and the same random draws (the fusion changes the speed, not the math);
- `python -m bench speed` and benchmarks/ time it beside the fused step in the same run.

It is self-contained: the CVAE, the latent safety encoder, the expectile loss, the AWR weights
and the soft update are written again here in a few lines each, so that a mistake in the
shared pieces (algorithms/nets.py, algorithms/lspc.py) shows up as a difference instead of
being made on both sides. Only `mlp` (a stack of Linear and ReLU layers, plain nn.ReLU here
as those codebases write it) is shared; the CVAE
and the encoder keep the fused modules' parameter names, so weights copy over by state dict.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.lspc import Config
from algorithms.nets import mlp


def asymmetric_l2(u: torch.Tensor, xi: float) -> torch.Tensor:
    """IQL's L_2^xi(u) = |xi - 1(u < 0)| u^2, averaged."""
    return (torch.abs(xi - (u < 0).float()) * u ** 2).mean()


def awr_weights(advantage: torch.Tensor, beta: float, cap: float) -> torch.Tensor:
    return torch.clamp(torch.exp(beta * advantage.detach()), max=cap)


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    for t, s in zip(target.parameters(), source.parameters()):
        t.copy_((1.0 - tau) * t + tau * s)


class ReferenceCVAE(nn.Module):
    """q(z | s, a) = N(mean, exp(log_std)^2), log_std clamped; decoder tanh(f(s, z))."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config):
        super().__init__()
        self.encoder = mlp(obs_dim + act_dim, 2 * cfg.latent_dim, cfg.hidden, nn.ReLU)
        self.decoder = mlp(obs_dim + cfg.latent_dim, act_dim, cfg.hidden, nn.ReLU)
        self.latent_dim, self.bounds = cfg.latent_dim, cfg.vae_log_std_bounds

    def encode(self, obs, actions):
        out = self.encoder(torch.cat([obs, actions], 1))
        mean, log_std = out[:, :self.latent_dim], out[:, self.latent_dim:]
        return mean, torch.clamp(log_std, *self.bounds)

    def decode(self, obs, z):
        return torch.tanh(self.decoder(torch.cat([obs, z], 1)))  # max_action 1


class ReferenceSafetyEncoder(nn.Module):
    """mu_delta(. | s) = N(mean, exp(log_std)^2), log_std clamped."""

    def __init__(self, obs_dim: int, cfg: Config):
        super().__init__()
        self.net = mlp(obs_dim, 2 * cfg.latent_dim, cfg.hidden, nn.ReLU)
        self.latent_dim, self.bounds = cfg.latent_dim, cfg.encoder_log_std_bounds

    def forward(self, obs):
        out = self.net(obs)
        return out[:, :self.latent_dim], torch.clamp(out[:, self.latent_dim:], *self.bounds)


class ReferenceLSPC:
    def __init__(self, obs_dim: int, act_dim: int, cfg: Config, device: str = "cpu"):
        self.cfg = cfg

        def critic(in_dim):
            return mlp(in_dim, 1, cfg.hidden, nn.ReLU).to(device)

        self.q1, self.q2 = critic(obs_dim + act_dim), critic(obs_dim + act_dim)
        self.qc1, self.qc2 = critic(obs_dim + act_dim), critic(obs_dim + act_dim)
        self.v, self.vc = critic(obs_dim), critic(obs_dim)
        self.targets = {name: copy.deepcopy(getattr(self, name)).requires_grad_(False)
                        for name in ("q1", "q2", "qc1", "qc2")}
        self.cvae = ReferenceCVAE(obs_dim, act_dim, cfg).to(device)
        self.encoder = ReferenceSafetyEncoder(obs_dim, cfg).to(device)

        def adam(*modules):
            return torch.optim.Adam([p for m in modules for p in m.parameters()], lr=cfg.lr)

        self.q_optim, self.qc_optim = adam(self.q1, self.q2), adam(self.qc1, self.qc2)
        self.v_optim, self.vc_optim = adam(self.v), adam(self.vc)
        self.cvae_optim, self.encoder_optim = adam(self.cvae), adam(self.encoder)

    @staticmethod
    def _q(net, obs, actions):
        return net(torch.cat([obs, actions], -1)).squeeze(-1)

    def _cost(self, values):
        return values.clamp(min=0.0) if self.cfg.clamp_cost_values else values

    def _twin(self, net1, net2, obs, actions, backup):
        losses = (F.mse_loss(self._q(net1, obs, actions), backup)
                  + F.mse_loss(self._q(net2, obs, actions), backup))
        return losses / 2 if self.cfg.twin_loss_reduction == "mean" else losses

    def train_step(self, batch: dict) -> dict:
        cfg, t = self.cfg, self.targets
        obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        done = batch["terminals"]
        if cfg.done_on_timeout:
            done = done + batch["timeouts"]
            if cfg.clip_done:
                done = torch.clamp(done, max=1.0)
        with torch.no_grad():
            next_v = self.v(next_obs).squeeze(-1)
            next_vc = self._cost(self.vc(next_obs).squeeze(-1))
        # eq. 39: V on the min of the target Qs
        with torch.no_grad():
            target_q = torch.min(self._q(t["q1"], obs, actions), self._q(t["q2"], obs, actions))
        v = self.v(obs).squeeze(-1)
        reward_adv = (target_q - v).detach()
        self._step(self.v_optim, asymmetric_l2(target_q - v, cfg.expectile))
        # eq. 40
        q_loss = self._twin(self.q1, self.q2, obs, actions,
                            batch["rewards"] + cfg.gamma * (1 - done) * next_v)
        self._step(self.q_optim, q_loss)
        # eq. 41: V^c on the max of the target Q^cs
        with torch.no_grad():
            target_qc = self._cost(torch.max(self._q(t["qc1"], obs, actions),
                                             self._q(t["qc2"], obs, actions)))
        vc_raw = self.vc(obs).squeeze(-1)
        vc = self._cost(vc_raw)
        cost_adv = (vc - target_qc).detach()
        mask = None
        if cfg.safe_value_threshold is not None:
            mask = ((vc.detach() < cfg.safe_value_threshold)
                    & (target_qc < cfg.safe_value_threshold)).float()
        vc_in_loss = vc if cfg.clamp_vc_in_loss else vc_raw  # on top of clamp_cost_values
        self._step(self.vc_optim, asymmetric_l2(vc_in_loss - target_qc, cfg.expectile))
        # eq. 42
        qc_loss = self._twin(self.qc1, self.qc2, obs, actions,
                             batch["costs"] + cfg.gamma * (1 - done) * next_vc)
        self._step(self.qc_optim, qc_loss)
        # eq. 43
        weights = awr_weights(cost_adv, cfg.cost_inverse_temperature, cfg.max_weight)
        if mask is not None:
            weights = weights * mask
        mean, log_std = self.cvae.encode(obs, actions)
        std = torch.exp(log_std)
        z = mean + std * torch.randn_like(std)
        recon = ((self.cvae.decode(obs, z) - actions) ** 2).sum(1)
        kl = 0.5 * (mean ** 2 + std ** 2 - 1.0) - log_std  # KL(q || N(0, I)) per dimension
        kl = kl.mean(1) if cfg.kl_reduction == "mean" else kl.sum(1)
        self._step(self.cvae_optim, (weights * (recon + cfg.kl_coef * kl)).mean())
        # eq. 44: only the encoder's optimizer steps; the decoder's grads are thrown away
        weights = awr_weights(reward_adv, cfg.reward_inverse_temperature, cfg.max_weight)
        mean, log_std = self.encoder(obs)
        z = cfg.epsilon * torch.tanh(mean + torch.exp(log_std) * torch.randn_like(mean))
        error = ((self.cvae.decode(obs, z) - actions) ** 2).sum(1)
        self._step(self.encoder_optim, (weights * error).mean())
        self.cvae_optim.zero_grad(set_to_none=True)
        for name in t:
            polyak(t[name], getattr(self, name), cfg.polyak_tau)
        return {"loss/q": q_loss.detach(), "loss/qc": qc_loss.detach()}

    @staticmethod
    def _step(optim, loss):
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
