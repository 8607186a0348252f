"""BCQ-Lag: the threshold, the PID Lagrangian and the losses by hand, then training and saving."""

import dataclasses

import numpy as np
import pytest
import torch

from algorithms.bcq_lag import BCQLag, Config, actor_loss, critic_losses, soft_clipped_double_q
from algorithms.nets import (PIDLagrangian, per_step_threshold,
                             scale_batch)
from tasks.samplers import BatchSampler
from tasks.registry import get_task
from helpers import fake_arrays

SPEC = get_task("DroneRun")


def small_config(**changes):
    return dataclasses.replace(Config(), batch_size=64, actor_hidden=(32, 32),
                               critic_hidden=(32, 32), vae_hidden=32, **changes)


def bcql(threshold=10.0, seed=0, **changes):
    torch.manual_seed(seed)
    return BCQLag(SPEC, small_config(**changes), threshold, seed)


def test_the_cost_threshold_is_the_per_step_threshold():
    method = bcql(threshold=40.0)
    assert method.kappa == pytest.approx(
        per_step_threshold(40.0, 0.99, SPEC.max_episode_steps))
    assert method.pid.threshold == method.kappa


def test_soft_clipped_double_q_by_hand():
    # num = 1: Q1 = [1, 0], Q2 = [2, 0.5]
    q = torch.tensor([[1.0, 0.0], [2.0, 0.5]])
    assert soft_clipped_double_q(q, 1, 0.75).tolist() == pytest.approx([1.25, 0.125])
    # num = 2: Q1 = min of rows 0, 1; Q2 = min of rows 2, 3
    q = torch.tensor([[1.0], [3.0], [4.0], [2.0]])
    assert soft_clipped_double_q(q, 2, 0.75).item() == pytest.approx(0.75 * 1 + 0.25 * 2)


class ZeroVAE:
    """Stand-in VAE: every decoded action is 0 (the actor stand-in ignores it anyway)."""

    latent_dim = 1

    def prior(self, n, device):
        return torch.zeros(n, 1)

    def decode(self, obs, z=None):
        return torch.zeros(obs.shape[0], 1)


def test_critic_losses_by_hand():
    # B = 2 states, n = 2 sampled actions each; one network in each of Q1, Q2, Qc1, Qc2
    cfg = dataclasses.replace(Config(), sample_action_num=2, num_q=1, num_qc=1)
    batch = {"observations": torch.zeros(2, 1), "next_observations": torch.ones(2, 1),
             "actions": torch.zeros(2, 1), "rewards": torch.tensor([1.0, 0.0]),
             "costs": torch.tensor([0.0, 1.0]), "terminals": torch.tensor([0.0, 1.0]),
             "timeouts": torch.tensor([0.0, 0.0])}
    # target rows: (s'0, a0), (s'0, a1), (s'1, a0), (s'1, a1) for Q1, Q2, Qc1, Qc2
    target = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 0.0, 3.0, 5.0],
                           [0.5, 0.1, 0.2, 0.2], [0.3, 0.3, 0.1, 0.4]])[..., None]
    current = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.5, 1.0], [0.0, 2.0]])[..., None]

    def target_net(x):
        assert x.shape[:2] == (4, 4)  # one input per member, n B rows
        return target

    loss, stats = critic_losses(cfg, lambda sa: current, target_net, lambda s, a: a, ZeroVAE(),
                                batch)
    # soft double Q per row: 0.75 min + 0.25 max = [1.25, 0.5, 3, 4.25]; max over actions
    # [1.25, 4.25]; backup r + 0.99 (1 - d) = [1 + 0.99 * 1.25, 0]
    backup = np.array([1 + 0.99 * 1.25, 0.0])
    expected_q = np.mean((np.array([1.0, 0.0]) - backup) ** 2) + np.mean(
        (np.array([2.0, 1.0]) - backup) ** 2)
    assert stats["loss/critic"].item() == pytest.approx(expected_q, rel=1e-6)
    # cost per row: 0.75 min + 0.25 max = [0.35, 0.15, 0.125, 0.25]
    # max over actions [0.35, 0.25]; backup c + 0.99 Qc', done ignored (OSRL)
    backup_c = np.array([0.99 * 0.35, 1 + 0.99 * 0.25])
    expected_qc = np.mean((np.array([0.5, 1.0]) - backup_c) ** 2) + np.mean(
        (np.array([0.0, 2.0]) - backup_c) ** 2)
    assert stats["loss/cost_critic"].item() == pytest.approx(expected_qc, rel=1e-6)
    assert loss.item() == pytest.approx(expected_q + expected_qc, rel=1e-6)


