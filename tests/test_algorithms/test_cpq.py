"""CPQ: the thresholds, the losses and alpha's update by hand, then training and saving."""

import dataclasses

import numpy as np
import pytest
import torch

from algorithms.cpq import CPQ, Config, actor_loss, alpha_update, critic_losses
from tasks.samplers import BatchSampler
from tasks.registry import get_task
from helpers import fake_arrays

SPEC = get_task("DroneRun")


def small_config(**changes):
    return dataclasses.replace(Config(), batch_size=64, actor_hidden=(32, 32),
                               critic_hidden=(32, 32), vae_hidden=32, **changes)


def cpq(threshold=10.0, seed=0, **changes):
    torch.manual_seed(seed)
    return CPQ(SPEC, small_config(**changes), threshold, seed)


def test_thresholds_by_hand():
    method = cpq(threshold=20.0)
    steps = SPEC.max_episode_steps
    kappa = 20 * (1 - 0.99 ** steps) / (1 - 0.99) / steps
    assert method.kappa == pytest.approx(kappa)
    # the OOD penalty's threshold is qc_scalar * kappa: alpha grows while E[Qc_ood] < 1.5 kappa
    log_alpha = torch.tensor(0.0)
    grown = alpha_update(method.config, log_alpha, torch.tensor(0.0), kappa)
    assert grown.item() == pytest.approx(1e-4 * 1.5 * kappa)
    shrunk = alpha_update(method.config, log_alpha, torch.tensor(2.5 * kappa), kappa)
    assert shrunk.item() == pytest.approx(-1e-4 * kappa)
    assert alpha_update(dataclasses.replace(method.config, alpha_lr=100.0), log_alpha,
                        torch.tensor(0.0), kappa).item() == 5.0  # clipped


class FixedActor:
    """Stand-in actor: samples 0 and a Gaussian of mean 0, std e^-50 (samples are 0)."""

    def sample(self, obs):
        return torch.zeros(obs.shape[0], 1)

    def __call__(self, obs):
        return torch.zeros(obs.shape[0], 1), torch.full((obs.shape[0], 1), -50.0)


class FixedVAE:
    """Stand-in VAE encoder: posterior means [0, 1, 2, 3] and std 1, so KL = m^2 / 2."""

    def encode(self, obs, actions):
        return torch.arange(4.0)[:, None], torch.zeros(4, 1)


def test_critic_losses_by_hand():
    # B = 2, n = 2 actor samples per state for the OOD penalty
    cfg = dataclasses.replace(Config(), sample_action_num=2)
    batch = {"observations": torch.zeros(2, 1), "next_observations": torch.ones(2, 1),
             "actions": torch.zeros(2, 1), "rewards": torch.tensor([1.0, 2.0]),
             "costs": torch.tensor([0.0, 1.0]), "terminals": torch.tensor([0.0, 1.0]),
             "timeouts": torch.tensor([0.0, 0.0])}
    q_target = torch.tensor([[1.0, 3.0], [2.0, 0.5]])[..., None]  # min [1, 0.5]
    qc_next = torch.tensor([[0.1, 0.5], [0.2, 0.9]])[..., None]  # min [0.1, 0.5]
    # OOD rows (sample, state): (0, 0), (0, 1), (1, 0), (1, 1); min over members [1, 1, 1, 2]
    qc_ood_rows = torch.tensor([[1.0, 1.0, 1.0, 2.0], [1.0, 1.0, 1.0, 3.0]])[..., None]

    def qc_target(sa):
        return qc_next if sa.shape[0] == 2 else qc_ood_rows

    q_now = torch.tensor([[1.0, 2.0], [1.0, 2.0]])[..., None]
    qc_now = torch.tensor([[0.0, 1.0], [0.1, 1.5]])[..., None]
    kappa = 0.3
    loss, qc_ood, stats = critic_losses(cfg, lambda sa: q_now, lambda sa: qc_now,
                                        lambda sa: q_target, qc_target, FixedActor(),
                                        FixedVAE(), batch, kappa, torch.tensor(0.0))
    # backup r + 0.99 (1 - d) 1[Qc' <= 0.3] Q' = [1 + 0.99 * 1, 2 + 0]
    backup = np.array([1.99, 2.0])
    expected_q = 2 * np.mean((np.array([1.0, 2.0]) - backup) ** 2)
    assert stats["loss/critic"].item() == pytest.approx(expected_q, rel=1e-6)
    # KL = [0, 0.5, 2, 4.5], its 0.75 quantile 2 + 0.25 (4.5 - 2): only row (1, 1) is OOD;
    # E over samples [[0, 0], [0, 2]] -> [0, 1], over states 0.5
    assert qc_ood.item() == pytest.approx(0.5)
    # cost backup c + 0.99 min Qc' (done ignored) = [0.099, 1.495]; alpha = 1;
    # penalty alpha (0.5 - 1.5 * 0.3) = 0.05 is subtracted
    backup_c = np.array([0.099, 1.495])
    fit = np.mean((np.array([0.0, 1.0]) - backup_c) ** 2) + np.mean(
        (np.array([0.1, 1.5]) - backup_c) ** 2)
    assert stats["loss/cost_critic"].item() == pytest.approx(fit - 0.05, rel=1e-6)
    assert loss.item() == pytest.approx(expected_q + fit - 0.05, rel=1e-6)
    assert stats["feasible_fraction"].item() == 0.5


