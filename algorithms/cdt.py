"""CDT: Constrained Decision Transformer (Liu et al., "Constrained Decision Transformer for
Offline Safe Reinforcement Learning", ICML 2023), as OSRL trains and evaluates it.

Reference code read for facts: OSRL (osrl/algorithms/cdt.py, osrl/common/dataset.py,
examples/configs/cdt_configs.py, examples/train/train_cdt.py). Choices, as OSRL's defaults:
- tokens (R_t, C_t, s_t, a_t) per step, each embedding plus a learned timestep embedding,
  LayerNorm and dropout on the embeddings, pre-norm causal transformer blocks, a final
  LayerNorm; the action is read from the state token, the cost from the action token;
- the costs-to-go enter the model as 50 - C_t (OSRL's cost_transform); returns-to-go and
  costs-to-go are scaled by reward_scale and cost_scale (0.1 and 1);
- a diagonal Gaussian action head (mean and log std, each a linear layer, no log-std clamp:
  osrl-lib 0.1.0's DiagGaussianActor does not apply its bounds); the loss is
  -(mean log-likelihood + alpha * mean entropy) over real steps, both averaged over action
  dimensions, alpha = exp(log temperature) learnt towards entropy -act_dim (Adam 1e-4);
- plus 0.02 x the cross entropy of a two-class per-step cost prediction (the step's cost,
  truncated to an integer class 0 or 1), averaged over all B x T positions with padded ones
  counting zero (as OSRL); OSRL's next-state head has weight 0 and is left out;
- AdamW (lr 1e-4, weight decay 1e-4 on every parameter), linear warm-up over 500 steps,
  gradient norm clipped at 0.25;
- windows of 10 steps from trajectories drawn with probability proportional to
  max(0, 70 - cost return) (OSRL's cost_sample with its linear transform), a uniform start in
  the trajectory, zero padding past its end (tasks.samplers.SequenceSampler);
- at evaluation the prompt is (target reward, threshold) from OSRL's per-task table
  (TARGET_RETURNS), the action is the Gaussian's mean clipped to [-1, 1], and the prompt falls
  by each step's scaled reward and cost.
- OSRL's data augmentation (tasks/augmentation.py): 20% as many copies of trajectories as
  OSRL's grid filter keeps, relabelled with (cost return, reward return) targets above the
  fitted Pareto frontier (degree `deg`, rewards up to `max_reward`).

Same math, faster: OSRL passes a key padding mask to attention; padding only ever follows a
window's real steps, so under the causal mask no real position attends to a padded one and
the mask changes nothing that the losses read. We leave it out. The last transformer block
computes its outputs only at the state and action tokens, the ones the heads read
(algorithms/transformer.py has the blocks and their attention kernel).
tests/test_algorithms/test_cdt.py checks the padding, tests_oracle/test_osrl_cdt.py the whole
step against osrl-lib.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algorithms.base import TorchMethod, paper_steps_on
from algorithms.nets import low_precision
from algorithms.transformer import Block
from tasks.augmentation import append_relabelled, pareto_augmentation
from tasks.datasets import split_trajectories, to_go
from tasks.registry import task_names


@dataclass(frozen=True)
class Config:
    batch_size: int = 2048
    """windows per step (OSRL batch_size)"""
    seq_len: int = 10
    """steps per window and per context at evaluation (OSRL seq_len)"""
    embedding_dim: int = 128
    """token width (OSRL embedding_dim)"""
    num_layers: int = 3
    """transformer blocks (OSRL num_layers)"""
    num_heads: int = 8
    """attention heads (OSRL num_heads)"""
    attention_dropout: float = 0.1
    """dropout on attention weights (OSRL attention_dropout)"""
    residual_dropout: float = 0.1
    """dropout on each block's residual branches (OSRL residual_dropout)"""
    embedding_dropout: float = 0.1
    """dropout on the normalised embeddings (OSRL embedding_dropout)"""
    lr: float = 1e-4
    """AdamW learning rate (OSRL learning_rate)"""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas (OSRL betas)"""
    weight_decay: float = 1e-4
    """AdamW weight decay (OSRL weight_decay)"""
    clip_grad: float = 0.25
    """gradient norm clip (OSRL clip_grad)"""
    lr_warmup_steps: int = 500
    """linear learning-rate warm-up: lr * min((step + 1) / this, 1) (OSRL lr_warmup_steps)"""
    reward_scale: float = 0.1
    """returns-to-go scale (OSRL reward_scale)"""
    cost_scale: float = 1.0
    """costs-to-go scale (OSRL cost_scale)"""
    cost_transform_offset: float = 50.0
    """the model sees offset - C_t (OSRL cost_transform=True, 50 - x)"""
    loss_cost_weight: float = 0.02
    """weight of the cost-prediction cross entropy (OSRL loss_cost_weight)"""
    init_temperature: float = 0.1
    """initial entropy coefficient alpha (OSRL init_temperature)"""
    temperature_lr: float = 1e-4
    """Adam learning rate of log alpha (OSRL CDTTrainer, fixed there)"""
    no_entropy: bool = False
    """drop the entropy term of the action loss (OSRL no_entropy)"""
    cost_sample: bool = True
    """draw trajectories with weight max(0, offset - cost return) (OSRL cost_sample, linear)"""
    cost_sample_offset: float = 70.0
    """the offset of that weight (OSRL train_cdt.py: 70 - x)"""
    augment_percent: float = 0.2
    """relabelled trajectories added, as a fraction of those kept by the grid filter
    (OSRL augment_percent); 0: no augmentation"""
    deg: int = 4
    """degree of the polynomial fitted to the Pareto frontier (OSRL deg)"""
    max_reward: float = 600.0
    """upper bound of the relabelled reward returns (OSRL max_reward)"""
    min_reward: float = 1.0
    """relabelled reward returns lie at least this far above the frontier (OSRL min_reward)"""
    max_rew_decrease: float = 100.0
    """extra source trajectories lie at most this far below the nearest one's reward return
    (OSRL max_rew_decrease)"""
    beta: float = 1.0
    """extra sources are drawn with weight 1 / (distance + beta) (OSRL beta)"""
    target_reward: float | None = None
    """the prompt's reward return at every threshold; None: TARGET_RETURNS (OSRL target_returns)"""


