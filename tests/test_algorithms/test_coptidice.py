"""COptiDICE: the soft-chi divergence, the optimal ratio and the losses by hand; the dataset
statistics; training runs; save/load. (tests_oracle/test_osrl_coptidice.py checks the losses
against osrl-lib.)"""

import dataclasses
import math

import numpy as np
import pytest
import torch

from algorithms.coptidice import (COptiDICE, Config, actor_loss, dice_losses, optimal_w,
                                  soft_chi, soft_chi_prime_inv)
from algorithms.nets import per_step_threshold
from tasks.samplers import BatchSampler
from tasks.registry import get_task
from helpers import fake_arrays

SPEC = get_task("DroneRun")


def small_config(**changes):
    return dataclasses.replace(Config(), batch_size=32, actor_hidden=(32, 32),
                               critic_hidden=(32, 32),
                               **changes)


def coptidice(threshold=10.0, seed=0, **changes):
    torch.manual_seed(seed)
    return COptiDICE(SPEC, small_config(**changes), threshold, seed)


def test_soft_chi_and_its_derivative_by_hand():
    x = torch.tensor([0.0, 0.5, 1.0, 3.0], requires_grad=True)
    f = soft_chi(x)
    # x log x - x + 1 below 1, (x - 1)^2 / 2 from 1 on
    assert f.tolist() == pytest.approx([1.0, 0.5 * math.log(0.5) - 0.5 + 1, 0.0, 2.0], abs=1e-6)
    (grad,) = torch.autograd.grad(f.sum(), x)
    # f'(x) = log x below 1 (log(x + 1e-10) + x / (x + 1e-10) - 1), x - 1 above
    assert grad[1:].tolist() == pytest.approx([math.log(0.5), 0.0, 2.0], abs=1e-6)
    assert grad[0].item() == pytest.approx(math.log(1e-10) - 1, rel=1e-5)  # finite at 0


def test_soft_chi_prime_inverse_inverts_the_derivative():
    y = torch.tensor([-100.0, -1.0, 0.0, 2.0])
    assert soft_chi_prime_inv(y).tolist() == pytest.approx([math.exp(-100), math.exp(-1), 1, 3])
    x = torch.tensor([0.2, 0.7, 1.0, 1.5, 3.0])
    derivative = torch.where(x < 1, torch.log(x), x - 1)
    assert soft_chi_prime_inv(derivative).tolist() == pytest.approx(x.tolist(), rel=1e-6)


def test_optimal_w_by_hand():
    cfg = Config()  # alpha 0.5, gamma 0.99
    nu_s, nu_next = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 5.0])
    e, w = optimal_w(cfg, nu_s, nu_next, rewards=torch.tensor([0.5, 0.0]),
                     costs=torch.tensor([1.0, 0.0]), done=torch.tensor([0.0, 1.0]),
                     lam=torch.tensor([2.0]))
    # e1 = 0.5 - 2 + 0.99 * 2 - 1 = -0.52 -> exp(-1.04); e2 = 0 (done) - 0 = 0 -> 1
    assert e.tolist() == pytest.approx([-0.52, 0.0], abs=1e-6)
    assert w.tolist() == pytest.approx([math.exp(-1.04), 1.0], rel=1e-6)


def test_dice_losses_by_hand_without_the_cost_bound():
    cfg = dataclasses.replace(Config(), cost_ub_epsilon=0.0, gamma=0.5, alpha=1.0)
    # nu members on [s1, s2, s1', s2']: the min is nu
    nu = torch.tensor([[0.0, 1.0, 1.0, 3.0], [1.0, 1.0, 2.0, 2.0]])
    raw = torch.tensor([0.0])  # softplus(0) = log 2
    rewards, costs = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    done, is_init = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    loss, lam, stats = dice_losses(cfg, nu, None, raw, raw, rewards, costs, done, is_init,
                                   init_proportion=0.5, threshold=0.1)
    log2 = math.log(2)
    e = np.array([1 + 0.5 * 1 - 0, -log2 + 0.5 * 2 - 1])  # r - lambda c + gamma nu' - nu
    w = np.where(e < 0, np.exp(e), e + 1)
    f = np.where(w < 1, w * (np.log(w) - 1) + 1, 0.5 * (w - 1) ** 2)
    nu_loss = (1 - 0.5) * np.mean([0.0 * 1 / 0.5, 0.0]) + np.mean(w * e - f)
    weighted_c = np.mean(w * [0.0, 1.0])
    assert lam.item() == pytest.approx(log2)
    assert stats["loss/nu"].item() == pytest.approx(nu_loss, rel=1e-6)
    assert stats["cost_estimate"].item() == pytest.approx(weighted_c, rel=1e-6)
    assert stats["loss/lmbda"].item() == pytest.approx(log2 * (0.1 - weighted_c), rel=1e-6)
    assert stats["td_error"].item() == pytest.approx(np.mean(e**2), rel=1e-6)
    assert stats["Df"].item() == pytest.approx(f.mean(), rel=1e-5)
    assert stats["loss/chi"].item() == 0.0 and stats["loss/tau"].item() == 0.0
    assert loss.item() == pytest.approx(nu_loss + log2 * (0.1 - weighted_c), rel=1e-6)


