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


class EnsembleMLP(nn.Module):
    """`members` independent MLPs evaluated as one batched matmul per layer.

    Input (B, in) is shared by every member, or (members, B, in) gives each its own;
    output is (members, B, out). Each member is initialised exactly as an nn.Linear stack
    would be, so an ensemble of two is a fused twin critic.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...], members: int):
        super().__init__()
        sizes = (in_dim, *hidden, out_dim)
        self.members = members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers = [nn.Linear(a, b) for _ in range(members)]
            self.weights.append(nn.Parameter(torch.stack([l.weight.T for l in layers])))
            self.biases.append(nn.Parameter(torch.stack([l.bias[None] for l in layers])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(self.members, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x

    @torch.no_grad()
    def load_members(self, modules: list[nn.Sequential]) -> None:
        """Copy the Linear layers of plain MLPs (one per member) into the ensemble."""
        for m, module in enumerate(modules):
            linears = [layer for layer in module if isinstance(layer, nn.Linear)]
            for w, b, linear in zip(self.weights, self.biases, linears):
                w[m].copy_(linear.weight.T)
                b[m, 0].copy_(linear.bias)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, polyak_tau: float) -> None:
    """target <- (1 - tau) target + tau source, in place (one fused op over all tensors)."""
    target_params = list(target.parameters())
    torch._foreach_lerp_(target_params, list(source.parameters()), polyak_tau)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2: mean |xi - 1(u < 0)| u^2 (IQL's L_2^xi)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def exp_weights(advantage: torch.Tensor, inverse_temperature: float,
                max_weight: float) -> torch.Tensor:
    """AWR weights min(exp(beta * A), max_weight), with no gradient."""
    return torch.exp(inverse_temperature * advantage.detach()).clamp(max=max_weight)
