"""Network pieces shared by the methods (written once, used by every method file)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...], activation=nn.ReLU,
        output_activation: type[nn.Module] | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    sizes = (in_dim, *hidden)
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


class TanhActor(nn.Module):
    """Deterministic actor a = max_action * tanh(f(s)), as OSRL's MLPActor."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], max_action: float = 1.0):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, output_activation=nn.Tanh)
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(obs)
