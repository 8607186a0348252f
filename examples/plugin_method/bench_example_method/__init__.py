"""A worked example of a method from outside the harness: behaviour cloning with a linear policy.

It meets the same small interface as every method in algorithms/ (build from the task's spec,
a config, the threshold and a seed; train_step; act; state_dict/load_state_dict), so `bench
run` plans, trains, evaluates and records it, and `bench report` puts it beside the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.base import OfflineMethod


@dataclass(frozen=True)
class Config:
    lr: float = 1e-2
    """Adam learning rate"""
    batch_size: int = 256
    """transitions per step"""


class LinearBC(OfflineMethod):
    name = "Linear-BC"
    Config = Config
    threshold_agnostic = True
    profile_steps = {"smoke": 20, "quick": 1000, "study": 20_000, "paper": 20_000}

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        self.policy_net = torch.nn.Linear(spec.obs_dim, spec.act_dim).to(device)
        self.optim = torch.optim.Adam(self.policy_net.parameters(), lr=config.lr)

    def train_step(self, batch):
        predicted = torch.tanh(self.policy_net(batch["observations"]))
        loss = torch.nn.functional.mse_loss(predicted, batch["actions"])
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return {"loss/actor": loss.detach()}

    @torch.no_grad()
    def act(self, obs):
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return torch.tanh(self.policy_net(obs)).cpu().numpy()

    def state_dict(self):
        return {"policy": self.policy_net.state_dict(), "optim": self.optim.state_dict()}

    def load_state_dict(self, state):
        self.policy_net.load_state_dict(state["policy"])
        self.optim.load_state_dict(state["optim"])