def test_dice_losses_cost_bound_by_hand():
    cfg = dataclasses.replace(Config(), gamma=0.5, alpha=1.0, cost_ub_epsilon=0.01)
    nu = torch.zeros(1, 4)  # e = r - lambda c, so w is known
    chi = torch.tensor([[1.0, 0.0, 2.0, 4.0]])  # chi(s1), chi(s2), chi(s1'), chi(s2')
    tau_raw = torch.tensor([math.log(math.e - 1)])  # softplus -> 1
    lmbda_raw = torch.tensor([-20.0])  # lambda ~ 0
    rewards, costs = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])
    done, is_init = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])
    _, _, stats = dice_losses(cfg, nu, chi, tau_raw, lmbda_raw, rewards, costs, done, is_init,
                              init_proportion=0.5, threshold=0.3)
    lam = math.log1p(math.exp(-20.0))
    e = np.array([-lam, 1 - lam])
    w = np.where(e < 0, np.exp(e), e + 1)
    # ell = (1 - gamma) chi(s) is_init / P(init) + w (c + gamma (1 - done) chi(s') - chi(s))
    ell = np.array([0.5 * 1 * 1 / 0.5 + w[0] * (1 + 0.5 * 2 - 1), w[1] * (1 + 0 - 0)])
    weights = 2 * np.exp(ell) / np.exp(ell).sum()  # tau = 1
    kl = np.mean(weights * np.log(weights) - weights + 1)
    assert stats["tau"].item() == pytest.approx(1.0, rel=1e-6)
    assert stats["loss/chi"].item() == pytest.approx(np.mean(weights * ell), rel=1e-5)
    assert stats["D_kl"].item() == pytest.approx(kl, rel=1e-5)
    assert stats["loss/tau"].item() == pytest.approx(1.0 * (0.01 - kl), rel=1e-5)
    assert stats["cost_estimate"].item() == pytest.approx(np.mean(weights * w * costs.numpy()),
                                                          rel=1e-5)


def test_actor_loss_is_weighted_gaussian_log_likelihood_before_tanh():
    class Fixed(torch.nn.Module):
        def forward(self, obs):
            return torch.zeros(obs.shape[0], 2), torch.zeros(obs.shape[0], 2)  # N(0, 1)

    actions = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    loss, _ = actor_loss(Fixed(), torch.zeros(2, 3), actions, w=torch.tensor([1.0, 2.0]))
    log_p = -0.5 * np.array([0.0, 5.0]) - 2 * 0.5 * math.log(2 * math.pi)
    assert loss.item() == pytest.approx(-np.mean([1.0, 2.0] * log_p), rel=1e-6)


def test_training_data_marks_initial_states_and_float32_statistics():
    arrays = fake_arrays()  # 12 episodes of 50 steps, each ending in a timeout
    arrays["observations"] = arrays["observations"].astype(np.float64)
    arrays["terminals"][10] = 1.0
    method = coptidice()
    data = method.training_data(arrays)
    starts = np.flatnonzero(data["is_init"])
    assert starts.tolist() == [0, 11, *range(50, 600, 50)]
    assert method.init_proportion == pytest.approx(13 / 600)
    assert method.obs_std.dtype == torch.float32 and method.obs_std.shape == (1, SPEC.obs_dim)
    np.testing.assert_allclose(method.obs_std.numpy()[0], arrays["observations"].std(0),
                               rtol=1e-6)
    assert method.kappa == pytest.approx(
        per_step_threshold(10.0, 0.99, SPEC.max_episode_steps))


def test_a_few_hundred_steps_stay_finite():
    method = coptidice()
    sampler = BatchSampler(method.training_data(fake_arrays()), 32, seed=0, device="cpu")
    for _ in range(300):
        stats = method.train_step(sampler.sample())
    assert all(np.isfinite(float(v)) for v in stats.values())
    assert {"loss/nu", "loss/chi", "loss/actor", "lmbda", "tau"} <= set(stats)


def test_training_without_training_data_fails_clearly():
    method = coptidice()
    batch = BatchSampler(fake_arrays(), 32, seed=0, device="cpu").sample()
    with pytest.raises(RuntimeError, match="training_data"):
        method.train_step(batch)


def test_metadrive_trains_longer_in_the_paper_profile():
    assert COptiDICE.steps_for("paper", "hardmean") == 200_000  # OSRL's MetaDrive configs
    assert COptiDICE.steps_for("paper", "CarCircle") == 100_000
    assert COptiDICE.steps_for("quick", "hardmean") == COptiDICE.profile_steps["quick"]
