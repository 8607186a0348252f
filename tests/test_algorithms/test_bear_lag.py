"""BEAR-Lag: the MMD, the PID Lagrangian, the threshold and the losses by hand; training runs;
save/load. (tests_oracle/test_osrl_bear_lag.py checks the losses against osrl-lib.)"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from algorithms.bear_lag import (BEARLag, Config, actor_objective, critic_loss, gaussian_mmd,
                                 laplacian_mmd)
from algorithms.nets import per_step_threshold
from tasks.samplers import BatchSampler
from tasks.registry import get_task
from helpers import fake_arrays

SPEC = get_task("DroneRun")


def small_config(**changes):
    return dataclasses.replace(Config(), batch_size=32, actor_hidden=(32, 32),
                               critic_hidden=(32, 32),
                               vae_hidden=32, **changes)


def bear(threshold=10.0, seed=0, **changes):
    torch.manual_seed(seed)
    return BEARLag(SPEC, small_config(**changes), threshold, seed)


def test_the_cost_threshold_is_the_per_step_threshold():
    assert bear(threshold=20.0).kappa == pytest.approx(
        per_step_threshold(20.0, 0.99, SPEC.max_episode_steps))


def test_gaussian_mmd_by_hand():
    # one state, two 1-d samples each side: x = {0, 1}, y = {0, 2}; sigma = 0.5, so
    # k(u, v) = exp(-(u - v)^2 / (2 * 0.5)) = exp(-(u - v)^2)
    x = torch.tensor([[[0.0], [1.0]]])
    y = torch.tensor([[[0.0], [2.0]]])
    e = math.exp
    kxx = (2 + 2 * e(-1)) / 4
    kyy = (2 + 2 * e(-4)) / 4
    kxy = (1 + e(-4) + e(-1) + e(-1)) / 4
    expected = math.sqrt(kxx + kyy - 2 * kxy + 1e-6)
    assert gaussian_mmd(x, y, 0.5).tolist() == pytest.approx([expected], rel=1e-6)
    # the Laplacian kernel: exp(-|u - v| / (2 sigma))
    kxx, kyy = (2 + 2 * e(-1)) / 4, (2 + 2 * e(-2)) / 4
    kxy = (1 + e(-2) + 2 * e(-1)) / 4
    assert laplacian_mmd(x, y, 0.5).tolist() == pytest.approx(
        [math.sqrt(kxx + kyy - 2 * kxy + 1e-6)], rel=1e-6)


def test_gaussian_mmd_three_points_in_2d_and_batch_rows():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    sigma = 1.0

    def k(u, v):
        return math.exp(-float(((u - v) ** 2).sum()) / (2 * sigma))

    def mean_k(a, b):
        return sum(k(u, v) for u in a for v in b) / (len(a) * len(b))

    expected = math.sqrt(mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y) + 1e-6)
    both = gaussian_mmd(torch.stack([x, x]), torch.stack([y, x]), sigma)
    assert both[0].item() == pytest.approx(expected, rel=1e-6)
    assert both[1].item() == pytest.approx(math.sqrt(1e-6), rel=1e-4)  # same samples


def test_critic_loss_by_hand():
    # num_q = num_qc = 1 (members Q1, Q2, Qc1, Qc2), B = 1, two target actions per s'
    cfg = dataclasses.replace(Config(), num_q=1, num_qc=1, sample_action_num=2)
    target = torch.tensor([[1.0, 3.0], [2.0, 0.0], [0.5, 0.1], [0.2, 0.4]])[..., None]

    def actor_target(obs):
        return torch.zeros(obs.shape[0], 1), torch.full((obs.shape[0], 1), -20.0)

    def critics(x):
        return torch.tensor([[2.0], [2.0], [1.0], [1.0]])[..., None]

    def critics_target(x):
        assert x.shape == (4, 2, 2)  # each member on its own (s', a') pairs
        return target

    one, zero = torch.ones(1), torch.zeros(1)
    args = (torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1))
    loss, stats = critic_loss(cfg, critics, critics_target, actor_target, *args,
                              rewards=one, costs=one, done=zero)
    # sample 1: 0.75 min(1, 2) + 0.25 max = 1.25; sample 2: 0.75 * 0 + 0.25 * 3 = 0.75 -> 1.25
    # cost:     0.75 * 0.2 + 0.25 * 0.5 = 0.275;   0.75 * 0.1 + 0.25 * 0.4 = 0.175 -> 0.275
    y, yc = 1 + 0.99 * 1.25, 1 + 0.99 * 0.275
    assert stats["loss/critic"].item() == pytest.approx(2 * (2 - y) ** 2, rel=1e-6)
    assert stats["loss/cost_critic"].item() == pytest.approx(2 * (1 - yc) ** 2, rel=1e-6)
    assert loss.item() == pytest.approx(2 * (2 - y) ** 2 + 2 * (1 - yc) ** 2, rel=1e-6)
    # done: the reward stops bootstrapping, the cost does not (OSRL) unless cost_done_mask
    _, stats = critic_loss(cfg, critics, critics_target, actor_target, *args,
                           rewards=one, costs=one, done=one)
    assert stats["loss/critic"].item() == pytest.approx(2 * (2 - 1) ** 2)
    assert stats["loss/cost_critic"].item() == pytest.approx(2 * (1 - yc) ** 2, rel=1e-6)
    masked = dataclasses.replace(cfg, cost_done_mask=True)
    _, stats = critic_loss(masked, critics, critics_target, actor_target, *args,
                           rewards=one, costs=one, done=one)
    assert stats["loss/cost_critic"].item() == pytest.approx(0.0)


def test_actor_objective_by_hand():
    q, qc, mmd = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.5]), torch.tensor([0.1, 0.3])
    loss, stats = actor_objective(Config(), q, qc, mmd, alpha=torch.tensor(2.0),
                                  multiplier=torch.tensor(0.5), threshold=1.0)
    # mean(2 (mmd - 0.05) - q) = mean(-0.9, -1.5) = -1.2; mean(0.5 (qc - 1)) = 0.25
    assert stats["loss/qc_penalty"].item() == pytest.approx(0.25)
    assert loss.item() == pytest.approx(-0.95)
    loss, _ = actor_objective(Config(), q, qc, mmd, torch.tensor(2.0), torch.tensor(0.5), 1.0,
                              use_q=False)
    assert loss.item() == pytest.approx((0.1 + 0.5) / 2 + 0.25)  # without -Q


def test_a_few_hundred_steps_stay_finite():
    method = bear()
    sampler = BatchSampler(method.training_data(fake_arrays()), 32, seed=0, device="cpu")
    for _ in range(300):
        stats = method.train_step(sampler.sample())
    assert all(np.isfinite(float(v)) for v in stats.values())


@pytest.mark.parametrize("target_mmd, bound", [(-10.0, 1), (10.0, 0)])
def test_the_dual_updates_drive_log_alpha_to_its_bound_and_the_clamp_holds_it(target_mmd,
                                                                              bound):
    """A target below every MMD (which is >= 0) raises log alpha at every update, one above
    every MMD (the MMD of the Gaussian kernel is below sqrt(2 + 1e-6)) lowers it: step by
    step, each update moving it by alpha_lr alpha (mean MMD - target), until the bound of
    `log_alpha_bounds` on that side stops it there, where the unclamped update would pass it."""
    bounds = (-0.75, 0.5)  # exact in float32, as log alpha is
    method = bear(target_mmd=target_mmd, alpha_lr=0.01, log_alpha_bounds=bounds)
    cfg = method.config
    sampler = BatchSampler(method.training_data(fake_arrays()), 32, seed=0, device="cpu")
    inside, clamped = 0, 0
    for _ in range(40):
        before = method.log_alpha.item()
        stats = method.train_step(sampler.sample())
        assert float(stats["alpha"]) == pytest.approx(math.exp(before), rel=1e-6)
        unclamped = before + cfg.alpha_lr * float(stats["alpha"]) * (
            float(stats["loss/mmd"]) - target_mmd)
        after = method.log_alpha.item()
        if bounds[0] < unclamped < bounds[1]:  # a real update, inside the bounds
            assert after == pytest.approx(unclamped, rel=1e-5, abs=1e-7)
            assert (after > before) if bound else (after < before)
            inside += 1
        else:  # past the bound: the clamp puts it on the bound, exactly
            assert (unclamped > bounds[1]) if bound else (unclamped < bounds[0])
            assert after == bounds[bound] and after != unclamped
            clamped += 1
    assert inside >= 3 and clamped >= 3  # it got there by updates, and stays there
    assert method.log_alpha.item() == bounds[bound]


def test_metadrive_trains_longer_in_the_paper_profile():
    assert BEARLag.steps_for("paper", "easysparse") == 200_000  # OSRL's MetaDrive configs
    assert BEARLag.steps_for("paper", "AntRun") == 300_000
    assert BEARLag.steps_for("quick", "easysparse") == BEARLag.profile_steps["quick"]