def test_actor_loss_by_hand():
    cfg = dataclasses.replace(Config(), num_q=1, num_qc=1)
    q = torch.tensor([[1.0, 4.0], [2.0, 3.0], [0.5, 2.0], [1.0, 1.0]], requires_grad=True)
    pid = PIDLagrangian(0.1, 0.0, 0.0, threshold=0.5)
    loss, stats = actor_loss(cfg, lambda s, a: a, lambda sa: q[..., None], ZeroVAE(), pid,
                             torch.zeros(2, 1), threshold=0.5)
    # min Q = [1, 3]; min Qc = [0.5, 1]; e = 0.75 - 0.5 = 0.25 -> multiplier 0.025
    assert stats["lagrangian"].item() == pytest.approx(0.025)
    penalty = np.mean([0.0, 0.5]) * 0.025
    assert stats["loss/qc_penalty"].item() == pytest.approx(penalty)
    assert loss.item() == pytest.approx(-2.0 + penalty)
    loss.backward()  # the multiplier is a constant: d loss / d Qc = multiplier / B
    assert q.grad[:, 1].tolist() == pytest.approx([0.0, -0.5, 0.0, 0.0125])


def test_scale_batch_by_hand():
    batch = {"rewards": torch.tensor([10.0]), "costs": torch.tensor([1.0])}
    scaled = scale_batch(batch, 0.1, 2.0)
    assert scaled["rewards"].item() == pytest.approx(1.0) and scaled["costs"].item() == 2.0
    assert batch["rewards"].item() == 10.0  # the batch itself is left as it was


def test_rewards_are_scaled_inside_the_step():
    """train_step multiplies the batch's rewards by reward_scale and its costs by cost_scale
    before anything learns from them: with scales (0.1, 2), a step on the raw batch is the
    very step (losses, multiplier, weights) that a method without scales takes on the batch
    scaled by hand, and not the step it takes on the raw batch."""
    raw = BatchSampler(fake_arrays(), 64, seed=0, device="cpu").sample()
    by_hand = {**raw, "rewards": raw["rewards"] * 0.1, "costs": raw["costs"] * 2.0}

    def step(batch, reward_scale, cost_scale):
        method = bcql(reward_scale=reward_scale, cost_scale=cost_scale)  # the same weights
        torch.manual_seed(1)  # the same draws
        stats = {key: float(value) for key, value in method.train_step(batch).items()}
        return stats, method.critics.state_dict()

    scaled_inside, critics = step(raw, 0.1, 2.0)
    scaled_outside, critics_outside = step(by_hand, 1.0, 1.0)
    not_scaled, _ = step(raw, 1.0, 1.0)
    assert scaled_inside == scaled_outside
    for key, value in critics.items():
        assert torch.equal(value, critics_outside[key]), key
    # each scale reaches its own critic's target: both losses move with them
    assert scaled_inside["loss/critic"] != pytest.approx(not_scaled["loss/critic"])
    assert scaled_inside["loss/cost_critic"] != pytest.approx(not_scaled["loss/cost_critic"])


def test_training_runs_without_nan_and_save_load_acts_the_same(tmp_path):
    method = bcql()
    sampler = BatchSampler(fake_arrays(), 64, seed=0, device="cpu")
    for _ in range(300):
        stats = method.train_step(sampler.sample())
    assert all(np.isfinite(float(v)) for v in stats.values())
    assert float(stats["lagrangian"]) >= 0.0
    obs = np.random.default_rng(1).normal(size=(7, SPEC.obs_dim)).astype(np.float32)
    torch.manual_seed(5)
    actions = method.act(obs)
    assert actions.shape == (7, SPEC.act_dim) and np.all(np.abs(actions) <= 1.0)
    torch.save(method.state_dict(), tmp_path / "state.pt")
    other = bcql(seed=1)
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    torch.manual_seed(5)
    np.testing.assert_array_equal(other.act(obs), actions)
    # the PID state travels too: the next multiplier is the same
    batch = sampler.sample()
    torch.manual_seed(6)
    first = method.train_step(batch)
    torch.manual_seed(6)
    second = other.train_step(batch)
    assert first["lagrangian"].item() == second["lagrangian"].item()
    assert first["loss/actor"].item() == second["loss/actor"].item()