class CDTNet(nn.Module):
    """(returns-to-go, costs-to-go, states, actions, timesteps) -> Gaussian action mean and log
    std at each state token, log-probabilities of the two cost classes at each action token."""

    compute_dtype: torch.dtype | None = None

    def __init__(self, obs_dim: int, act_dim: int, seq_len: int, episode_len: int,
                 config: Config):
        super().__init__()
        dim = config.embedding_dim
        self.dim, self.act_dim = dim, act_dim
        self.cost_offset = config.cost_transform_offset
        # seq_len more timesteps than an episode: padded steps past a trajectory's end
        self.timestep_emb = nn.Embedding(episode_len + seq_len, dim)
        self.return_emb, self.cost_emb = nn.Linear(1, dim), nn.Linear(1, dim)
        self.state_emb, self.action_emb = nn.Linear(obs_dim, dim), nn.Linear(act_dim, dim)
        self.emb_norm, self.emb_drop = nn.LayerNorm(dim), nn.Dropout(config.embedding_dropout)
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.attention_dropout, config.residual_dropout)
            for _ in range(config.num_layers))
        self.out_norm = nn.LayerNorm(dim)
        self.action_head = nn.Linear(dim, 2 * act_dim)  # mean and log std
        self.cost_head = nn.Linear(dim, 2)
        self.apply(self._init_weights)
        for block in self.blocks:  # nn.MultiheadAttention's own in-projection init
            nn.init.xavier_uniform_(block.qkv.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, returns_to_go, costs_to_go, states, actions, timesteps):
        batch, steps = states.shape[:2]
        timesteps = timesteps.clamp(max=self.timestep_emb.num_embeddings - 1)
        time = self.timestep_emb(timesteps)[:, :, None]
        tokens = torch.stack([
            self.return_emb(returns_to_go[..., None]),
            self.cost_emb((self.cost_offset - costs_to_go)[..., None]),
            self.state_emb(states), self.action_emb(actions)], dim=2) + time
        x = self.emb_drop(self.emb_norm(tokens.reshape(batch, 4 * steps, self.dim)))
        # the heads read the state tokens (4t + 2) and the action tokens (4t + 3) only
        read = torch.arange(4 * steps, device=x.device).view(steps, 4)[:, 2:].reshape(-1)
        with low_precision(self.compute_dtype, x):  # the blocks' projections and MLPs
            for block in self.blocks[:-1]:
                x = block(x)
            x = self.blocks[-1](x, read)
        x = self.out_norm(x.float()).reshape(batch, steps, 2, self.dim)
        mean, log_std = self.action_head(x[:, :, 0]).chunk(2, -1)
        cost_logp = F.log_softmax(self.cost_head(x[:, :, 1]), -1)
        return mean, log_std, cost_logp


