"""FISOR: FeasIbility-guided Safe Offline RL (Zheng, Li, Yu, Yang, Li, Zhan & Liu, "Safe Offline
Reinforcement Learning with Feasibility-Guided Diffusion Model", ICLR 2024), a PyTorch port.

Three decoupled supervised problems, then a diffusion policy:
1. the largest feasible region by Hamilton-Jacobi reachability: h(s) > 0 where the constraint
   is violated; Q_h regresses on the feasible Bellman target (1 - gamma) h(s) + gamma
   max(h(s), V_h(s')), and V_h on Q_h by *reversed* expectile regression (V_h tends to the
   lowest Q_h of the data's actions, a minimum over in-distribution actions); V_h(s) <= 0 is
   feasible;
2. reward critics Q_r, V_r by IQL (expectile regression of V_r on Q_r);
3. the actor pi*(a|s) ~ pi_beta(a|s) w(s, a), extracted by a DDPM trained with weighted
   noise regression: w = exp(alpha_r A_r) where the state is feasible, w = exp(-alpha_h A_h) =
   exp(alpha_h (V_h - Q_h)) where it is not (safety first, reward only where safety is assured).
At evaluation N actions are sampled and the one with the lowest Q_h is taken. FISOR enforces
a hard constraint (zero violation), so it has no cost threshold: one model per task and seed.

Reference code read for facts: ZhengYinan-AIR/FISOR, branch master (configs/train_config.py,
launcher/examples/train_offline.py, jaxrl5/agents/fisor/fisor.py, jaxrl5/networks/diffusion.py,
resnet.py, mlp.py, jaxrl5/data/dsrl_datasets.py, dataset.py). The same code runs unchanged
through `implementation="official"` (algorithms/fisor_official.py).

Known differences from the official code (everything else is meant to be the same):
- random numbers: torch's generator instead of JAX's keys, so no run equals an official run
  draw for draw; the initial weights follow flax's initialisers (xavier-uniform critics, time
  MLP and actor ends; lecun-normal inside the residual blocks; zero biases) but are other draws;
- the data: transitions are sampled by the harness (uniform with replacement, as the
  official sample_jax, whose key is PRNGKey(seed or 42): 42 for seed 0), with its own
  generator; the official loop runs range(1_000_001), the paper profile 1_000_000 steps;
- arithmetic: float32 here; JAX on a recent NVIDIA GPU may multiply float32 matrices in
  TF32 by default;
- the four critic updates of a step (V_r, Q_r, V_h, Q_h in the official order) run as two
  fused updates: V_r and V_h together (their targets come from the target critics alone),
  then Q_r and Q_h together from the just-updated values. Adam is per-parameter, so this is
  the same arithmetic; only float summation order differs;
- action selection draws each state's N candidates in one batch of all evaluation envs; the
  official evaluation acts in one env at a time (same distribution, other draws);
- evaluation follows the harness's protocol: seeded vector envs, 20 episodes per threshold,
  the final iterate (the official script evaluates 20 unseeded episodes every 250k steps,
  normalizing the cost by cost_limit 10 only);
- the training curve holds means over each log window (the official wandb log holds the
  value at the logged step);
- only what the official `fisor` config uses is ported: critic_type "hj" (not the "qc"
  ablation), actor_objective "feasibility", sampling "ddpm" with the "vp" schedule, M = 0
  extra last steps, actor weight decay off (optax.adamw with 0 is Adam).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.base import ConfigError, OfflineMethod, TorchMethod
from algorithms.nets import (EnsembleMLP, done_flags, ensemble_eval, exp_weights, expectile_loss,
                             low_precision, mlp, optimizer_step, soft_update)
from tasks.registry import task_names

IMPLEMENTATIONS = ("native", "official")
#: the implementations other than this file's native port, by name; each registers itself
OTHER_IMPLEMENTATIONS: dict[str, type[OfflineMethod]] = {}


@dataclass(frozen=True)
class Config:
    implementation: str = "native"
    """"native": this file; "official": the authors' JAX code as a subprocess
    (algorithms/fisor_official.py; needs FISOR_HOME and FISOR_PYTHON)"""
    batch_size: int = 2048
    """rows per step: the actor learns on two halves of 1024 in turn (train_config batch_size)"""
    critic_batch_size: int = 256
    """the critics learn on the first rows of the batch only (FISOR.update, x[:256])"""
    actor_lr: float = 3e-4
    """actor learning rate, cosine-decayed to 0 over lr_decay_steps actor updates (actor_lr)"""
    lr_decay_steps: int = 3_000_000
    """length of the actor's cosine decay, counted in actor updates, two per step (decay_steps)"""
    critic_lr: float = 3e-4
    """Adam learning rate of Q_r and Q_h (critic_lr)"""
    value_lr: float = 3e-4
    """Adam learning rate of V_r and V_h (value_lr)"""
    gamma: float = 0.99
    """discount gamma of both Bellman targets (FISOR.create's default discount)"""
    polyak_tau: float = 0.005
    """soft update rate of the target Q_r and Q_h (tau)"""
    actor_ema: float = 0.001
    """EMA rate of the actor copy that acts at evaluation, per actor update (actor_tau)"""
    reward_expectile: float = 0.9
    """tau of IQL's expectile regression of V_r on Q_r (critic_hyperparam)"""
    feasibility_expectile: float = 0.9
    """tau of the reversed expectile regression of V_h on Q_h (cost_critic_hyperparam)"""
    reward_temperature: float = 3.0
    """alpha_r in w = exp(alpha_r A_r) on feasible states (reward_temperature)"""
    cost_temperature: float = 5.0
    """alpha_h in w = exp(alpha_h (V_h - Q_h)) on infeasible states (cost_temperature)"""
    max_reward_weight: float = 100.0
    """clip of the feasible states' weights (hard-coded 100 in update_actor)"""
    max_cost_weight: float = 150.0
    """clip of the infeasible states' weights (cost_ub)"""
    min_cost_weight: float = 0.0
    """floor of the infeasible states' weights: 0 on master, 1 on branch metadrive_imitation"""
    cost_scale: float = 25.0
    """h(s) = cost_scale where the step's cost is > 0, else -1 (dataset_kwargs cost_scale)"""
    normalize_rewards: bool = True
    """rewards times L / (r_max - r_min), DSRL's reference returns (normalize_returns)"""
    action_clip: float = 1e-5
    """the data's actions are clipped to +-(1 - this) (DSRLDataset clip_to_eps, eps)"""
    critic_hidden: tuple[int, ...] = (256, 256)
    """hidden sizes of Q_r, Q_h, V_r, V_h, ReLU (critic_hidden_dims)"""
    diffusion_steps: int = 5
    """T of the DDPM, vp noise schedule (T, beta_schedule "vp")"""
    time_dim: int = 64
    """size of the learnable Fourier features of t (time_dim)"""
    time_hidden: tuple[int, ...] = (128, 128)
    """sizes of the mish MLP on the time features (cond_model_cls, hard-coded)"""
    actor_hidden: int = 256
    """width of the noise predictor's residual stream (MLPResNet hidden_dim default)"""
    actor_blocks: int = 3
    """LayerNorm residual blocks of the noise predictor (actor_num_blocks)"""
    actor_dropout: float = 0.1
    """dropout at each block's input while training (actor_dropout_rate)"""
    candidates: int = 16
    """N actions sampled per state at evaluation (N)"""
    sampling_temperature: float = 1.0
    """scale of the noise added in each reverse step (ddpm_temperature, create's default)"""
    pick: str = "min_qh"
    """which candidate acts: "min_qh" the lowest Q_h (extract_method "minqc") or "max_qr" """


