"""CPQ against osrl-lib's CPQ: same weights, same batches, same random draws, so every loss
term, alpha and every weight after each step must agree to 1e-5.

Needs, besides the project: `pip install --no-deps osrl-lib==0.1.0 fast-safe-rl==0.1.0` and
`pip install tensorboard wandb` (fsrl imports both when osrl.algorithms is imported).

Layout differences (same math): our twin critics are EnsembleMLPs sharing one Adam, the
actor's mean/log-std heads and the VAE's are one Linear layer each; weights are copied across.
One difference in the random stream, not in the math: in its cost critic update OSRL draws
an action sample it never uses (the actor call that returns the OOD distribution) and
decodes the OOD samples with a fresh z it never uses (only the VAE posterior's KL is used).
We skip both draws, so to compare seeded steps this test makes OSRL skip them too: the actor
call runs in OSRL's deterministic mode (its distribution is the same), and the VAE call
returns the same posterior without decoding. Rewards go to osrl-lib pre-scaled by
reward_scale, as its TransitionDataset does, and raw to ours.
"""

import contextlib
import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F

from algorithms.cpq import CPQ, Config
from tasks.registry import get_task
from test_osrl_bcq_lag import copy_vae, fixed_batch, osrl_args

with contextlib.redirect_stdout(io.StringIO()):  # osrl prints a notice about CDT's package
    osrl_algorithms = pytest.importorskip("osrl.algorithms")

SPEC = get_task("AntRun")  # observations 33, actions 8, episodes of 200 steps
THRESHOLD = 20.0
TOL = {"rtol": 1e-5, "atol": 1e-5}
TOL64 = {"rtol": 1e-9, "atol": 1e-9}  # the step-by-step test, in float64 (conftest.float64)


def build_pair(cfg):
    torch.manual_seed(0)
    theirs = osrl_algorithms.CPQ(
        SPEC.obs_dim, SPEC.act_dim, 1.0, list(cfg.actor_hidden), list(cfg.critic_hidden),
        cfg.vae_hidden, cfg.sample_action_num, cfg.gamma, cfg.polyak_tau, cfg.kl_coef,
        cfg.num_q, cfg.num_qc, cfg.qc_scalar, THRESHOLD, SPEC.max_episode_steps)
    theirs.setup_optimizers(cfg.actor_lr, cfg.critic_lr, cfg.alpha_lr, cfg.vae_lr)
    ours = CPQ(SPEC, cfg, THRESHOLD, seed=0)
    with torch.no_grad():
        ours.actor.trunk.load_state_dict(theirs.actor.net.state_dict())
        ours.actor.head.weight.copy_(torch.cat([theirs.actor.mu_layer.weight,
                                                theirs.actor.log_std_layer.weight]))
        ours.actor.head.bias.copy_(torch.cat([theirs.actor.mu_layer.bias,
                                              theirs.actor.log_std_layer.bias]))
    ours.q_ens.load_members(list(theirs.critic.q_nets))
    ours.qc_ens.load_members(list(theirs.cost_critic.q_nets))
    ours.q_target.load_members(list(theirs.critic_old.q_nets))
    ours.qc_target.load_members(list(theirs.cost_critic_old.q_nets))
    copy_vae(ours.vae, theirs.vae)
    return ours, theirs


@contextlib.contextmanager
def without_unused_draws(theirs):
    """OSRL's cost critic update minus its two random draws whose values it never uses."""
    actor_forward, vae = theirs.actor.forward, theirs.vae

    def actor(obs, deterministic=False, with_logprob=True, with_distribution=False,
              return_pretanh_value=False):
        # only the distribution is used by the caller; deterministic mode does not sample it
        return actor_forward(obs, deterministic or with_distribution, with_logprob,
                             with_distribution, return_pretanh_value)

    def posterior(obs, act):
        hidden = F.relu(vae.e2(F.relu(vae.e1(torch.cat([obs, act], 1)))))
        return None, vae.mean(hidden), vae.log_std(hidden).clamp(-4, 15).exp()

    theirs.actor.forward, vae.forward = actor, posterior
    try:
        yield
    finally:
        del theirs.actor.forward, vae.forward  # back to the class methods


def assert_same_weights(ours, theirs):
    pairs = ((ours.q_ens, theirs.critic), (ours.qc_ens, theirs.cost_critic),
             (ours.q_target, theirs.critic_old), (ours.qc_target, theirs.cost_critic_old))
    for mine, critic in pairs:
        for m, net in enumerate(critic.q_nets):
            linears = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
            for w, b, linear in zip(mine.weights, mine.biases, linears):
                torch.testing.assert_close(w[m], linear.weight.T, **TOL64)
                torch.testing.assert_close(b[m, 0], linear.bias, **TOL64)
    for key, value in theirs.actor.net.state_dict().items():
        torch.testing.assert_close(ours.actor.trunk.state_dict()[key], value, **TOL64)
    torch.testing.assert_close(ours.actor.head.weight, torch.cat(
        [theirs.actor.mu_layer.weight, theirs.actor.log_std_layer.weight]), **TOL64)
    torch.testing.assert_close(ours.vae.decoder[4].weight, theirs.vae.d3.weight, **TOL64)


def test_thresholds_are_osrls():
    ours, theirs = build_pair(Config())
    assert ours.kappa == pytest.approx(theirs.q_thres, rel=1e-12)
    assert ours.config.qc_scalar * ours.kappa == pytest.approx(theirs.qc_thres)


@pytest.mark.parametrize("alpha_lr", [1e-4, 0.5])  # 0.5: alpha moves enough to matter
def test_every_loss_alpha_and_weight_match_osrl_step_by_step(alpha_lr, float64):
    cfg = dataclasses.replace(Config(), alpha_lr=alpha_lr)
    ours, theirs = build_pair(cfg)
    for step in range(4):
        batch = fixed_batch(step)
        torch.manual_seed(100 + step)
        obs, next_obs, actions, rewards, costs, done = osrl_args(batch, cfg)
        vae, _ = theirs.vae_loss(obs, actions)
        critic, _ = theirs.critic_loss(obs, next_obs, actions, rewards, done)
        with without_unused_draws(theirs):
            cost_critic, cost_stats = theirs.cost_critic_loss(obs, next_obs, actions, costs, done)
        actor, _ = theirs.actor_loss(obs)
        theirs.sync_weight()
        alpha_before = ours.log_alpha.exp()
        torch.manual_seed(100 + step)
        stats = ours.train_step(batch)
        expected = {"loss/vae": vae, "loss/critic": critic, "loss/cost_critic": cost_critic,
                    "loss/actor": actor}
        for key, value in expected.items():
            torch.testing.assert_close(stats[key].double(), torch.as_tensor(value).double(),
                                       **TOL64, msg=f"step {step} {key}")
        torch.testing.assert_close(stats["alpha"], alpha_before)  # alpha used in the loss
        torch.testing.assert_close(ours.log_alpha.exp().double(),
                                   torch.tensor(cost_stats["loss/alpha_value"]).double(), **TOL64)
        assert_same_weights(ours, theirs)


def test_act_is_osrls_deterministic_action():
    # as OSRL's rollout calls it: act(obs, True, True) (with_logprob=False fails there)
    ours, theirs = build_pair(Config())
    obs = fixed_batch(9)["observations"][:5]
    expected = torch.stack([torch.as_tensor(theirs.act(o.numpy(), True, True)[0])
                            for o in obs])
    torch.testing.assert_close(torch.as_tensor(ours.act(obs.numpy())), expected, **TOL)
