"""LSPC: losses by hand on tiny tensors, the update's structure, and the fused step's math."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from algorithms import build_config, get_method
from algorithms.lspc import LSPC, Config, critic_losses, cvae_loss, latent_encoder_loss
from algorithms.lspc_code import LSPCCode
from algorithms.lspc_code import Config as CodeConfig
from algorithms.lspc_reference import ReferenceLSPC
from algorithms.nets import EnsembleMLP, exp_weights
from tasks.samplers import BatchSampler
from tasks.registry import get_task
from helpers import fake_arrays

SPEC = get_task("DroneRun")


def small_config(**changes):
    return dataclasses.replace(Config(), batch_size=64, hidden=(32, 32), latent_dim=4, **changes)


def lspc(config=None, task="DroneRun", seed=0):
    torch.manual_seed(seed)
    return LSPC(get_task(task), config or small_config(), None, seed)


def test_lower_cost_advantage_action_gets_more_weight():
    # same state, V^c = 0.3: the action with Q^c 0.1 (cheaper) outweighs the one with Q^c 0.5
    vc, qc = torch.tensor([0.3, 0.3]), torch.tensor([0.1, 0.5])
    weights = exp_weights(vc - qc, Config().cost_inverse_temperature, Config().max_weight)
    assert weights[0] > 1.0 > weights[1]
    assert weights.tolist() == pytest.approx([np.exp(0.4), np.exp(-0.4)], rel=1e-6)


def test_critic_losses_by_hand():
    # B = 2; the networks are replaced by fixed outputs so every term can be checked by hand
    obs, next_obs = torch.zeros(2, 1), torch.ones(2, 1)
    batch = {"observations": obs, "next_observations": next_obs, "actions": torch.zeros(2, 1),
             "rewards": torch.tensor([1.0, 0.0]), "costs": torch.tensor([0.0, 1.0]),
             "terminals": torch.tensor([0.0, 1.0]), "timeouts": torch.tensor([0.0, 0.0])}
    target_q = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.5, -1.0], [0.2, -2.0]])[..., None]
    q_now = torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])[..., None]
    v_now = torch.tensor([[0.5, 1.0], [0.1, -0.5]])[..., None]  # V(s), V^c(s)
    v_next = torch.tensor([[2.0, 2.0], [1.0, -1.0]])[..., None]  # V(s'), V^c(s')

    def v_ens(x):
        return v_next if x is next_obs else v_now

    cfg = Config()
    loss, reward_adv, cost_adv, mask, stats = critic_losses(
        cfg, lambda sa: q_now, v_ens, lambda sa: target_q, batch)
    # min of target Qs = [1, 0]; V = [0.5, 1]; u = [0.5, -1]
    assert stats["loss/v"].item() == pytest.approx((0.7 * 0.25 + 0.3 * 1.0) / 2)
    assert reward_adv.tolist() == pytest.approx([0.5, -1.0])
    # max of target Q^cs = [0.5, -1] -> clamped [0.5, 0]; V^c = [0.1, -0.5], unclamped in its
    # own loss (eq. 41): u = [-0.4, -0.5]; clamped [0.1, 0] in the advantage: [-0.4, 0]
    assert stats["loss/vc"].item() == pytest.approx((0.3 * 0.16 + 0.3 * 0.25) / 2)
    assert cost_adv.tolist() == pytest.approx([-0.4, 0.0])
    _, _, _, _, code_stats = critic_losses(dataclasses.replace(cfg, clamp_vc_in_loss=True),
                                           lambda sa: q_now, v_ens, lambda sa: target_q, batch)
    assert code_stats["loss/vc"].item() == pytest.approx((0.3 * 0.16 + 0.0) / 2)
    # Q backups: r + 0.99 (1 - d) V(s') = [1 + 1.98, 0]; Q1 = 1, Q2 = 2
    backup = np.array([2.98, 0.0])
    expected_q = np.mean((1 - backup) ** 2) + np.mean((2 - backup) ** 2)
    assert stats["loss/q"].item() == pytest.approx(expected_q, rel=1e-6)
    # cost backups: c + 0.99 (1 - d) max(V^c(s'), 0) = [0.99, 1]; Qc1 = 0, Qc2 = 1
    backup_c = np.array([0.99, 1.0])
    expected_qc = np.mean((0 - backup_c) ** 2) + np.mean((1 - backup_c) ** 2)
    assert stats["loss/qc"].item() == pytest.approx(expected_qc, rel=1e-6)
    assert loss.item() == pytest.approx(sum(stats[k].item() for k in (
        "loss/v", "loss/vc", "loss/q", "loss/qc")), rel=1e-6)
    assert mask is None
    _, _, _, mask, _ = critic_losses(dataclasses.replace(cfg, safe_value_threshold=0.02),
                                     lambda sa: q_now, v_ens, lambda sa: target_q, batch)
    assert mask.tolist() == [0.0, 1.0]  # V^c 0.1 and Q^c 0.5 exceed 0.02; both 0 do not
    # the authors' code averages the twin losses
    _, _, _, _, mean_stats = critic_losses(dataclasses.replace(cfg, twin_loss_reduction="mean"),
                                           lambda sa: q_now, v_ens, lambda sa: target_q, batch)
    assert mean_stats["loss/q"].item() == pytest.approx(expected_q / 2, rel=1e-6)
    assert mean_stats["loss/qc"].item() == pytest.approx(expected_qc / 2, rel=1e-6)
    # and adds the flags: the first transition, terminal and timeout, has done = 2
    both = {**batch, "terminals": torch.tensor([1.0, 1.0]), "timeouts": torch.tensor([1.0, 0.0])}
    _, _, _, _, sum_stats = critic_losses(dataclasses.replace(cfg, clip_done=False),
                                          lambda sa: q_now, v_ens, lambda sa: target_q, both)
    backup = np.array([1 - 1.98, 0.0])  # r + 0.99 (1 - 2) V(s')
    assert sum_stats["loss/q"].item() == pytest.approx(
        np.mean((1 - backup) ** 2) + np.mean((2 - backup) ** 2), rel=1e-6)


def test_cvae_loss_by_hand():
    cfg = small_config()
    model = lspc(cfg)
    obs, actions = torch.randn(3, SPEC.obs_dim), torch.rand(3, SPEC.act_dim) * 2 - 1
    cost_adv = torch.tensor([0.5, -0.5, 10.0])
    torch.manual_seed(7)
    loss, _ = cvae_loss(cfg, model.cvae, obs, actions, cost_adv, None)
    torch.manual_seed(7)
    mean, log_std = model.cvae.encode(obs, actions)
    z = mean + log_std.exp() * torch.randn(3, cfg.latent_dim)
    recon = ((model.cvae.decode(obs, z) - actions) ** 2).sum(1)
    # KL(N(m, s^2) || N(0, 1)) per dimension = (m^2 + s^2 - 1) / 2 - log s, averaged over dims
    kl = ((mean ** 2 + (2 * log_std).exp() - 1) / 2 - log_std).mean(1)
    weights = torch.tensor([np.exp(1.0), np.exp(-1.0), 200.0])
    assert loss.item() == pytest.approx((weights * (recon + 0.5 * kl)).mean().item(), rel=1e-5)


def test_latent_encoder_loss_by_hand_and_squashing():
    cfg = small_config(epsilon=0.3)
    model = lspc(cfg)
    obs, actions = torch.randn(3, SPEC.obs_dim), torch.rand(3, SPEC.act_dim) * 2 - 1
    reward_adv = torch.tensor([1.0, 0.0, -1.0])
    torch.manual_seed(3)
    loss, _ = latent_encoder_loss(cfg, model.encoder, model.cvae, obs, actions, reward_adv)
    torch.manual_seed(3)
    mean, log_std = model.encoder(obs)
    z = 0.3 * torch.tanh(mean + log_std.exp() * torch.randn_like(mean))
    assert z.abs().max() < 0.3
    error = ((model.cvae.decode(obs, z) - actions) ** 2).sum(1)
    weights = torch.tensor([np.exp(2.0), 1.0, np.exp(-2.0)])
    assert loss.item() == pytest.approx((weights * error).mean().item(), rel=1e-5)


def test_encoder_update_moves_delta_and_leaves_the_decoder():
    model = lspc()
    batch = BatchSampler(fake_arrays(), 64, 0, "cpu").sample()
    decoder = copy.deepcopy(model.cvae.state_dict())
    encoder = copy.deepcopy(model.encoder.state_dict())
    model._update_encoder(batch["observations"], batch["actions"], torch.ones(64))
    for key, value in model.cvae.state_dict().items():
        assert torch.equal(value, decoder[key]), key
    assert all(p.grad is None for p in model.cvae.parameters())
    assert any(not torch.equal(v, encoder[k]) for k, v in model.encoder.state_dict().items())


def test_lspc_s_actions_are_decoded_from_the_restricted_box():
    model = lspc(small_config(safe_epsilon=0.25, epsilon=0.6))
    obs = torch.randn(500, SPEC.obs_dim)
    torch.manual_seed(11)
    z = model.latent(obs, "LSPC-S")
    assert z.abs().max().item() <= 0.25 and (z.abs() == 0.25).any()  # clamped, not rescaled
    torch.manual_seed(11)
    model.policy = "LSPC-S"
    actions = model.act(obs.numpy())
    np.testing.assert_allclose(actions, model.cvae.decode(obs, z).detach().numpy(), atol=1e-6)
    z_opt = model.latent(obs, "LSPC-O")
    assert z_opt.abs().max().item() < 0.6


def test_restriction_defaults_follow_the_paper_and_the_code_is_an_option():
    cls = get_method("LSPC")[1]
    carrun, antrun = build_config(cls, "CarRun"), build_config(cls, "AntRun")
    assert (carrun.epsilon, carrun.safe_epsilon) == (0.6, 0.25)  # A.3.1: LSPC-O relaxed
    assert (antrun.epsilon, antrun.safe_epsilon) == (0.25, 0.25)
    assert build_config(cls, "easysparse").safe_value_threshold == 0.02
    assert build_config(cls, "BallRun").safe_value_threshold is None
    model = LSPC(get_task("CarRun"), dataclasses.replace(carrun, safe_epsilon=None), None, 0)
    assert model.safe_epsilon == 0.6  # the authors' code: LSPC-S box = eps
    assert get_method("lspc-s")[0] == get_method("LSPC-O")[0] == "LSPC"


EQUIVALENCE_CONFIGS = {
    "paper": {},
    "metadrive-mask": {"safe_value_threshold": 0.02},
    "vc-clamped-in-loss": {"clamp_vc_in_loss": True},
    "kl-sum": {"kl_reduction": "sum"},
    "done-terminal-only": {"done_on_timeout": False},
    "cost-values-unclamped": {"clamp_cost_values": False},
    # every field where LSPC-code's defaults differ from LSPC's (twin mean, done unclipped, ...)
    "authors-code": {f.name: getattr(CodeConfig(), f.name) for f in dataclasses.fields(Config)
                     if getattr(CodeConfig(), f.name) != getattr(Config(), f.name)},
}


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("variant", list(EQUIVALENCE_CONFIGS))
def test_fused_step_equals_the_straightforward_step(variant, parallel):
    changes = EQUIVALENCE_CONFIGS[variant]
    cfg = small_config(**changes)
    torch.manual_seed(0)
    reference = ReferenceLSPC(SPEC.obs_dim, SPEC.act_dim, cfg)
    fused = lspc(cfg)
    fused.parallel_updates = parallel  # critics and actor side by side in two threads
    fused.q_ens.load_members([reference.q1, reference.q2, reference.qc1, reference.qc2])
    fused.q_target.load_members([reference.targets[k] for k in ("q1", "q2", "qc1", "qc2")])
    fused.v_ens.load_members([reference.v, reference.vc])
    fused.cvae.load_state_dict(reference.cvae.state_dict())
    fused.encoder.load_state_dict(reference.encoder.state_dict())
    arrays = fake_arrays()
    arrays["terminals"][[10, 49, 99, 130]] = 1.0  # 49 and 99 also time out: done 2 unclipped
    sampler = BatchSampler(arrays, 64, 0, "cpu")
    for _ in range(3):
        batch = sampler.sample()
        torch.manual_seed(5)
        reference.train_step(batch)
        torch.manual_seed(5)
        fused.train_step(batch)
    check = EnsembleMLP(SPEC.obs_dim + SPEC.act_dim, 1, cfg.hidden, 4)
    check.load_members([reference.q1, reference.q2, reference.qc1, reference.qc2])
    for mine, theirs in zip(fused.q_ens.parameters(), check.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    check.load_members([reference.targets[k] for k in ("q1", "q2", "qc1", "qc2")])
    for mine, theirs in zip(fused.q_target.parameters(), check.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(fused.cvae.parameters(), reference.cvae.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
    for mine, theirs in zip(fused.encoder.parameters(), reference.encoder.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_short_training_lowers_the_weighted_elbo():
    cfg = small_config()
    model = lspc(cfg)
    arrays = fake_arrays(n=2000)
    sampler = BatchSampler(arrays, 256, 0, "cpu")
    initial_cvae = copy.deepcopy(model.cvae)
    for _ in range(150):
        model.train_step(sampler.sample())
    batch = BatchSampler(arrays, 1000, 1, "cpu").sample()
    with torch.no_grad():
        _, _, cost_adv, mask, _ = critic_losses(cfg, model.q_ens, model.v_ens, model.q_target,
                                                batch)
        torch.manual_seed(0)
        before, _ = cvae_loss(cfg, initial_cvae, batch["observations"], batch["actions"],
                              cost_adv, mask)
        torch.manual_seed(0)
        after, _ = cvae_loss(cfg, model.cvae, batch["observations"], batch["actions"],
                             cost_adv, mask)
    assert after.item() < 0.7 * before.item()


def test_save_load_gives_identical_actions_for_both_policies(tmp_path):
    model = lspc()
    sampler = BatchSampler(fake_arrays(), 64, 0, "cpu")
    for _ in range(3):
        model.train_step(sampler.sample())
    torch.save(model.state_dict(), tmp_path / "lspc.pt")
    other = lspc(seed=1)
    other.load_state_dict(torch.load(tmp_path / "lspc.pt", weights_only=False))
    obs = np.random.default_rng(0).normal(size=(6, SPEC.obs_dim)).astype(np.float32)
    for policy in LSPC.policies:
        model.policy = other.policy = policy
        torch.manual_seed(4)
        mine = model.act(obs)
        torch.manual_seed(4)
        np.testing.assert_array_equal(other.act(obs), mine)


def test_action_space_samples_for_figure_3():
    model = lspc(small_config(safe_epsilon=0.25, epsilon=0.6))
    state = np.zeros(SPEC.obs_dim, np.float32)
    torch.manual_seed(2)
    out = model.action_space_samples(state, n=50)
    assert out["cvae"].shape == out["lspc_s"].shape == out["lspc_o_samples"].shape \
        == (50, SPEC.act_dim)
    assert out["lspc_o"].shape == (1, SPEC.act_dim)
    assert out["cvae_q"].shape == (50,) and out["lspc_o_q"].shape == (1,)
    # the authors' sample_n_actions: z = eps_S tanh(u), u ~ N(0, I), strictly inside the box
    torch.manual_seed(2)
    states = torch.zeros(50, SPEC.obs_dim)
    z_free = torch.randn(50, 4)
    u = torch.randn(50, 4)
    z_safe = 0.25 * torch.tanh(u)
    with torch.no_grad():
        np.testing.assert_allclose(out["cvae"], model.cvae.decode(states, z_free), atol=1e-6)
        np.testing.assert_allclose(out["lspc_s"], model.cvae.decode(states, z_safe), atol=1e-6)
        clamped = model.cvae.decode(states, u.clamp(-0.25, 0.25))
    assert z_safe.abs().max() < 0.25 and not np.allclose(out["lspc_s"], clamped.numpy())


def test_lspc_code_is_lspc_with_the_authors_choices():
    name, cls = get_method("LSPC-code")
    assert name == "LSPC-code" and issubclass(cls, LSPC) and cls is LSPCCode
    assert get_method("lspc-s-code")[0] == get_method("LSPC-O-code")[0] == "LSPC-code"
    assert get_method("LSPC-S")[0] == "LSPC"
    carrun, antrun = build_config(cls, "CarRun"), build_config(cls, "AntRun")
    assert (carrun.epsilon, carrun.safe_epsilon, antrun.epsilon) == (0.6, None, 0.25)
    assert (carrun.clamp_vc_in_loss, carrun.optimal_samples_latent, carrun.clip_done,
            carrun.twin_loss_reduction) == (True, True, False, "mean")
    assert build_config(cls, "easysparse").safe_value_threshold == 0.02
    model = cls(get_task("CarRun"), dataclasses.replace(carrun, hidden=(32, 32)), None, 0)
    assert model.safe_epsilon == 0.6  # vae_clamper 0.6 on CarRun
    obs = torch.randn(300, get_task("CarRun").obs_dim)
    torch.manual_seed(0)
    z = model.latent(obs, "LSPC-S-code")
    assert z.abs().max().item() == pytest.approx(0.6)  # clamped at the code's vae_clamper
    torch.manual_seed(0)
    np.testing.assert_array_equal(z, model.latent(obs, "LSPC-S"))
    # LSPC-O samples: two draws at one state differ
    one = obs[:1].expand(2, -1)
    assert not torch.equal(*model.latent(one, "LSPC-O-code"))
    with pytest.raises(ValueError, match="LSPC-S-code"):
        model.latent(obs, "LSPC-X")
    with pytest.raises(ValueError, match="twin_loss_reduction"):
        cls(get_task("CarRun"), dataclasses.replace(carrun, twin_loss_reduction="avg"), None, 0)


def test_lspc_code_drops_an_unfinished_last_trajectory():
    arrays = fake_arrays(n=620)  # episodes of 50: the last 20 transitions never end
    model = LSPCCode(SPEC, small_config(), None, 0)
    kept = model.training_data(arrays)
    assert {k: len(v) for k, v in kept.items()} == {k: 600 for k in arrays}
    assert kept["timeouts"][-1] == 1
    whole = fake_arrays(n=600)
    assert model.training_data(whole) is whole
    assert len(lspc().training_data(arrays)["rewards"]) == 620  # LSPC keeps every transition


def test_latent_view_is_what_training_reads():
    # bench latent's numbers come from the same critics, weights and decoder the losses use
    model = lspc(small_config(safe_epsilon=0.25, epsilon=0.6))
    arrays = fake_arrays(n=200)
    batch = {k: torch.as_tensor(v) for k, v in arrays.items()}
    view = model.latent_view(batch)
    _, _, cost_adv, mask, _ = critic_losses(model.config, model.q_ens, model.v_ens,
                                            model.q_target, batch)
    torch.manual_seed(0)  # cvae_loss draws z; its weights do not depend on the draw
    _, stats = cvae_loss(model.config, model.cvae, batch["observations"], batch["actions"],
                         cost_adv, mask)
    assert view["cost_weight"].mean().item() == pytest.approx(stats["weights/cost_mean"].item())
    np.testing.assert_allclose(view["cost_advantage"], cost_adv.float(), atol=1e-6)
    with torch.no_grad():
        mean, log_std = model.cvae.encode(batch["observations"], batch["actions"])
        error = (model.cvae.decode(batch["observations"], mean) - batch["actions"]).square().sum(-1)
    np.testing.assert_allclose(view["code_mean"], mean, atol=1e-6)
    np.testing.assert_allclose(view["code_std"], log_std.exp(), atol=1e-6)
    np.testing.assert_allclose(view["error_code"], error, atol=1e-6)
    assert view["z_safe"].abs().max() <= 0.25 and view["z_optimal"].abs().max() < 0.6
    assert {k: tuple(v.shape) for k, v in view.items() if k.startswith("error")} == {
        "error_code": (200,), "error_safe": (200,), "error_optimal": (200,)}


@pytest.mark.parametrize("method_class", [LSPC, LSPCCode])
def test_critics_trained_alone_follow_the_path_they_take_beside_the_policy(method_class):
    """train_critics (scripts/cost_value_fate.py) gives the critics and their targets the
    same weights, bit for bit, as train_step does on the same batches: the policy's updates
    change nothing the critics read."""
    config = (small_config() if method_class is LSPC
              else dataclasses.replace(CodeConfig(), batch_size=64, hidden=(32, 32),
                                       latent_dim=4))
    torch.manual_seed(0)
    full = method_class(SPEC, config, None, 0)
    alone = copy.deepcopy(full)
    full.parallel_updates = alone.parallel_updates = False
    sampler = BatchSampler(fake_arrays(), 64, 0, "cpu")
    for _ in range(5):
        batch = sampler.sample()
        full.train_step(batch)
        alone.train_critics(batch)
    for net in ("q_ens", "q_target", "v_ens"):
        for mine, theirs in zip(getattr(alone, net).parameters(),
                                getattr(full, net).parameters()):
            assert torch.equal(mine, theirs), net
    # and the policy did train in one of them only
    assert not all(torch.equal(a, b) for a, b in zip(alone.cvae.parameters(),
                                                       full.cvae.parameters()))
