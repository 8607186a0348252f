"""osrl-lib's implementation of a baseline, built at our config, as a train-step callable.

`bench speed` times it beside ours in the same run (interleaved rounds), and tests_oracle
builds its models here too. osrl-lib is optional (a test oracle, installed with --no-deps plus
tensorboard and wandb: see tox.ini's oracle env); `available()` says whether it imports.

Each step feeds osrl-lib what its own datasets give its trainers: rewards and costs scaled by
the config's reward_scale / cost_scale, done = terminal or timeout, and, for CDT, returns-to-go
and costs-to-go pre-scaled.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import torch

#: our method name -> osrl-lib's (model class, trainer class)
OSRL_CLASSES = {"BC-All": ("BC", "BCTrainer"), "BC-Safe": ("BC", "BCTrainer"),
                "BCQ-Lag": ("BCQL", "BCQLTrainer"), "BEAR-Lag": ("BEARL", "BEARLTrainer"),
                "CPQ": ("CPQ", "CPQTrainer"), "COptiDICE": ("COptiDICE", "COptiDICETrainer"),
                "CDT": ("CDT", "CDTTrainer")}


def osrl_algorithms():
    """osrl.algorithms, or None where osrl-lib is not installed (or does not import)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a notice about CDT
            from osrl import algorithms
    except Exception:  # noqa: BLE001 - any import failure means: no oracle here
        return None
    return algorithms


def available() -> bool:
    return osrl_algorithms() is not None


def build_model(name: str, spec, cfg, threshold: float | None, method=None):
    """osrl-lib's model for our method `name` at our config `cfg` (same sizes and settings).
    COptiDICE needs our built `method` for the dataset statistics it was given."""
    algorithms = osrl_algorithms()
    obs, act, horizon = spec.obs_dim, spec.act_dim, spec.max_episode_steps
    limit = spec.thresholds[0] if threshold is None else threshold
    if name in ("BC-All", "BC-Safe"):
        return algorithms.BC(obs, act, 1.0, list(cfg.hidden), horizon)
    if name == "BCQ-Lag":
        return algorithms.BCQL(
            obs, act, 1.0, list(cfg.actor_hidden), list(cfg.critic_hidden), cfg.vae_hidden,
            cfg.sample_action_num, cfg.gamma, cfg.polyak_tau, cfg.phi, cfg.lmbda, cfg.kl_coef,
            list(cfg.pid), cfg.num_q, cfg.num_qc, limit, horizon)
    if name == "BEAR-Lag":
        return algorithms.BEARL(
            obs, act, 1.0, a_hidden_sizes=list(cfg.actor_hidden),
            c_hidden_sizes=list(cfg.critic_hidden),
            vae_hidden_sizes=cfg.vae_hidden, sample_action_num=cfg.sample_action_num,
            gamma=cfg.gamma, tau=cfg.polyak_tau, beta=cfg.kl_coef, lmbda=cfg.lmbda,
            mmd_sigma=cfg.mmd_sigma, target_mmd_thresh=cfg.target_mmd,
            num_samples_mmd_match=cfg.num_samples_mmd_match, PID=list(cfg.pid),
            kernel=cfg.kernel, num_q=cfg.num_q, num_qc=cfg.num_qc, cost_limit=limit,
            episode_len=horizon, start_update_policy_step=cfg.start_update_policy_step)
    if name == "CPQ":
        return algorithms.CPQ(
            obs, act, 1.0, list(cfg.actor_hidden), list(cfg.critic_hidden), cfg.vae_hidden,
            cfg.sample_action_num, cfg.gamma, cfg.polyak_tau, cfg.kl_coef, cfg.num_q,
            cfg.num_qc, cfg.qc_scalar, limit, horizon)
    if name == "COptiDICE":
        return algorithms.COptiDICE(
            obs, act, 1.0, cfg.f_type, method.init_proportion, method.obs_std.cpu().numpy(),
            method.act_std.cpu().numpy(), a_hidden_sizes=list(cfg.actor_hidden),
            c_hidden_sizes=list(cfg.critic_hidden), gamma=cfg.gamma, alpha=cfg.alpha,
            cost_ub_epsilon=cfg.cost_ub_epsilon, num_nu=cfg.num_nu, num_chi=cfg.num_chi,
            cost_limit=limit, episode_len=horizon)
    if name == "CDT":
        return algorithms.CDT(
            obs, act, 1.0, seq_len=cfg.seq_len, episode_len=horizon,
            embedding_dim=cfg.embedding_dim, num_layers=cfg.num_layers,
            num_heads=cfg.num_heads, attention_dropout=cfg.attention_dropout,
            residual_dropout=cfg.residual_dropout, embedding_dropout=cfg.embedding_dropout,
            time_emb=True, use_rew=True, use_cost=True, cost_transform=True,
            action_head_layers=1, stochastic=True, init_temperature=cfg.init_temperature,
            target_entropy=-act)
    raise KeyError(f"osrl-lib has no counterpart of {name} here")


