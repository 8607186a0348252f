"""algorithms/nets.py, once: the pieces every method shares, on numbers checked by hand."""

import numpy as np
import pytest
import torch

from algorithms.nets import (VAE, EnsembleMLP, PIDLagrangian, done_flags, ensemble_eval,
                             exp_weights, expectile_loss, gaussian_kl, per_step_threshold,
                             soft_update, vae_loss)


def test_per_step_threshold_by_hand():
    # C = 10 over L = 100 steps at gamma 0.99: 10 (1 - 0.99^100) / 0.01 / 100
    assert per_step_threshold(10.0, 0.99, 100) == pytest.approx(10 * (1 - 0.99 ** 100))
    assert per_step_threshold(20.0, 0.99, 1) == pytest.approx(20.0)
    assert per_step_threshold(10.0, 0.99, 200) == pytest.approx(10 * (1 - 0.99**200) / 0.01 / 200)
    assert per_step_threshold(10.0, 0.99, 200) == pytest.approx(4.330, abs=1e-3)
    # the discounted value of cost_limit / L per step: gamma -> 1 gives cost_limit itself,
    # gamma = 0 the cost of one step
    assert per_step_threshold(20.0, 1 - 1e-6, 100) == pytest.approx(20.0, rel=1e-4)
    assert per_step_threshold(20.0, 0.0, 100) == pytest.approx(0.2)


def test_pid_lagrangian_by_hand():
    pid = PIDLagrangian(0.1, 0.003, 0.001, threshold=1.0)
    # e = 3 - 1 = 2: I = 2, rise = 2 - 0 -> 0.1*2 + 0.003*2 + 0.001*2
    assert pid.update(torch.tensor([2.0, 4.0])).item() == pytest.approx(0.208)
    # e = -1: I = max(0, 2 - 1) = 1, rise = max(0, -1 - 2) = 0, P = max(0, e) = 0
    assert pid.update(torch.tensor([0.0, 0.0])).item() == pytest.approx(0.003)
    # e = -5: I = max(0, 1 - 5) = 0 -> 0
    assert pid.update(torch.tensor([-4.0])).item() == 0.0
    assert pid.integral.item() == 0.0 and pid.error_prev.item() == -5.0
    # e = 0.5 after -5: rise 5.5 -> 0.1*0.5 + 0.003*0.5 + 0.001*5.5
    assert pid.update(torch.tensor([1.5])).item() == pytest.approx(0.0570)
    state = pid.state_dict()
    other = PIDLagrangian(0.1, 0.003, 0.001, threshold=1.0)
    other.load_state_dict(state)
    assert other.update(torch.tensor([2.0])).item() == pid.update(torch.tensor([2.0])).item()


def test_expectile_loss_and_weights_by_hand():
    diff = torch.tensor([-1.0, 2.0])
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.3 * 1 + 0.7 * 4) / 2)
    weights = exp_weights(torch.tensor([0.0, 1.0, 10.0]), 2.0, 200.0)
    assert weights.tolist() == pytest.approx([1.0, np.exp(2.0), 200.0])


def test_soft_update_by_hand():
    # target <- (1 - tau) target + tau source, every tensor, the source untouched
    target, source = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[0.0, 10.0]]))
        target.bias.fill_(4.0)
        source.weight.copy_(torch.tensor([[1.0, 0.0]]))
        source.bias.fill_(-4.0)
    soft_update(target, source, 0.1)
    assert target.weight[0].tolist() == pytest.approx([0.1, 9.0])
    assert target.bias.tolist() == pytest.approx([3.2])
    soft_update(target, source, 0.5)
    assert target.weight[0].tolist() == pytest.approx([0.55, 4.5])
    assert target.bias.tolist() == pytest.approx([-0.4])
    assert source.weight.tolist() == [[1.0, 0.0]] and source.bias.tolist() == [-4.0]


def test_ensemble_eval_equals_the_fused_forward():
    torch.manual_seed(0)
    ens = EnsembleMLP(5, 3, (16, 16), 4)
    x = torch.randn(4, 30, 5)
    with torch.no_grad():
        # one input per member (list or stacked tensor), or one input shared by all members
        torch.testing.assert_close(ensemble_eval(ens, list(x)), ens(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ensemble_eval(ens, x), ens(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ensemble_eval(ens, x[0]), ens(x[0]), rtol=1e-5, atol=1e-6)
    # anything else is called on the stacked inputs
    assert ensemble_eval(lambda t: t * 2, [torch.ones(2, 1)] * 3).shape == (3, 2, 1)


def test_vae_loss_matches_its_formula():
    torch.manual_seed(0)
    vae = VAE(3, 2, 16, 4)
    obs, actions = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    torch.manual_seed(1)
    loss, stats = vae_loss(0.5, vae, obs, actions)
    torch.manual_seed(1)
    mean, log_std = vae.encode(obs, actions)
    z = mean + log_std.exp() * torch.randn(5, 4)
    recon = ((vae.decode(obs, z) - actions) ** 2).mean()
    kl = (-0.5 * (1 + torch.log(log_std.exp() ** 2) - mean ** 2 - log_std.exp() ** 2)).mean()
    assert loss.item() == pytest.approx((recon + 0.5 * kl).item(), rel=1e-5)
    # prior samples are clipped to [-0.5, 0.5]
    assert vae.prior(1000, "cpu").abs().max().item() == 0.5


def test_gaussian_kl_by_hand():
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 (mu^2 + s^2 - 1) - log s, per dimension
    mean, log_std = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([0.0, 0.0, np.log(0.5)])
    expected = [0.0, 0.5, 0.5 * (4.0 + 0.25 - 1.0) - np.log(0.5)]
    assert gaussian_kl(mean, log_std).tolist() == pytest.approx(expected, rel=1e-6)
    assert gaussian_kl(mean, log_std, log_std.exp()).tolist() == pytest.approx(expected, rel=1e-6)


def test_done_flags_by_hand():
    batch = {"terminals": torch.tensor([0.0, 1.0, 0.0, 1.0]),
             "timeouts": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    assert done_flags(batch).tolist() == [0.0, 1.0, 1.0, 1.0]  # terminal or timeout
    assert done_flags(batch, on_timeout=False).tolist() == [0.0, 1.0, 0.0, 1.0]
    assert done_flags(batch, clip=False).tolist() == [0.0, 1.0, 1.0, 2.0]  # the authors' sum