def cdt_loss(net: CDTNet, batch: dict, alpha: torch.Tensor, cost_weight: float,
             reward_scale: float, cost_scale: float):
    """-(mean log N(a | mu, sigma) + alpha mean entropy) over real steps (per action dimension)
    + cost_weight * cross entropy of the step cost class (padded steps count zero in the mean)."""
    mask = batch["mask"]
    mean, log_std, cost_logp = net(batch["returns_to_go"] * reward_scale,
                                   batch["costs_to_go"] * cost_scale, batch["observations"],
                                   batch["actions"], batch["timesteps"])
    real = mask.sum() * mean.shape[-1]
    log_prob = (-0.5 * ((batch["actions"] - mean) * torch.exp(-log_std)).square() - log_std
                - 0.5 * math.log(2 * math.pi))
    log_likelihood = (log_prob * mask[..., None]).sum() / real
    entropy = ((0.5 + 0.5 * math.log(2 * math.pi) + log_std) * mask[..., None]).sum() / real
    act_loss = -(log_likelihood + alpha * entropy)
    classes = batch["costs"].long().clamp(0, 1)
    cost_nll = -cost_logp.gather(-1, classes[..., None])[..., 0]
    cost_loss = (cost_nll * mask).mean()
    correct = ((cost_logp.argmax(-1) == classes).float() * mask).sum() / mask.sum()
    loss = act_loss + cost_weight * cost_loss
    return loss, {"loss/actor": act_loss.detach(), "loss/cost": cost_loss.detach(),
                  "cdt/nll": -log_likelihood.detach(), "cdt/entropy": entropy.detach(),
                  "cdt/cost_acc": correct.detach(), "loss/total": loss.detach()}


def temperature_loss(log_alpha: torch.Tensor, entropy: torch.Tensor, target_entropy: float):
    """alpha (H - H_target), H fixed: alpha falls while the entropy is above the target."""
    loss = log_alpha.exp() * (entropy.detach() - target_entropy)
    return loss, {"loss/alpha": loss.detach(), "cdt/alpha": log_alpha.exp().detach()}