def build_trainer(name: str, model, cfg, threshold: float | None, logger=None):
    """osrl-lib's trainer of `model` at our config (the optimizers' learning rates and scales)."""
    algorithms = osrl_algorithms()
    cls = getattr(algorithms, OSRL_CLASSES[name][1])
    extra = {} if logger is None else {"logger": logger}
    if name in ("BC-All", "BC-Safe"):
        return cls(model, None, actor_lr=cfg.actor_lr, **extra)
    if name == "CDT":
        return cls(model, None, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
                   betas=cfg.betas, clip_grad=cfg.clip_grad,
                   lr_warmup_steps=cfg.lr_warmup_steps, reward_scale=cfg.reward_scale,
                   cost_scale=cfg.cost_scale, loss_cost_weight=cfg.loss_cost_weight, **extra)
    lrs = {"BCQ-Lag": ("actor_lr", "critic_lr", "vae_lr"),
           "BEAR-Lag": ("actor_lr", "critic_lr", "alpha_lr", "vae_lr"),
           "CPQ": ("actor_lr", "critic_lr", "alpha_lr", "vae_lr"),
           "COptiDICE": ("actor_lr", "critic_lr", "scalar_lr")}[name]
    return cls(model, None, **{key: getattr(cfg, key) for key in lrs},
               reward_scale=cfg.reward_scale, cost_scale=cfg.cost_scale, **extra)


def osrl_step(name: str, trainer, cfg) -> Callable[[dict], None]:
    """One osrl-lib training step on one of our batches, fed as osrl-lib's datasets feed it."""
    if name in ("BC-All", "BC-Safe"):
        return lambda batch: trainer.train_one_step(batch["observations"], batch["actions"])
    if name == "CDT":
        def step(batch):
            trainer.train_one_step(
                batch["observations"], batch["actions"],
                batch["returns_to_go"] * cfg.reward_scale, batch["costs_to_go"] * cfg.cost_scale,
                batch["timesteps"], batch["mask"],
                torch.zeros(len(batch["observations"])), batch["costs"])
        return step

    def transitions(batch):
        done = torch.clamp(batch["terminals"] + batch["timeouts"], max=1.0)
        return (batch["observations"], batch["next_observations"], batch["actions"],
                batch["rewards"] * cfg.reward_scale, batch["costs"] * cfg.cost_scale, done)

    if name == "COptiDICE":
        return lambda batch: trainer.train_one_step((*transitions(batch), batch["is_init"]))
    return lambda batch: trainer.train_one_step(*transitions(batch))


def reference_step(name: str, spec, cfg, threshold: float | None, method) -> Callable:
    """osrl-lib's train step for our method `name`, built at our config."""
    model = build_model(name, spec, cfg, threshold, method)
    trainer = build_trainer(name, model, cfg, threshold)
    return osrl_step(name, trainer, cfg)