def test_actor_loss_by_hand():
    q = torch.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)  # min [1, 0]
    qc = torch.tensor([[0.1, 0.5], [0.2, 0.4]])  # min [0.1, 0.4]: state 1 infeasible
    loss, stats = actor_loss(FixedActor(), lambda sa: q[..., None], lambda sa: qc[..., None],
                             torch.zeros(2, 1), threshold=0.3)
    assert loss.item() == pytest.approx(-0.5)
    assert stats["actor/feasible_fraction"].item() == 0.5
    loss.backward()
    assert q.grad.tolist() == [[-0.5, 0.0], [0.0, 0.0]]


def test_ood_penalty_has_no_gradient_on_the_target_as_osrl_but_can_be_live():
    batch = {k: torch.as_tensor(v[:64]) for k, v in fake_arrays().items()}
    grads = {}
    for on_target in (True, False):
        method = cpq(ood_penalty_on_target=on_target)
        method.log_alpha = torch.tensor(3.0)  # a large alpha makes the penalty visible
        torch.manual_seed(0)
        loss, _, _ = critic_losses(method.config, method.q_ens, method.qc_ens, method.q_target,
                                   method.qc_target, method.actor, method.vae, batch,
                                   method.kappa, method.log_alpha)
        loss.backward()
        grads[on_target] = [p.grad.clone() for p in method.qc_ens.parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(grads[True], grads[False]))


def test_training_runs_without_nan_and_save_load_acts_the_same(tmp_path):
    method = cpq()
    sampler = BatchSampler(fake_arrays(), 64, seed=0, device="cpu")
    for _ in range(300):
        stats = method.train_step(sampler.sample())
    assert all(np.isfinite(float(v)) for v in stats.values())
    assert -5.0 <= method.log_alpha.item() <= 5.0 and method.log_alpha.item() != 0.0
    obs = np.random.default_rng(1).normal(size=(7, SPEC.obs_dim)).astype(np.float32)
    torch.manual_seed(5)
    actions = method.act(obs)
    assert actions.shape == (7, SPEC.act_dim) and np.all(np.abs(actions) <= 1.0)
    np.testing.assert_array_equal(method.act(obs), actions)  # the mode: no sampling
    torch.save(method.state_dict(), tmp_path / "state.pt")
    other = cpq(seed=1)
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    torch.manual_seed(5)
    np.testing.assert_array_equal(other.act(obs), actions)
    assert other.log_alpha.item() == method.log_alpha.item()
    batch = sampler.sample()
    torch.manual_seed(6)
    first = method.train_step(batch)
    torch.manual_seed(6)
    second = other.train_step(batch)
    assert all(first[k].item() == second[k].item() for k in first)
