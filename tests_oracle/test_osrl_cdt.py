"""CDT against osrl-lib's CDT and CDTTrainer: same sizes, same weights, the same fixed batches
(with windows padded past a trajectory's end), dropout 0 on both sides, so every loss term
and every weight, the entropy coefficient included, must agree to 1e-5 after each step.

Needs, besides the project: `pip install --no-deps osrl-lib==0.1.0 fast-safe-rl==0.1.0` and
`pip install tensorboard wandb` (fsrl imports both when osrl.algorithms is imported).

Layout differences (same math): OSRL's nn.MultiheadAttention in-projection is our `qkv`
Linear and its out-projection our `proj`; its Gaussian head's mean and log-std layers are one
Linear; OSRL's next-state head (loss weight 0) has no counterpart. OSRL's key padding mask is
not ours (see algorithms/cdt.py): the padded steps, which the losses do not read, differ.
OSRL keeps its log temperature in float64 (ours is float32): compared as values.
Returns-to-go and costs-to-go go to osrl-lib pre-scaled, as its SequenceDataset does, and
raw to ours.
"""

import contextlib
import dataclasses
import io

import numpy as np
import pytest
import torch

from algorithms.cdt import CDT, Config
from tasks.samplers import SequenceSampler
from tasks.registry import get_task

with contextlib.redirect_stdout(io.StringIO()):  # osrl prints a notice about CDT's package
    osrl_algorithms = pytest.importorskip("osrl.algorithms")

SPEC = get_task("AntRun")  # observations 33, actions 8, episodes of 200 steps
TOL = {"rtol": 1e-5, "atol": 1e-5}


class Recorder:
    """A stand-in for OSRL's logger: keeps the last value of every stored stat."""

    def __init__(self):
        self.stats = {}

    def store(self, tab=None, **values):
        self.stats.update(values)


def fake_arrays(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    lengths = [200, 150, 37, 200, 13, 200, 200, 150, 200, 200, 200, 200, 200]
    ends = np.cumsum(lengths)
    ends = ends[ends <= n]
    timeouts = np.zeros(n, np.float32)
    timeouts[ends - 1] = 1
    return {"observations": rng.normal(size=(n, SPEC.obs_dim)).astype(np.float32),
            "actions": rng.uniform(-0.99, 0.99, (n, SPEC.act_dim)).astype(np.float32),
            "rewards": rng.normal(1.0, 1.0, n).astype(np.float32),
            "costs": (rng.uniform(size=n) < 0.2).astype(np.float32),
            "terminals": np.zeros(n, np.float32), "timeouts": timeouts}


def build_pair(cfg):
    torch.manual_seed(0)
    theirs = osrl_algorithms.CDT(
        SPEC.obs_dim, SPEC.act_dim, 1.0, seq_len=cfg.seq_len,
        episode_len=SPEC.max_episode_steps, embedding_dim=cfg.embedding_dim,
        num_layers=cfg.num_layers, num_heads=cfg.num_heads, attention_dropout=0.0,
        residual_dropout=0.0, embedding_dropout=0.0, time_emb=True, use_rew=True,
        use_cost=True, cost_transform=True, action_head_layers=1, stochastic=True,
        init_temperature=cfg.init_temperature, target_entropy=-SPEC.act_dim)
    recorder = Recorder()
    trainer = osrl_algorithms.CDTTrainer(
        theirs, env=None, logger=recorder, learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay, betas=cfg.betas, clip_grad=cfg.clip_grad,
        lr_warmup_steps=cfg.lr_warmup_steps, reward_scale=cfg.reward_scale,
        cost_scale=cfg.cost_scale, loss_cost_weight=cfg.loss_cost_weight)
    ours = CDT(SPEC, cfg, None, seed=0)
    state = {}
    for name, value in theirs.state_dict().items():
        if name.startswith("state_pred_head") or name.endswith("causal_mask"):
            continue
        name = (name.replace("attention.in_proj_", "qkv.").replace("attention.out_proj", "proj")
                .replace("cost_pred_head", "cost_head"))
        state[name] = value
    head = theirs.action_head
    state["action_head.weight"] = torch.cat([head.mu.weight, head.log_std.weight])
    state["action_head.bias"] = torch.cat([head.mu.bias, head.log_std.bias])
    for name in ("action_head.mu.weight", "action_head.mu.bias", "action_head.log_std.weight",
                 "action_head.log_std.bias"):
        del state[name]
    ours.net.load_state_dict(state)  # strict: every tensor of ours comes from theirs
    return ours, theirs, trainer, recorder


def test_cdt_losses_and_updates_match_osrl():
    cfg = dataclasses.replace(Config(), attention_dropout=0.0, residual_dropout=0.0,
                              embedding_dropout=0.0, lr_warmup_steps=3, batch_size=64)
    ours, theirs, trainer, recorder = build_pair(cfg)
    sampler = SequenceSampler(fake_arrays(), cfg.batch_size, 0, "cpu", seq_len=cfg.seq_len)
    for step in range(3):
        batch = sampler.sample()
        if step == 0:
            assert (batch["mask"] == 0).any() and (batch["costs"] > 0).any()  # padded windows
        trainer.train_one_step(
            batch["observations"], batch["actions"], batch["returns_to_go"] * cfg.reward_scale,
            batch["costs_to_go"] * cfg.cost_scale, batch["timesteps"], batch["mask"],
            torch.zeros(cfg.batch_size), batch["costs"])
        stats = ours.train_step(batch)
        for key, theirs_key in (("loss/actor", "act_loss"), ("loss/cost", "cost_loss"),
                                ("cdt/nll", "nll"), ("cdt/entropy", "ent"),
                                ("cdt/cost_acc", "cost_acc"), ("loss/total", "all_loss")):
            expected = pytest.approx(recorder.stats[theirs_key], rel=1e-5, abs=1e-5)
            assert float(stats[key]) == expected, key
        torch.testing.assert_close(ours.log_alpha, theirs.log_temperature.detach().float(), **TOL)
        assert ours.scheduler.get_last_lr() == pytest.approx([recorder.stats["train_lr"]])
        mine = ours.net.state_dict()
        for name, value in theirs.state_dict().items():
            if name.startswith("blocks.") and ".attention." in name:
                other = mine[name.replace("attention.in_proj_", "qkv.")
                             .replace("attention.out_proj", "proj")]
            elif name.startswith("action_head."):
                half = 0 if ".mu." in name else 1
                other = mine["action_head." + name.rsplit(".", 1)[1]].chunk(2)[half]
            elif name.startswith("cost_pred_head"):
                other = mine[name.replace("cost_pred_head", "cost_head")]
            elif name.startswith("state_pred_head") or name.endswith("causal_mask"):
                continue
            else:
                other = mine[name]
            torch.testing.assert_close(other, value, **TOL, msg=f"step {step}: {name}")