class CDT(TorchMethod):
    """A return- and cost-conditioned decision transformer, trained once and prompted with
    (target reward, threshold) at each threshold."""

    Config = Config
    threshold_agnostic = True
    wants = "sequences"
    #: quick: a few steps, a step at batch 2048 being slow on a CPU (docs/performance.md)
    profile_steps = {"smoke": 10, "quick": 8, "study": 100_000, "paper": 100_000}
    task_steps = paper_steps_on("metadrive", 200_000)  # OSRL update_steps on MetaDrive
    #: overrides: OSRL's per-task augmentation settings, OVERRIDES at the end of this file
    #: --precision bf16: the transformer blocks' projections and MLPs (CDTNet.forward); the
    #: embeddings, LayerNorms, residual stream, attention (softmax included), the action and
    #: cost heads, log-likelihood, entropy and cross entropy stay fp32
    bf16_networks = ("net",)
    state_attributes = ("net", "optim", "scheduler", "log_alpha", "alpha_optim")

    def __init__(self, spec, config, threshold, seed, device="cpu"):
        super().__init__(spec, config, threshold, seed, device)
        self.net = CDTNet(spec.obs_dim, spec.act_dim, config.seq_len, spec.max_episode_steps,
                          config).to(device)
        self.optim = torch.optim.AdamW(self.net.parameters(), lr=config.lr,
                                       betas=config.betas, weight_decay=config.weight_decay)
        warmup = config.lr_warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optim, lambda step: min((step + 1) / warmup, 1.0))
        self.log_alpha = torch.tensor(math.log(config.init_temperature), device=device,
                                      requires_grad=True)
        self.alpha_optim = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr,
                                            betas=(0.9, 0.999))
        self.target_entropy = -float(spec.act_dim)
        self.context = None  # set by reset()

    def training_data(self, arrays):
        """The dataset's trajectories with their returns-to-go and costs-to-go, followed by
        the relabelled copies of OSRL's augmentation."""
        cfg = self.config
        trajectories = split_trajectories(arrays)
        arrays = {key: np.asarray(value) for key, value in arrays.items()}
        arrays["returns_to_go"] = to_go(arrays["rewards"], trajectories)
        arrays["costs_to_go"] = to_go(arrays["costs"], trajectories)
        if not cfg.augment_percent:
            return arrays
        rng = np.random.default_rng(self.seed)
        sources, target_costs, target_rewards = pareto_augmentation(
            trajectories.cost_returns, trajectories.reward_returns, rng, cfg.deg,
            cfg.max_rew_decrease, cfg.beta, cfg.augment_percent, cfg.max_reward,
            cfg.min_reward)
        return append_relabelled(arrays, trajectories, sources, target_costs, target_rewards)

    def sequence_options(self, arrays):
        weights = None
        if self.config.cost_sample:
            # the cost return each trajectory is labelled with (relabelled ones: the target)
            trajectories = split_trajectories(arrays)
            cost_returns = (np.asarray(arrays["costs_to_go"])[trajectories.starts]
                            if "costs_to_go" in arrays else trajectories.cost_returns)
            weights = np.maximum(self.config.cost_sample_offset - cost_returns, 0.0)
            if weights.sum() <= 0:  # every trajectory costs more than the offset: uniform
                weights = None
        return {"seq_len": self.config.seq_len, "trajectory_weights": weights}

    def train_step(self, batch):
        cfg = self.config
        self.net.train()
        alpha = torch.zeros(()) if cfg.no_entropy else self.log_alpha.detach().exp()
        loss, stats = cdt_loss(self.net, batch, alpha, cfg.loss_cost_weight, cfg.reward_scale,
                               cfg.cost_scale)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        stats["cdt/grad_norm"] = nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clip_grad)
        self.optim.step()
        alpha_loss, alpha_stats = temperature_loss(self.log_alpha, stats["cdt/entropy"],
                                                   self.target_entropy)
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()
        self.scheduler.step()
        return {**stats, **alpha_stats}

    # evaluation: a context of the last seq_len steps per environment, prompted per threshold

    def target_reward(self, threshold: float) -> float:
        if self.config.target_reward is not None:
            return self.config.target_reward
        table = TARGET_RETURNS.get(self.spec.name, {})
        if threshold not in table:
            raise ValueError(f"CDT has no target reward for {self.spec.name} at threshold "
                             f"{threshold:g} (OSRL's table: {table or 'none'}); "
                             "--set target_reward=...")
        return table[threshold]

    def reset(self, num_envs, threshold=None):
        cfg, spec = self.config, self.spec
        threshold = spec.thresholds[0] if threshold is None else threshold
        steps = cfg.seq_len

        def zeros(*shape, dtype=torch.float32):
            return torch.zeros(num_envs, *shape, dtype=dtype, device=self.device)

        self.context = {"returns_to_go": zeros(steps), "costs_to_go": zeros(steps),
                        "observations": zeros(steps, spec.obs_dim),
                        "actions": zeros(steps, spec.act_dim),
                        "timesteps": zeros(steps, dtype=torch.long)}
        self.filled = 0
        self.returns_to_go = zeros().fill_(self.target_reward(threshold) * cfg.reward_scale)
        self.costs_to_go = zeros().fill_(threshold * cfg.cost_scale)
        self.time = zeros(dtype=torch.long)

    def _act_tensor(self, obs):
        if self.context is None:
            raise RuntimeError("CDT.act before reset(num_envs, threshold): no prompt yet")
        ctx, steps = self.context, self.config.seq_len
        if self.filled == steps:  # drop the oldest step
            for key, value in ctx.items():
                ctx[key] = value.roll(-1, dims=1)
        i = min(self.filled, steps - 1)
        self.filled = i + 1
        ctx["observations"][:, i] = obs
        ctx["actions"][:, i] = 0.0  # not read: the action is predicted from the state token
        ctx["returns_to_go"][:, i] = self.returns_to_go
        ctx["costs_to_go"][:, i] = self.costs_to_go
        ctx["timesteps"][:, i] = self.time
        self.net.eval()
        view = {key: value[:, :self.filled] for key, value in ctx.items()}
        mean, _, _ = self.net(view["returns_to_go"], view["costs_to_go"], view["observations"],
                              view["actions"], view["timesteps"])
        action = mean[:, -1].clamp(-1.0, 1.0)
        ctx["actions"][:, i] = action
        return action

    def observe(self, rewards, costs, dones):
        """The prompt falls by the step's scaled reward and cost (OSRL's rollout). A finished
        env keeps its context: the vector env restarts it, but only first episodes count."""
        cfg = self.config
        self.returns_to_go -= self.to_device(rewards) * cfg.reward_scale
        self.costs_to_go -= self.to_device(costs) * cfg.cost_scale
        self.time += 1


