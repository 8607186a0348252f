"""A straightforward LSPC training step: the yardstick for algorithms/lspc.py.

Written the way the authors' code, CORL and OSRL write such methods: a separate nn.Module and
Adam optimizer per network, one forward pass per loss, updates in the order of Algorithm 2.
It is not a registered method. It serves two purposes:
- tests/test_lspc.py checks that the fused LSPC step computes the same update from the same
  weights and the same random draws (the fusion changes the speed, not the math);
- `python -m bench speed` and benchmarks/ time it beside the fused step in the same run.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from algorithms.lspc import CVAE, Config, LatentSafetyEncoder
from algorithms.nets import exp_weights, expectile_loss, mlp, soft_update


class ReferenceLSPC:
    def __init__(self, obs_dim: int, act_dim: int, cfg: Config, device: str = "cpu"):
        self.cfg = cfg

        def critic(in_dim):
            return mlp(in_dim, 1, cfg.hidden).to(device)

        self.q1, self.q2 = critic(obs_dim + act_dim), critic(obs_dim + act_dim)
        self.qc1, self.qc2 = critic(obs_dim + act_dim), critic(obs_dim + act_dim)
        self.v, self.vc = critic(obs_dim), critic(obs_dim)
        self.targets = {name: copy.deepcopy(getattr(self, name)).requires_grad_(False)
                        for name in ("q1", "q2", "qc1", "qc2")}
        self.cvae = CVAE(obs_dim, act_dim, cfg.latent_dim, cfg.hidden,
                         cfg.vae_log_std_bounds).to(device)
        self.encoder = LatentSafetyEncoder(obs_dim, cfg.latent_dim, cfg.hidden,
                                           cfg.encoder_log_std_bounds).to(device)

        def adam(*modules):
            return torch.optim.Adam([p for m in modules for p in m.parameters()], lr=cfg.lr)

        self.q_optim, self.qc_optim = adam(self.q1, self.q2), adam(self.qc1, self.qc2)
        self.v_optim, self.vc_optim = adam(self.v), adam(self.vc)
        self.cvae_optim, self.encoder_optim = adam(self.cvae), adam(self.encoder)

    @staticmethod
    def _q(net, obs, actions):
        return net(torch.cat([obs, actions], -1)).squeeze(-1)

    def train_step(self, batch: dict) -> dict:
        cfg, t = self.cfg, self.targets
        obs, actions, next_obs = batch["observations"], batch["actions"], batch["next_observations"]
        done = torch.clamp(batch["terminals"] + batch["timeouts"], max=1.0) \
            if cfg.done_on_timeout else batch["terminals"]
        with torch.no_grad():
            next_v = self.v(next_obs).squeeze(-1)
            next_vc = self.vc(next_obs).squeeze(-1).clamp(min=0.0)
        # eq. 39: V on the min of the target Qs
        with torch.no_grad():
            target_q = torch.min(self._q(t["q1"], obs, actions), self._q(t["q2"], obs, actions))
        v = self.v(obs).squeeze(-1)
        reward_adv = (target_q - v).detach()
        self._step(self.v_optim, expectile_loss(target_q - v, cfg.expectile))
        # eq. 40
        backup = batch["rewards"] + cfg.gamma * (1 - done) * next_v
        q_loss = (F.mse_loss(self._q(self.q1, obs, actions), backup)
                  + F.mse_loss(self._q(self.q2, obs, actions), backup))
        self._step(self.q_optim, q_loss)
        # eq. 41: V^c on the max of the target Q^cs
        with torch.no_grad():
            target_qc = torch.max(self._q(t["qc1"], obs, actions),
                                  self._q(t["qc2"], obs, actions)).clamp(min=0.0)
        vc_raw = self.vc(obs).squeeze(-1)
        vc = vc_raw.clamp(min=0.0)
        cost_adv = (vc - target_qc).detach()
        mask = None
        if cfg.safe_value_threshold is not None:
            mask = ((vc.detach() < cfg.safe_value_threshold)
                    & (target_qc < cfg.safe_value_threshold)).float()
        vc_in_loss = vc if cfg.clamp_vc_in_loss else vc_raw
        self._step(self.vc_optim, expectile_loss(vc_in_loss - target_qc, cfg.expectile))
        # eq. 42
        backup_c = batch["costs"] + cfg.gamma * (1 - done) * next_vc
        qc_loss = (F.mse_loss(self._q(self.qc1, obs, actions), backup_c)
                   + F.mse_loss(self._q(self.qc2, obs, actions), backup_c))
        self._step(self.qc_optim, qc_loss)
        # eq. 43
        weights = exp_weights(cost_adv, cfg.cost_inverse_temperature, cfg.max_weight)
        if mask is not None:
            weights = weights * mask
        mean, log_std = self.cvae.encode(obs, actions)
        std = log_std.exp()
        z = mean + std * torch.randn_like(std)
        recon = (self.cvae.decode(obs, z) - actions).square().sum(-1)
        kl = -0.5 * (1.0 + 2.0 * log_std - mean.square() - std.square())
        kl = kl.mean(-1) if cfg.kl_reduction == "mean" else kl.sum(-1)
        self._step(self.cvae_optim, (weights * (recon + cfg.kl_coef * kl)).mean())
        # eq. 44: only the encoder's optimizer steps; the decoder's grads are thrown away
        weights = exp_weights(reward_adv, cfg.reward_inverse_temperature, cfg.max_weight)
        mean, log_std = self.encoder(obs)
        z = cfg.epsilon * torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
        error = (self.cvae.decode(obs, z) - actions).square().sum(-1)
        self._step(self.encoder_optim, (weights * error).mean())
        self.cvae_optim.zero_grad(set_to_none=True)
        for name in t:
            soft_update(t[name], getattr(self, name), cfg.polyak_tau)
        return {"loss/q": q_loss.detach(), "loss/qc": qc_loss.detach()}

    @staticmethod
    def _step(optim, loss):
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
