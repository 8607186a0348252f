"""Behaviour cloning baselines of DSRL/OSRL: BC-All and BC-Safe.

Reference code read for facts: OSRL (osrl/algorithms/bc.py, examples/configs/bc_configs.py):
a deterministic tanh MLP actor [256, 256] regressed on the data's actions with mean squared
error, Adam 1e-3, batch 512, 100k steps (200k on the nine MetaDrive tasks, their
update_steps in bc_configs). BC-All learns from every trajectory; BC-Safe only from
the trajectories whose (undiscounted) cost return is within the threshold, so it is trained
once per threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algorithms.base import TorchMethod, paper_steps_on
from algorithms.nets import TanhActor
from tasks.datasets import split_trajectories


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = (256, 256)
    """actor hidden sizes (OSRL a_hidden_sizes)"""
    actor_lr: float = 1e-3
    """Adam learning rate (OSRL actor_lr)"""
    batch_size: int = 512
    """transitions per step (OSRL batch_size)"""


def bc_loss(actor: TanhActor, obs: torch.Tensor, actions: torch.Tensor):
    """Mean squared error between the actor's action and the data's action."""
    loss = F.mse_loss(actor(obs), actions)
    return loss, {"loss/actor": loss.detach()}


class BCAll(TorchMethod):
    """BC on the whole dataset: threshold-agnostic."""

    Config = Config
    threshold_agnostic = True
    profile_steps = {"smoke": 20, "quick": 2500, "study": 30_000, "paper": 100_000}
    task_steps = paper_steps_on("metadrive", 200_000)  # OSRL bc_configs' MetaDrive update_steps
    graph_safe = True
    #: --precision bf16: the actor's hidden layers; its tanh head and the MSE stay fp32
    bf16_networks = ("actor",)
    state_attributes = ("actor", "optim")

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        self.actor = TanhActor(spec.obs_dim, spec.act_dim, config.hidden).to(device)
        self.optim = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)

    def train_step(self, batch):
        loss, stats = bc_loss(self.actor, batch["observations"], batch["actions"])
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return stats

    def _act_tensor(self, obs):
        return self.actor(obs)


class BCSafe(BCAll):
    """BC on the trajectories whose cost return is <= the threshold: one model per threshold."""

    threshold_agnostic = False

    def training_data(self, arrays):
        trajectories = split_trajectories(arrays)
        keep = trajectories.cost_returns <= self.threshold
        if not keep.any():
            raise ValueError(
                f"BC-Safe on {self.spec.name}: no trajectory has a cost return <= "
                f"{self.threshold:g} (lowest {trajectories.cost_returns.min():.1f}); the dataset "
                "holds no safe behaviour to clone")
        mask = trajectories.mask(keep, len(arrays["rewards"]))
        return {key: value[mask] for key, value in arrays.items()}
