"""Network pieces shared by the methods (written once, used by every method file).

Precision (`--precision bf16`). A method names, once, the networks whose matmuls may run in
bfloat16 (its class attribute `bf16_networks`, consumed by OfflineMethod.set_precision, which
sets each network's `compute_dtype`). Within such a network the rule is the same everywhere:
- its hidden layers (every Linear but the last, with their activations; a transformer's or a
  residual network's blocks) run under torch.autocast in bf16: their matmuls take bf16
  copies of the fp32 weights and return bf16 activations;
- its last layer, the head that gives a value, a Q value, an action, a log-std or a noise
  estimate, runs in fp32 on the fp32 copy of the last hidden activation, so every output of
  a network is fp32; so do LayerNorms and residual streams (a bf16 branch added to an fp32
  stream gives fp32), and the attention of algorithms/transformer.py (softmax included);
- everything computed from the outputs is outside every network, hence fp32: TD targets,
  advantages and exponentiated AWR weights, expectile and MSE losses, log-probabilities,
  KL terms, the DDPM noise schedule, the Lagrangian and dual updates;
- the weights stay fp32 (the master copy: gradients arrive in fp32 through autocast's casts)
  and so does every optimizer's state.
With `compute_dtype` None (fp32, the default) every network computes exactly what it did
before precision existed, operation for operation.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

#: ReLU in place: the same values and gradients (its backward reads its output), less memory
#: traffic on large batches (the 5120-row VAE and actor batches of BEAR-Lag)
RELU = functools.partial(nn.ReLU, inplace=True)

#: --precision: the dtype of the hidden layers' matmuls (None: the weights' own, fp32)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def low_precision(dtype: torch.dtype | None, like: torch.Tensor):
    """Autocast to `dtype` on the device of `like` (nothing where dtype is None). The cast
    weights are not cached across calls (cache_enabled=False): each forward casts its own,
    which keeps a CUDA graph's capture self-contained."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(like.device.type, dtype=dtype, cache_enabled=False)


def full_precision(like: torch.Tensor):
    """No autocast on the device of `like`: an fp32 island inside a bf16 network."""
    return torch.autocast(like.device.type, enabled=False)


def set_compute_dtype(module: nn.Module, dtype: torch.dtype | None) -> int:
    """Set `compute_dtype` on the outermost networks in `module` that have one (a network
    that has one decides for the networks inside it); returns how many were set."""
    if hasattr(module, "compute_dtype"):
        module.compute_dtype = dtype
        return 1
    return sum(set_compute_dtype(child, dtype) for child in module.children())


