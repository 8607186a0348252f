"""The collector's PPO-Lagrangian arithmetic (tasks/collect/ppo_lagrangian.py), on numbers small
enough to check by hand: GAE, the multiplier update, the Lagrangian advantage and the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tasks.collect.ppo_lagrangian import (gae, lagrangian_advantages,  # noqa: E402
                                          ppo_lagrangian_loss, update_multiplier)


def test_gae_by_hand():
    # two environments, the same three steps; the second one's episode ends after step 1
    rew = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    val = np.array([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]])
    last_val = np.array([2.0, 2.0])
    done = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    adv, ret = gae(rew, val, last_val, done, gamma=0.5, lam=0.5)
    # env 0, backwards: delta_2 = 3 + 0.5*2 - 1.5 = 2.5
    #                   delta_1 = 2 + 0.5*1.5 - 1 = 1.75,  A_1 = 1.75 + 0.25*2.5 = 2.375
    #                   delta_0 = 1 + 0.5*1 - 0.5 = 1,     A_0 = 1 + 0.25*2.375 = 1.59375
    # env 1: step 1 ends its episode, so neither V(s_2) nor A_2 reaches it:
    #                   delta_1 = 2 - 1 = 1 = A_1,          A_0 = 1 + 0.25*1 = 1.25
    np.testing.assert_allclose(adv, [[1.59375, 1.25], [2.375, 1.0], [2.5, 2.5]])
    np.testing.assert_allclose(ret, adv + val)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    rng = np.random.default_rng(0)
    rew, val = rng.normal(size=(5, 1)), rng.normal(size=(5, 1))
    last = rng.normal(size=1)
    adv, ret = gae(rew, val, last, np.zeros((5, 1)), gamma=0.9, lam=1.0)
    discounted = [sum(0.9 ** (k - t) * rew[k, 0] for k in range(t, 5)) + 0.9 ** (5 - t) * last[0]
                  for t in range(5)]
    np.testing.assert_allclose(ret[:, 0], discounted)
    np.testing.assert_allclose(adv[:, 0], np.asarray(discounted) - val[:, 0])


def test_multiplier_update_is_a_projected_gradient_step():
    # cost above the limit: lam grows by lr * (cost - limit)
    assert update_multiplier(0.5, mean_episode_cost=6.0, cost_limit=2.0, lr=0.25) == 1.5
    # cost below the limit: lam shrinks, but never below zero
    assert update_multiplier(0.5, mean_episode_cost=3.0, cost_limit=4.0, lr=0.25) == 0.25
    assert update_multiplier(0.5, mean_episode_cost=0.0, cost_limit=4.0, lr=0.25) == 0.0
    assert update_multiplier(0.0, mean_episode_cost=4.0, cost_limit=4.0, lr=0.25) == 0.0
    # the unconstrained agent (infinite limit) keeps its multiplier
    assert update_multiplier(0.3, mean_episode_cost=99.0, cost_limit=math.inf, lr=0.25) == 0.3


def test_lagrangian_advantage_weighs_the_cost_by_the_multiplier():
    adv_r = np.array([[1.0], [2.0], [3.0]])
    adv_c = np.array([[0.0], [0.0], [3.0]])
    # lam = 0: the reward advantage alone, normalised (mean 2, std sqrt(2/3))
    np.testing.assert_allclose(lagrangian_advantages(adv_r, adv_c, 0.0),
                               np.array([-1.0, 0.0, 1.0]) / (math.sqrt(2 / 3) + 1e-8))
    # lam = 1: (A_r - A_c) / 2 = [0.5, 1, 0], mean 0.5, std sqrt(1/6): the costly third step
    # goes from best to worst
    np.testing.assert_allclose(lagrangian_advantages(adv_r, adv_c, 1.0),
                               np.array([0.0, 0.5, -0.5]) / (math.sqrt(1 / 6) + 1e-8))
    # flat over environments: a [T, E] rollout gives T * E advantages
    assert lagrangian_advantages(np.ones((4, 3)), np.zeros((4, 3)), 0.5).shape == (12,)


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def test_ppo_lagrangian_loss_by_hand():
    # a unit Gaussian at 0 (one action dimension), every action 1: logp = -0.5 - 0.5 ln(2 pi)
    mean = torch.zeros((3, 1), dtype=torch.float64, requires_grad=True)
    log_std = torch.zeros(1, dtype=torch.float64)
    actions = torch.ones((3, 1), dtype=torch.float64)
    logp = -0.5 - 0.5 * math.log(2 * math.pi)
    ratios = [1.5, 0.5, 1.0]  # new / old probability of each action
    old_logp = _t([logp - math.log(r) for r in ratios])
    adv = _t([1.0, -1.0, 2.0])
    value_r, ret_r = _t([1.0, 2.0, 3.0]), _t([1.0, 1.0, 1.0])
    value_c, ret_c = _t([0.0, 0.0, 0.0]), _t([3.0, 0.0, 0.0])

    loss, stats = ppo_lagrangian_loss(mean, log_std, actions, old_logp, adv, value_r, value_c,
                                      ret_r, ret_c, clip_ratio=0.2)
    # surrogate per sample, min(r A, clip(r, 0.8, 1.2) A): min(1.5, 1.2) = 1.2,
    # min(-0.5, -0.8) = -0.8, min(2, 2) = 2; the policy loss is minus their mean
    assert stats["policy_loss"] == pytest.approx(-(1.2 - 0.8 + 2.0) / 3)
    # squared errors: reward critic (0 + 1 + 4) / 3, cost critic (9 + 0 + 0) / 3
    assert stats["value_loss"] == pytest.approx(5 / 3 + 3.0)
    assert float(loss.detach()) == pytest.approx(-0.8 + 0.5 * (5 / 3 + 3.0))
    # approximate KL: mean of (r - 1) - ln r
    assert stats["approx_kl"] == pytest.approx(
        ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5)) + 0.0) / 3)

    # the clipped samples give the policy no gradient; the third: d(-r A / 3)/d mean
    # = -(A / 3) * r * d logp/d mean = -(2 / 3) * 1 * (1 - 0) / 1
    loss.backward()
    np.testing.assert_allclose(mean.grad.numpy()[:, 0], [0.0, 0.0, -2 / 3])


def test_ppo_lagrangian_loss_without_clipping_is_the_plain_policy_gradient_loss():
    mean = _t([[0.2, -0.1], [0.0, 0.3]])
    log_std = _t([-0.5, -0.5])
    actions = _t([[0.1, 0.0], [-0.2, 0.4]])
    dist = torch.distributions.Normal(mean, torch.exp(log_std))
    old_logp = dist.log_prob(actions).sum(-1)  # the policy has not moved: every ratio is 1
    adv = _t([0.7, -1.3])
    zeros = _t([0.0, 0.0])
    loss, stats = ppo_lagrangian_loss(mean, log_std, actions, old_logp, adv, zeros, zeros,
                                      zeros, zeros, clip_ratio=0.2)
    assert float(loss) == pytest.approx(-float(adv.mean()))
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-12)
