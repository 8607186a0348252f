"""BCQ-Lag against osrl-lib's BCQL: same weights, same batches, same random draws, so every
loss term, the PID multiplier and every weight after each step must agree to 1e-5.

Needs, besides the project: `pip install --no-deps osrl-lib==0.1.0 fast-safe-rl==0.1.0` and
`pip install tensorboard wandb` (fsrl imports both when osrl.algorithms is imported).

The only layout differences (same math): our 4 + 4 critics are one 8-member EnsembleMLP with
one Adam, our VAE's mean/log-std heads one Linear layer; the weights are copied across by the
mapping below. Rewards are fed to osrl-lib pre-scaled by reward_scale, as its
TransitionDataset does, and raw to ours, which scales inside train_step.
"""

import contextlib
import dataclasses
import io

import pytest
import torch

from algorithms.bcq_lag import BCQLag, Config
from tasks.registry import get_task

with contextlib.redirect_stdout(io.StringIO()):  # osrl prints a notice about CDT's package
    osrl_algorithms = pytest.importorskip("osrl.algorithms")

SPEC = get_task("AntRun")  # observations 33, actions 8, episodes of 200 steps
THRESHOLD = 20.0
TOL = {"rtol": 1e-5, "atol": 1e-5}


def fixed_batch(seed, batch_size=64):
    g = torch.Generator().manual_seed(seed)
    n, o, a = batch_size, SPEC.obs_dim, SPEC.act_dim
    terminals = (torch.rand(n, generator=g) < 0.1).float()
    timeouts = (torch.rand(n, generator=g) < 0.1).float() * (1 - terminals)
    return {"observations": torch.randn(n, o, generator=g),
            "next_observations": torch.randn(n, o, generator=g),
            "actions": torch.rand(n, a, generator=g) * 2 - 1,
            "rewards": torch.randn(n, generator=g) * 5,
            "costs": (torch.rand(n, generator=g) < 0.3).float(),
            "terminals": terminals, "timeouts": timeouts}


def osrl_args(batch, cfg):
    """(obs, next obs, actions, rewards, costs, done) as OSRL's TransitionDataset gives them."""
    done = torch.clamp(batch["terminals"] + batch["timeouts"], max=1.0)
    return (batch["observations"], batch["next_observations"], batch["actions"],
            batch["rewards"] * cfg.reward_scale, batch["costs"] * cfg.cost_scale, done)


@torch.no_grad()
def copy_vae(ours, theirs):
    """OSRL VAE (e1, e2, mean, log_std, d1, d2, d3) -> ours (encoder, decoder Sequentials)."""
    enc, dec = ours.encoder, ours.decoder
    for layer, source in ((enc[0], theirs.e1), (enc[2], theirs.e2), (dec[0], theirs.d1),
                          (dec[2], theirs.d2), (dec[4], theirs.d3)):
        layer.load_state_dict(source.state_dict())
    enc[4].weight.copy_(torch.cat([theirs.mean.weight, theirs.log_std.weight]))
    enc[4].bias.copy_(torch.cat([theirs.mean.bias, theirs.log_std.bias]))


def critic_nets(critic):
    """EnsembleDoubleQCritic -> [Q1 nets..., Q2 nets...] (our member order)."""
    return [*critic.q1_nets, *critic.q2_nets]


def build_pair(cfg):
    torch.manual_seed(0)
    theirs = osrl_algorithms.BCQL(
        SPEC.obs_dim, SPEC.act_dim, 1.0, list(cfg.actor_hidden), list(cfg.critic_hidden),
        cfg.vae_hidden, cfg.sample_action_num, cfg.gamma, cfg.polyak_tau, cfg.phi, cfg.lmbda,
        cfg.kl_coef, list(cfg.pid), cfg.num_q, cfg.num_qc, THRESHOLD, SPEC.max_episode_steps)
    theirs.setup_optimizers(cfg.actor_lr, cfg.critic_lr, cfg.vae_lr)
    ours = BCQLag(SPEC, cfg, THRESHOLD, seed=0)
    ours.critics.load_members(critic_nets(theirs.critic) + critic_nets(theirs.cost_critic))
    ours.critics_target.load_members(
        critic_nets(theirs.critic_old) + critic_nets(theirs.cost_critic_old))
    ours.actor.net.load_state_dict(theirs.actor.pi.state_dict())
    ours.actor_target.net.load_state_dict(theirs.actor_old.pi.state_dict())
    copy_vae(ours.vae, theirs.vae)
    return ours, theirs


def assert_same_weights(ours, theirs):
    for mine, nets in ((ours.critics, critic_nets(theirs.critic) + critic_nets(theirs.cost_critic)),
                       (ours.critics_target, critic_nets(theirs.critic_old)
                        + critic_nets(theirs.cost_critic_old))):
        for m, net in enumerate(nets):
            linears = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
            for w, b, linear in zip(mine.weights, mine.biases, linears):
                torch.testing.assert_close(w[m], linear.weight.T, **TOL)
                torch.testing.assert_close(b[m, 0], linear.bias, **TOL)
    for mine, net in ((ours.actor.net, theirs.actor.pi),
                      (ours.actor_target.net, theirs.actor_old.pi)):
        for key, value in net.state_dict().items():
            torch.testing.assert_close(mine.state_dict()[key], value, **TOL)
    torch.testing.assert_close(ours.vae.decoder[4].weight, theirs.vae.d3.weight, **TOL)
    torch.testing.assert_close(ours.vae.encoder[4].weight[:ours.vae.latent_dim],
                               theirs.vae.mean.weight, **TOL)


def test_threshold_is_osrls():
    ours, theirs = build_pair(Config())
    assert ours.kappa == pytest.approx(theirs.qc_thres, rel=1e-12)


@pytest.mark.parametrize("num_q", [1, 2])
def test_every_loss_and_weight_matches_osrl_step_by_step(num_q):
    cfg = dataclasses.replace(Config(), num_q=num_q, num_qc=num_q)
    ours, theirs = build_pair(cfg)
    for step in range(4):
        batch = fixed_batch(step)
        torch.manual_seed(100 + step)
        args = osrl_args(batch, cfg)
        obs, next_obs, actions, rewards, costs, done = args
        vae, _ = theirs.vae_loss(obs, actions)
        critic, _ = theirs.critic_loss(obs, next_obs, actions, rewards, done)
        cost_critic, _ = theirs.cost_critic_loss(obs, next_obs, actions, costs, done)
        actor, actor_stats = theirs.actor_loss(obs)
        theirs.sync_weight()
        torch.manual_seed(100 + step)
        stats = ours.train_step(batch)
        expected = {"loss/vae": vae, "loss/critic": critic, "loss/cost_critic": cost_critic,
                    "loss/actor": actor, "loss/qc_penalty": actor_stats["loss/qc_penalty"],
                    "lagrangian": actor_stats["loss/lagrangian"]}
        for key, value in expected.items():
            torch.testing.assert_close(stats[key].double(), torch.as_tensor(value).double(),
                                       **TOL, msg=f"step {step} {key}")
        assert_same_weights(ours, theirs)
    # the PID state agrees too
    torch.testing.assert_close(ours.pid.integral, torch.as_tensor(
        theirs.controller.error_integral).float(), **TOL)


def test_act_matches_osrl():
    ours, theirs = build_pair(Config())
    obs = fixed_batch(9)["observations"][:5]
    torch.manual_seed(3)
    expected = [theirs.act(o.numpy())[0] for o in obs]
    torch.manual_seed(3)
    got = [ours.act(o[None].numpy())[0] for o in obs]
    for a, b in zip(got, expected):
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), **TOL)