class MLP(nn.Sequential):
    """Linear layers with activations between them (and after the last, if given). With a
    compute_dtype, every layer before the last Linear runs in it; the last Linear and what
    follows it run in fp32 (the module's docstring, "Precision")."""

    compute_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compute_dtype is None:
            return super().forward(x)
        head = max(i for i, layer in enumerate(self) if isinstance(layer, nn.Linear))
        with low_precision(self.compute_dtype, x):
            for layer in list(self)[:head]:
                x = layer(x)
        x = x.float()
        for layer in list(self)[head:]:
            x = layer(x)
        return x


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...], activation=RELU,
        output_activation: type[nn.Module] | None = None) -> MLP:
    layers: list[nn.Module] = []
    sizes = (in_dim, *hidden)
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(sizes[-1], out_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return MLP(*layers)


class TanhActor(nn.Module):
    """Deterministic actor a = max_action * tanh(f(s)), as OSRL's MLPActor."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...],
                 max_action: float = 1.0):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, output_activation=nn.Tanh)
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * self.net(obs)


class EnsembleMLP(nn.Module):
    """`members` independent MLPs with stacked weights, one optimizer step for all.

    Input (B, in) is shared by every member, or (members, B, in) gives each its own;
    output is (members, B, out). Each member is initialised exactly as an nn.Linear stack
    would be, so an ensemble of two is a fused twin critic. Each layer is one batched matmul,
    except the hidden layers of a bf16 ensemble on the CPU, which run one member at a time.
    """

    compute_dtype: torch.dtype | None = None

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...], members: int):
        super().__init__()
        sizes = (in_dim, *hidden, out_dim)
        self.members = members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers = [nn.Linear(a, b) for _ in range(members)]
            self.weights.append(nn.Parameter(torch.stack([layer.weight.T for layer in layers])))
            self.biases.append(nn.Parameter(torch.stack([layer.bias[None] for layer in layers])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        with low_precision(self.compute_dtype, x):  # the hidden layers
            if x.device.type == "cpu" and self.compute_dtype is not None:
                # bf16 on the CPU: one member at a time (addmm), faster than bmm's backward
                # over the expanded shared input. Not in fp32: its forward is the same, but
                # some gradients are summed in another order (the last bits of an input
                # gradient past two members, of a first-layer weight gradient at large
                # batches on two threads), and fp32 keeps the numbers it always had
                inputs = [x] * self.members if x.dim() == 2 else x.unbind(0)
                x = torch.stack([self._hidden(h, layers)
                                 for h, layers in zip(inputs, self._member_layers())])
            else:
                x = x.expand(self.members, *x.shape) if x.dim() == 2 else x
                for i in range(last):
                    # ReLU in place: the same values and gradients (baddbmm's backward does
                    # not read its output), one pass less over the activations
                    x = torch.baddbmm(self.biases[i], x, self.weights[i]).relu_()
        # the head, in its weights' dtype (fp32: the master copy; float64 in an oracle test)
        head = self.weights[last]
        return torch.baddbmm(self.biases[last], x.to(head.dtype), head)

    def _member_layers(self) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Each member's hidden layers as (weight, bias) views. One unbind per stacked
        tensor: its backward stacks the members' gradients, where indexing each member
        would scatter each gradient into a zero tensor the size of the whole stack and sum
        those (the same numbers, less memory traffic)."""
        per_layer = [zip(w.unbind(0), b.squeeze(1).unbind(0))
                     for w, b in zip(self.weights[:-1], self.biases[:-1])]
        return [list(layers) for layers in zip(*per_layer)]

    def _hidden(self, x: torch.Tensor, layers) -> torch.Tensor:
        """One member's last hidden activation, from its (weight, bias) per hidden layer."""
        for weight, bias in layers:
            x = torch.addmm(bias, x, weight).relu_()
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


def per_step_threshold(cost_limit: float, gamma: float, episode_len: int) -> float:
    """kappa = C (1 - gamma^L) / (1 - gamma) / L (OSRL's qc_thres): the discounted cost value
    sum_{t<L} gamma^t C / L of spending the episode's limit C evenly over L steps, per step;
    the bound on Qc (BCQ-Lag, BEAR-Lag, CPQ) and on the cost estimate (COptiDICE)."""
    return cost_limit * (1.0 - gamma**episode_len) / (1.0 - gamma) / episode_len


def done_flags(batch, on_timeout: bool = True, clip: bool = True) -> torch.Tensor:
    """done = terminal or timeout (OSRL's TransitionDataset), or terminal only; `clip` False
    leaves the sum terminal + timeout, 2 where both are set (LSPC's authors' code)."""
    done = batch["terminals"]
    if not on_timeout:
        return done
    return torch.clamp(done + batch["timeouts"], max=1.0) if clip else done + batch["timeouts"]


class PIDLagrangian:
    """The cost multiplier from a PID controller on e = mean(Qc) - kappa (Stooke et al.,
    "Responsive Safety in Reinforcement Learning by PID Lagrangian Methods", ICML 2020), as
    OSRL's LagrangianPIDController:

        I <- max(0, I + e),  lambda = max(0, KP max(0, e) + KI I + KD max(0, e - e_prev)),

    with I = e_prev = 0 at the start. State is kept in tensors (no host sync per step),
    updated in place, so that a CUDA graph's replays carry it forward.
    """

    def __init__(self, kp: float, ki: float, kd: float, threshold: float, device="cpu"):
        self.kp, self.ki, self.kd, self.threshold = kp, ki, kd, threshold
        self.error_prev = torch.zeros((), device=device)
        self.integral = torch.zeros((), device=device)

    @torch.no_grad()
    def update(self, qc: torch.Tensor) -> torch.Tensor:
        """One controller step on the batch's cost values; returns the new multiplier."""
        error = (qc - self.threshold).mean()
        rise = F.relu(error - self.error_prev)
        self.integral.copy_(F.relu(self.integral + error))
        self.error_prev.copy_(error)
        return F.relu(self.kp * F.relu(error) + self.ki * self.integral + self.kd * rise)

    def state_dict(self) -> dict:
        return {"error_prev": self.error_prev.clone(), "integral": self.integral.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.error_prev = state["error_prev"].clone().to(self.error_prev.device)
        self.integral = state["integral"].clone().to(self.integral.device)


@torch.no_grad()
def ensemble_eval(net, inputs) -> torch.Tensor:
    """(members, N, out) outputs of an ensemble without gradient, for target values.

    `inputs`: one (N, in) tensor for every member, a (members, N, in) tensor or a list with
    one (N, in) tensor per member. On the CPU an EnsembleMLP runs one member at a time with
    addmm and in-place ReLUs: the same numbers as the fused forward, about twice as fast at
    thousands of rows, whose fused (members, rows, 256) activations fall out of cache.
    Anything else (a stand-in callable in tests, other devices) is called on the inputs,
    stacked if they are a list.
    """
    if not isinstance(net, EnsembleMLP) or net.weights[0].device.type != "cpu":
        return net(inputs if torch.is_tensor(inputs) else torch.stack(inputs))
    shared = torch.is_tensor(inputs) and inputs.dim() == 2
    last = len(net.weights) - 1
    outputs = []
    for m in range(net.members):
        h = inputs if shared else inputs[m]
        with low_precision(net.compute_dtype, h):  # the hidden layers
            h = net._hidden(h, [(w[m], b[m, 0]) for w, b in zip(net.weights[:last],
                                                                 net.biases[:last])])
        # the head; biases are (members, 1, out)
        head = net.weights[last][m]
        outputs.append(torch.addmm(net.biases[last][m, 0], h.to(head.dtype), head))
    return torch.stack(outputs)


class SquashedGaussianActor(nn.Module):
    """pi(a | s) = tanh(N(mu(s), sigma(s))), as OSRL's SquashedGaussianMLPActor: a ReLU trunk,
    one linear head for mu and log sigma (log sigma clamped to `log_std_bounds`)."""

    compute_dtype: torch.dtype | None = None  # the trunk's, where set

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...],
                 log_std_bounds: tuple[float, float] = (-20.0, 2.0)):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden[-1], hidden[:-1], RELU, output_activation=RELU)
        self.head = nn.Linear(hidden[-1], 2 * act_dim)  # mean and log std
        self.log_std_bounds = log_std_bounds

    def forward(self, obs: torch.Tensor):
        """Mean and clamped log std of the pre-tanh Gaussian."""
        with low_precision(self.compute_dtype, obs):  # the trunk
            hidden = self.trunk(obs)
        mean, log_std = self.head(hidden.to(self.head.weight.dtype)).chunk(2, -1)
        return mean, log_std.clamp(*self.log_std_bounds)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """A reparameterised action tanh(mu + sigma eps)."""
        mean, log_std = self(obs)
        return torch.tanh(mean + log_std.exp() * torch.randn_like(mean))

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action tanh(mu(s))."""
        return torch.tanh(self(obs)[0])


class VAE(nn.Module):
    """The conditional VAE of the behaviour policy of BCQ and BEAR, as OSRL's VAE (two ReLU
    hidden layers in the encoder and in the decoder).

    Encoder (s, a) -> (mean, log std clamped to `log_std_bounds`); decoder (s, z) -> pre-tanh
    action (`decode_raw`, what BEAR's MMD compares), `decode` = max_action * tanh of it.
    Prior samples z ~ N(0, I) are clipped to [-latent_clip, latent_clip] (OSRL's decode).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, latent_dim: int,
                 max_action: float = 1.0, log_std_bounds: tuple[float, float] = (-4.0, 15.0),
                 latent_clip: float = 0.5):
        super().__init__()
        self.encoder = mlp(obs_dim + act_dim, 2 * latent_dim, (hidden, hidden), RELU)
        self.decoder = mlp(obs_dim + latent_dim, act_dim, (hidden, hidden), RELU)
        self.latent_dim, self.max_action = latent_dim, max_action
        self.log_std_bounds, self.latent_clip = log_std_bounds, latent_clip

    def encode(self, obs, actions):
        mean, log_std = self.encoder(torch.cat([obs, actions], -1)).chunk(2, -1)
        return mean, log_std.clamp(*self.log_std_bounds)

    def prior(self, n: int, device) -> torch.Tensor:
        """(n, latent) samples z ~ N(0, I) clipped to [-c, c] (BCQ's decoder sampling)."""
        z = torch.randn(n, self.latent_dim, device=device)
        return z.clamp(-self.latent_clip, self.latent_clip)

    def decode_raw(self, obs, z):
        """The decoder's output before the tanh."""
        return self.decoder(torch.cat([obs, z], -1))

    def decode(self, obs, z=None):
        """max_action * tanh(decoder(s, z)), z from the clipped prior when not given."""
        if z is None:
            z = self.prior(obs.shape[0], obs.device)
        return self.max_action * torch.tanh(self.decode_raw(obs, z))


def gaussian_kl(mean: torch.Tensor, log_std: torch.Tensor,
                std: torch.Tensor | None = None) -> torch.Tensor:
    """KL(N(mean, sigma^2) || N(0, 1)) per dimension, -0.5 (1 + 2 log sigma - mean^2 - sigma^2);
    each caller reduces it its own way. sigma^2 is `std` squared where the caller passes the
    std = exp(log_std) it sampled z with (the VAE losses: one node, so the gradients of the
    sample and of the KL meet there as they always have), exp(2 log_std) where it passes none
    (CPQ's OOD score, as OSRL writes it; not bitwise the square of exp(log_std))."""
    # one expression, in the callers' order of operations (the autograd graph is theirs too)
    return -0.5 * (1.0 + 2.0 * log_std - mean.square()
                   - ((2.0 * log_std).exp() if std is None else std.square()))


def vae_loss(kl_coef: float, vae: VAE, obs, actions):
    """mean (G(s, z) - a)^2 + beta * mean KL(q(z | s, a) || N(0, I)), z = mu + sigma eps, both
    means over elements (OSRL's vae_loss; KL averaged over latent dimensions and the batch)."""
    mean, log_std = vae.encode(obs, actions)
    std = log_std.exp()
    z = mean + std * torch.randn_like(std)
    recon = F.mse_loss(vae.decode(obs, z), actions)
    kl = gaussian_kl(mean, log_std, std).mean()
    loss = recon + kl_coef * kl
    return loss, {"loss/vae": loss.detach(), "vae/recon": recon.detach(), "vae/kl": kl.detach()}


def optimizer_step(optim: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """zero_grad, backward, step: one network's (or one fused group's) update."""
    optim.zero_grad(set_to_none=True)
    loss.backward()
    optim.step()


def step_only(optim: torch.optim.Optimizer, module: nn.Module, loss: torch.Tensor) -> None:
    """Update `module` alone on `loss`: its gradients flow through other networks' activations
    (a critic judging an actor, a decoder under a latent policy) without being computed for,
    or accumulated into, those networks' parameters."""
    params = list(module.parameters())
    for param, grad in zip(params, torch.autograd.grad(loss, params)):
        param.grad = grad
    optim.step()


def scale_batch(batch: dict, reward_scale: float, cost_scale: float) -> dict:
    """OSRL's reward_scale / cost_scale applied to a batch (a new dict; tensors not modified)."""
    return {**batch, "rewards": batch["rewards"] * reward_scale,
            "costs": batch["costs"] * cost_scale}