#: OSRL cdt_configs.py target_returns, as {task: {cost threshold: target reward return}}.
#: mediumdense has no entry of its own in OSRL (it falls back to CarCircle's pairs, whose
#: third cost, 50, is not a threshold of the task); we give it its siblings' (mediumsparse,
#: mediummean) pairs.
TARGET_RETURNS: dict[str, dict[float, float]] = {
    "BallRun": {10.0: 500.0, 20.0: 500.0, 40.0: 700.0},
    "CarRun": {10.0: 575.0, 20.0: 575.0, 40.0: 575.0},
    "DroneRun": {10.0: 400.0, 20.0: 500.0, 40.0: 600.0},
    "AntRun": {10.0: 700.0, 20.0: 750.0, 40.0: 800.0},
    "BallCircle": {10.0: 700.0, 20.0: 750.0, 40.0: 800.0},
    "CarCircle": {10.0: 450.0, 20.0: 500.0, 40.0: 550.0},  # OSRL's third pair is (550, 50)
    "DroneCircle": {10.0: 700.0, 20.0: 750.0, 40.0: 800.0},
    "AntCircle": {10.0: 300.0, 20.0: 350.0, 40.0: 400.0},
    "CarButton1": {20.0: 35.0, 40.0: 35.0, 80.0: 35.0},
    "CarButton2": {20.0: 40.0, 40.0: 40.0, 80.0: 40.0},
    "CarGoal1": {20.0: 40.0, 40.0: 40.0, 80.0: 40.0},
    "CarGoal2": {20.0: 30.0, 40.0: 30.0, 80.0: 30.0},
    "CarPush1": {20.0: 15.0, 40.0: 15.0, 80.0: 15.0},
    "CarPush2": {20.0: 12.0, 40.0: 12.0, 80.0: 12.0},
    "SwimmerVelocity": {20.0: 160.0, 40.0: 160.0, 80.0: 160.0},
    "HopperVelocity": {20.0: 1750.0, 40.0: 1750.0, 80.0: 1750.0},
    "HalfCheetahVelocity": {20.0: 3000.0, 40.0: 3000.0, 80.0: 3000.0},
    "Walker2dVelocity": {20.0: 2800.0, 40.0: 2800.0, 80.0: 2800.0},
    "AntVelocity": {20.0: 2800.0, 40.0: 2800.0, 80.0: 2800.0},
    **{task: {10.0: 300.0, 20.0: 350.0, 40.0: 400.0}
       for task in task_names("metadrive", "easy") + task_names("metadrive", "hard")},
    **{task: {10.0: 300.0, 20.0: 300.0, 40.0: 300.0} for task in task_names("metadrive", "medium")},
}


#: OSRL cdt_configs.py augmentation settings per task: (deg, max_reward, max_rew_decrease);
#: mediumdense (no entry of its own in OSRL) takes its siblings'.
_AUGMENT = {
    "BallRun": (2, 1400.0, 200.0), "CarRun": (0, 600.0, 100.0), "DroneRun": (1, 700.0, 100.0),
    "AntRun": (3, 1000.0, 150.0), "BallCircle": (2, 1000.0, 200.0),
    "CarCircle": (4, 600.0, 100.0), "DroneCircle": (1, 1000.0, 100.0),
    "AntCircle": (2, 500.0, 100.0),
    "CarButton1": (0, 45.0, 10.0), "CarButton2": (0, 50.0, 10.0), "CarGoal1": (1, 50.0, 5.0),
    "CarGoal2": (1, 35.0, 5.0), "CarPush1": (0, 20.0, 5.0), "CarPush2": (0, 15.0, 3.0),
    "SwimmerVelocity": (1, 250.0, 50.0), "HopperVelocity": (1, 2000.0, 300.0),
    "HalfCheetahVelocity": (1, 3000.0, 500.0), "Walker2dVelocity": (1, 3600.0, 800.0),
    "AntVelocity": (1, 3000.0, 500.0),
    **{task: (2, 500.0, 100.0) for task in task_names("metadrive", "easy")},
    **{task: (0, 300.0, 100.0) for task in task_names("metadrive", "medium")},
    **{task: (1, 500.0, 100.0) for task in task_names("metadrive", "hard")},
}
OVERRIDES = {task: {"deg": deg, "max_reward": top, "max_rew_decrease": drop}
             for task, (deg, top, drop) in _AUGMENT.items()}
CDT.overrides = OVERRIDES  # after the class, as the tables read best after the method