#: the MetaDrive runs of the paper come from branch metadrive_imitation, whose only change to
#: the update is the floor of the infeasible weights, 1 instead of 0
OVERRIDES = {task: {"min_cost_weight": 1.0} for task in task_names("metadrive")}


def fisor_data(arrays: dict[str, np.ndarray], spec, cfg: Config) -> dict[str, np.ndarray]:
    """The data as the official DSRLDataset(critic_type="hj") and normalize_returns give it to
    the agent: h(s) from the costs (a new key "h"), rewards scaled to the task's reference
    returns, actions clipped inside the bounds. Costs and the rest are kept as they are."""
    out = dict(arrays)
    out["h"] = np.where(arrays["costs"] > 0, cfg.cost_scale, -1.0).astype(np.float32)
    if cfg.normalize_rewards:
        scale = spec.max_episode_steps / (spec.reward_max - spec.reward_min)
        out["rewards"] = (arrays["rewards"] * scale).astype(np.float32)
    limit = 1.0 - cfg.action_clip
    out["actions"] = np.clip(arrays["actions"], -limit, limit).astype(np.float32)
    return out


# ---- the critics: reversed expectile for the feasibility value, IQL for the reward --------
def value_losses(cfg: Config, v_ens, q_target, obs, actions):
    """V_r by expectile regression on min(Q_r1, Q_r2), V_h by reversed expectile regression on
    max(Q_h1, Q_h2), both from the target critics. v_ens members: V_r, V_h; q_target: Q_r1,
    Q_r2, Q_h1, Q_h2. Reversed: an overestimate V_h > Q_h is weighted tau, an underestimate
    1 - tau (official safe_expectile_loss), so V_h leans to the smallest Q_h."""
    with torch.no_grad():
        tq = ensemble_eval(q_target, torch.cat([obs, actions], -1)).squeeze(-1)
        q_r = torch.minimum(tq[0], tq[1])
        q_h = torch.maximum(tq[2], tq[3])
    v_r, v_h = v_ens(obs).squeeze(-1)
    v_loss = expectile_loss(q_r - v_r, cfg.reward_expectile)
    vh_loss = expectile_loss(q_h - v_h, 1.0 - cfg.feasibility_expectile)
    stats = {"loss/v_r": v_loss.detach(), "loss/v_h": vh_loss.detach(),
             "value/v_h": v_h.detach().mean(), "feasible_fraction": (v_h <= 0).float().mean()}
    return v_loss + vh_loss, stats


def feasible_target(h, next_vh, done, gamma: float):
    """(1 - gamma) h(s) + gamma max(h(s), V_h(s')), and h(s) where the episode ends."""
    return torch.where(done > 0, h, (1.0 - gamma) * h + gamma * torch.maximum(h, next_vh))


def q_losses(cfg: Config, q_ens, v_ens, obs, actions, rewards, h, next_obs, done):
    """Q_r on r + gamma (1 - d) V_r(s'); Q_h on the feasible target; each the official mean
    over its two members and the batch. V is the one just updated (official order)."""
    with torch.no_grad():
        next_v, next_vh = ensemble_eval(v_ens, next_obs).squeeze(-1)
        q_backup = rewards + cfg.gamma * (1.0 - done) * next_v
        qh_backup = feasible_target(h, next_vh, done, cfg.gamma)
    q = q_ens(torch.cat([obs, actions], -1)).squeeze(-1)
    q_loss = (q[:2] - q_backup).square().mean()
    qh_loss = (q[2:] - qh_backup).square().mean()
    stats = {"loss/q_r": q_loss.detach(), "loss/q_h": qh_loss.detach()}
    return q_loss + qh_loss, stats


# ---- the weights of the policy extraction ----------------------------------------------
def feasibility_weights(cfg: Config, q_r, v_r, q_h, v_h):
    """w(s, a): exp(alpha_h (V_h - Q_h)) clipped to [min, max_cost_weight] where V_h(s) > 0
    (infeasible: the safest actions); exp(alpha_r (Q_r - V_r)) clipped to [0, 100] where
    V_h(s) <= 0 and Q_h(s, a) <= 0 (feasible, and the action keeps it so); else 0."""
    infeasible = v_h > 0
    feasible = (v_h <= 0) & (q_h <= 0)
    cost_w = exp_weights(v_h - q_h, cfg.cost_temperature, cfg.max_cost_weight)
    cost_w = cost_w.clamp(min=cfg.min_cost_weight)
    reward_w = exp_weights(q_r - v_r, cfg.reward_temperature, cfg.max_reward_weight)
    zero = torch.zeros_like(v_h)
    return torch.where(infeasible, cost_w, zero) + torch.where(feasible, reward_w, zero)


# ---- the diffusion actor ---------------------------------------------------------------
def vp_schedule(steps: int, beta_min: float = 0.1, beta_max: float = 10.0):
    """Discrete VP schedule: alpha_t = exp(-b_min/T - (b_max - b_min)(2t - 1) / (2 T^2)),
    t = 1..T; returns (betas, alphas, alpha_bars) (official vp_beta_schedule)."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    alphas = torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / steps**2)
    return (1.0 - alphas).float(), alphas.float(), torch.cumprod(alphas, 0).float()


def _xavier(linear: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def _lecun_normal(linear: nn.Linear) -> nn.Linear:
    """flax's default Dense init: truncated normal (+-2 sd) of variance 1/fan_in."""
    std = math.sqrt(1.0 / linear.in_features) / 0.87962566103423978
    nn.init.trunc_normal_(linear.weight, 0.0, std, -2 * std, 2 * std)
    nn.init.zeros_(linear.bias)
    return linear


def _xavier_ensemble(ens: EnsembleMLP) -> EnsembleMLP:
    with torch.no_grad():
        for w, b in zip(ens.weights, ens.biases):
            for member in w:
                nn.init.xavier_uniform_(member)
            b.zero_()
    return ens


class FourierTime(nn.Module):
    """Learnable Fourier features of the step t: [cos 2 pi t W, sin 2 pi t W], W ~ N(0, 0.2^2)
    (FourierFeatures, learnable=True)."""

    def __init__(self, dim: int):
        super().__init__()
        self.kernel = nn.Parameter(0.2 * torch.randn(dim // 2, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t.float()[:, None] * self.kernel[:, 0]
        return torch.cat([f.cos(), f.sin()], -1)


class ResidualBlock(nn.Module):
    """x + W2 mish(W1 LayerNorm(dropout(x))), W1 widening 4x (MLPResNetBlock)."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width, eps=1e-6)  # flax's epsilon
        self.up = _lecun_normal(nn.Linear(width, 4 * width))
        self.down = _lecun_normal(nn.Linear(4 * width, width))

    def forward(self, x):
        return x + self.down(F.mish(self.up(self.norm(self.dropout(x)))))


class NoisePredictor(nn.Module):
    """eps_theta(a_t, s, t): the residual MLP on [a_t, s, MLP(Fourier(t))] (DDPM, MLPResNet)."""

    compute_dtype: torch.dtype | None = None  # the input layer's and the blocks', where set

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config):
        super().__init__()
        self.time = FourierTime(cfg.time_dim)
        self.time_mlp = mlp(cfg.time_dim, cfg.time_hidden[-1], cfg.time_hidden[:-1], nn.Mish)
        for layer in self.time_mlp:
            if isinstance(layer, nn.Linear):
                _xavier(layer)
        self.inp = _xavier(nn.Linear(act_dim + obs_dim + cfg.time_hidden[-1], cfg.actor_hidden))
        self.blocks = nn.Sequential(*[ResidualBlock(cfg.actor_hidden, cfg.actor_dropout)
                                      for _ in range(cfg.actor_blocks)])
        self.out = _xavier(nn.Linear(cfg.actor_hidden, act_dim))

    def forward(self, obs, noisy_actions, t):
        cond = self.time_mlp(self.time(t))
        with low_precision(self.compute_dtype, obs):  # the input layer and the blocks
            x = self.inp(torch.cat([noisy_actions, obs, cond], -1)).float()  # fp32 stream
            x = self.blocks(x)
        return self.out(F.mish(x))


def diffusion_loss(model: NoisePredictor, alpha_bars, obs, actions, weights):
    """mean_B w(s, a) ||eps - eps_theta(sqrt(abar_t) a + sqrt(1 - abar_t) eps, s, t)||^2,
    t ~ U{0..T-1} (update_actor, "ddpm")."""
    t = torch.randint(len(alpha_bars), (len(actions),), device=actions.device)
    noise = torch.randn_like(actions)
    abar = alpha_bars[t][:, None]
    noisy = abar.sqrt() * actions + (1.0 - abar).sqrt() * noise
    error = (model(obs, noisy, t) - noise).square().sum(-1)
    loss = (error * weights).mean()
    return loss, {"loss/actor": loss.detach()}


@torch.no_grad()
def ddpm_sample(model: NoisePredictor, obs, act_dim: int, betas, alphas, alpha_bars,
                temperature: float = 1.0):
    """Reverse DDPM from a_T ~ N(0, I): a <- (a - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)
    + sqrt(beta_t) temperature z (no noise at t = 0), clipped to [-1, 1] after every step
    (ddpm_sampler with clip_sampler)."""
    x = torch.randn(len(obs), act_dim, device=obs.device)
    for t in reversed(range(len(betas))):
        steps = torch.full((len(obs),), t, device=obs.device, dtype=torch.long)
        eps = model(obs, x, steps)
        x = (x - betas[t] / (1.0 - alpha_bars[t]).sqrt() * eps) / alphas[t].sqrt()
        if t > 0:
            x = x + betas[t].sqrt() * temperature * torch.randn_like(x)
        x = x.clamp(-1.0, 1.0)
    return x


def cosine_lr(base: float, update, decay_steps: int):
    """optax.cosine_decay_schedule(base, decay_steps) at update `update` (alpha = 0); a
    tensor `update` (the count kept on the GPU for a CUDA graph) gives a tensor."""
    if isinstance(update, torch.Tensor):
        return base * 0.5 * (1.0 + torch.cos(math.pi * update.clamp(max=decay_steps)
                                             / decay_steps))
    return base * 0.5 * (1.0 + math.cos(math.pi * min(update, decay_steps) / decay_steps))


class FISOR(TorchMethod):
    """The native port. FISOR.create gives the official adapter when the config asks for it."""

    Config = Config
    threshold_agnostic = True
    overrides = OVERRIDES
    graph_safe = True  # once prepare_graph_capture has moved the schedule onto the device
    #: quick is far from the paper's budget (its cost: docs/performance.md): the EMA actor
    #: (rate 0.001 per actor update) still holds 30% of its initial weights after 1,200 updates
    profile_steps = {"smoke": 10, "quick": 600, "study": 100_000, "paper": 1_000_000}
    #: --precision bf16: the hidden layers of the critics (and targets) and the noise
    #: predictor's input layer and residual blocks (NoisePredictor.forward); the Fourier
    #: features and time MLP, the residual stream and LayerNorms, the noise head, the DDPM
    #: schedule and reverse steps, the feasibility weights and every loss stay fp32
    bf16_networks = ("q_ens", "q_target", "v_ens", "actor", "actor_target")
    state_attributes = ("q_ens", "q_target", "v_ens", "actor", "actor_target", "critic_optim",
                        "value_optim", "actor_optim", "actor_updates")
    #: a tensor on the device under a CUDA graph (prepare_graph_capture), an int when saved
    state_counters = ("actor_updates",)

    @classmethod
    def check_precision(cls, config, precision):
        super().check_precision(config, precision)
        if precision != "fp32" and config.implementation == "official":
            raise ConfigError("FISOR implementation 'official' runs the authors' JAX code as "
                              "it is, in fp32: --precision bf16 is for the native port")

    @classmethod
    def implementation(cls, config) -> type[OfflineMethod]:
        """The class that runs `config`: this native port, or one registered in
        OTHER_IMPLEMENTATIONS (algorithms.fisor_official registers the authors' code)."""
        if config.implementation == "native":
            return cls
        if config.implementation not in OTHER_IMPLEMENTATIONS:
            raise ConfigError(f"FISOR implementation {config.implementation!r}: choose one of "
                              f"{', '.join(IMPLEMENTATIONS)}")
        return OTHER_IMPLEMENTATIONS[config.implementation]

    @classmethod
    def create(cls, spec, config, threshold, seed, device="cpu"):
        return cls.implementation(config)(spec, config, threshold, seed, device)

    @classmethod
    def check_environment(cls, config, task):
        implementation = cls.implementation(config)
        if implementation is not cls:
            implementation.check_environment(config, task)

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        if config.implementation != "native":
            raise ConfigError(
                f"FISOR implementation {config.implementation!r}: FISOR(...) is the native port; "
                f"choose one of {', '.join(IMPLEMENTATIONS)} and build with FISOR.create")
        if config.pick not in ("min_qh", "max_qr"):
            raise ConfigError(f"FISOR pick {config.pick!r}: min_qh or max_qr")
        cfg, obs_dim, act_dim = config, spec.obs_dim, spec.act_dim
        # critics: members Q_r1, Q_r2, Q_h1, Q_h2 in one ensemble, V_r and V_h in another
        self.q_ens = _xavier_ensemble(EnsembleMLP(obs_dim + act_dim, 1, cfg.critic_hidden, 4))
        self.q_ens.to(device)
        self.q_target = copy.deepcopy(self.q_ens).requires_grad_(False)
        self.v_ens = _xavier_ensemble(EnsembleMLP(obs_dim, 1, cfg.critic_hidden, 2)).to(device)
        self.actor = NoisePredictor(obs_dim, act_dim, cfg).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False).eval()
        self.critic_optim = torch.optim.Adam(self.q_ens.parameters(), lr=cfg.critic_lr)
        self.value_optim = torch.optim.Adam(self.v_ens.parameters(), lr=cfg.value_lr)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.actor_updates = 0
        self.betas, self.alphas, self.alpha_bars = (
            x.to(device) for x in vp_schedule(cfg.diffusion_steps))

    def training_data(self, arrays):
        return fisor_data(arrays, self.spec, self.config)

    def record_fields(self):
        return {"implementation": "native"}

    def train_step(self, batch):
        cfg = self.config
        obs, actions = batch["observations"], batch["actions"]
        # the actor first, weighted by the critics as they were before this step (FISOR.update)
        with torch.no_grad():
            sa = torch.cat([obs, actions], -1)
            tq = ensemble_eval(self.q_target, sa).squeeze(-1)
            v_r, v_h = ensemble_eval(self.v_ens, obs).squeeze(-1)
            weights = feasibility_weights(cfg, torch.minimum(tq[0], tq[1]), v_r,
                                          torch.maximum(tq[2], tq[3]), v_h)
        half = len(obs) // 2
        for rows in (slice(0, half), slice(half, None)):
            loss, stats = diffusion_loss(self.actor, self.alpha_bars, obs[rows], actions[rows],
                                         weights[rows])
            self._actor_step(loss)
        stats["weights/mean"] = weights.mean()
        # then the critics on the first rows: V_r and V_h, then Q_r and Q_h from the new V
        c = slice(0, cfg.critic_batch_size)
        loss, value_stats = value_losses(cfg, self.v_ens, self.q_target, obs[c], actions[c])
        optimizer_step(self.value_optim, loss)
        loss, q_stats = q_losses(cfg, self.q_ens, self.v_ens, obs[c], actions[c],
                                 batch["rewards"][c], batch["h"][c],
                                 batch["next_observations"][c], done_flags(batch)[c])
        optimizer_step(self.critic_optim, loss)
        soft_update(self.q_target, self.q_ens, cfg.polyak_tau)
        return stats | value_stats | q_stats

    def _actor_step(self, loss):
        lr = cosine_lr(self.config.actor_lr, self.actor_updates, self.config.lr_decay_steps)
        for group in self.actor_optim.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].copy_(lr)  # in place: what a CUDA graph replays
            else:
                group["lr"] = lr
        optimizer_step(self.actor_optim, loss)
        self.actor_updates += 1
        soft_update(self.actor_target, self.actor, self.config.actor_ema)

    def prepare_graph_capture(self):
        """The actor's update count and learning rate become tensors on the device, updated in
        place, so that each replay of a CUDA graph advances the cosine schedule (a Python int
        and float would stay at their values when the step was recorded)."""
        self.actor_updates = torch.tensor(float(self.actor_updates), device=self.device)
        for group in self.actor_optim.param_groups:
            group["lr"] = torch.tensor(float(group["lr"]), device=self.device)

    def _act_tensor(self, obs):
        """N candidates per state from the EMA actor; the lowest max(Q_h1, Q_h2) of the target
        critics acts (eval_actions, extract_method "minqc"), or the highest Q_r."""
        cfg = self.config
        states = obs.repeat_interleave(cfg.candidates, 0)
        actions = ddpm_sample(self.actor_target, states, self.spec.act_dim, self.betas,
                              self.alphas, self.alpha_bars, cfg.sampling_temperature)
        q = ensemble_eval(self.q_target, torch.cat([states, actions], -1)).squeeze(-1)
        if cfg.pick == "min_qh":
            score = -torch.maximum(q[2], q[3])
        else:
            score = torch.minimum(q[0], q[1])
        best = score.view(len(obs), cfg.candidates).argmax(1)
        chosen = actions.view(len(obs), cfg.candidates, -1)[torch.arange(len(obs)), best]
        return chosen
