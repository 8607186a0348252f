"""BEAR-Lag against osrl-lib's BEARL: same sizes, weights copied across, the same batches and
the same random draws, both in float64 (conftest.float64); every loss term and the dual
variables must agree to 1e-9, step after step, and so must the weights.

Needs (into the venv): pip install --no-deps osrl-lib==0.1.0 fast-safe-rl==0.1.0, and
tensorboard and wandb, which osrl-lib's import of fsrl.utils pulls in.

Random draws: OSRL draws, in this order, the VAE's z noise, the reward critic's target actions,
the cost critic's target actions, the decoder's z for the MMD and the actor's MMD samples; our
step draws the same shapes in the same order, so one seed before each step gives both the same
numbers. Our actor runs its trunk once per state where OSRL runs it on the repeated states:
the same numbers up to rounding.

Timing (ours and osrl-lib's, interleaved in one run): python -m bench speed --method BEAR-Lag
"""


import pytest
import torch

osrl_bearl = pytest.importorskip("osrl.algorithms.bearl")

from algorithms.bear_lag import BEARLag, Config  # noqa: E402
from bench import osrl_reference  # noqa: E402
from tasks.samplers import BatchSampler  # noqa: E402
from bench.speed import synthetic_arrays  # noqa: E402
from tasks.registry import get_task  # noqa: E402

SPEC = get_task("AntRun")  # observations 33, actions 8
TOL = dict(rel=1e-9, abs=1e-9)


class Recorder:
    """Stands in for OSRL's logger: keeps the last value of each stat."""

    def __init__(self):
        self.stats = {}

    def store(self, **kwargs):
        self.stats.update(kwargs)


def _copy_linear(dst, src):
    dst.weight.copy_(src.weight)
    dst.bias.copy_(src.bias)


def _copy_heads(dst, *srcs):
    dst.weight.copy_(torch.cat([s.weight for s in srcs]))
    dst.bias.copy_(torch.cat([s.bias for s in srcs]))


@torch.no_grad()
def copy_osrl_into_ours(ref, ours: BEARLag):
    for actor, ref_actor in ((ours.actor, ref.actor), (ours.actor_target, ref.actor_old)):
        _copy_linear(actor.trunk[0], ref_actor.net[0])
        _copy_linear(actor.trunk[2], ref_actor.net[2])
        _copy_heads(actor.head, ref_actor.mu_layer, ref_actor.log_std_layer)
    for critics, reward, cost in ((ours.critics, ref.critic, ref.cost_critic),
                                  (ours.critics_target, ref.critic_old, ref.cost_critic_old)):
        critics.load_members([*reward.q1_nets, *reward.q2_nets, *cost.q1_nets, *cost.q2_nets])
    vae, ref_vae = ours.vae, ref.vae
    _copy_linear(vae.encoder[0], ref_vae.e1)
    _copy_linear(vae.encoder[2], ref_vae.e2)
    _copy_heads(vae.encoder[4], ref_vae.mean, ref_vae.log_std)
    _copy_linear(vae.decoder[0], ref_vae.d1)
    _copy_linear(vae.decoder[2], ref_vae.d2)
    _copy_linear(vae.decoder[4], ref_vae.d3)


def build_pair(threshold: float, cfg: Config | None = None):
    cfg = cfg or Config()
    torch.manual_seed(0)
    ref = osrl_reference.build_model("BEAR-Lag", SPEC, cfg, threshold)
    recorder = Recorder()
    trainer = osrl_reference.build_trainer("BEAR-Lag", ref, cfg, threshold, logger=recorder)
    ours = BEARLag(SPEC, cfg, threshold, 0)
    copy_osrl_into_ours(ref, ours)
    return ref, trainer, recorder, ours


def osrl_step(trainer, cfg: Config, batch):
    """OSRL's dataset scales rewards and costs and sets done = terminal or timeout."""
    osrl_reference.osrl_step("BEAR-Lag", trainer, cfg)(batch)


NAMES = {"loss/loss_vae": "loss/vae", "loss/critic_loss": "loss/critic",
         "loss/cost_critic_loss": "loss/cost_critic", "loss/actor_loss": "loss/actor",
         "loss/mmd_loss": "loss/mmd", "loss/qc_penalty": "loss/qc_penalty",
         "loss/lagrangian": "lagrangian"}


# 10: the usual budget (Qc far below the threshold: the PID stays at 0); -5: a constraint
# violated from the start, so the PID multiplier and the penalty term are nonzero too
@pytest.mark.parametrize("threshold", [10.0, -5.0])
def test_losses_and_weights_match_osrl(threshold, float64):
    cfg = Config()
    ref, trainer, recorder, ours = build_pair(threshold, cfg)
    assert ours.kappa == pytest.approx(ref.qc_thres, rel=1e-12)
    sampler = BatchSampler(synthetic_arrays(SPEC, size=5000), 256, seed=0, device="cpu")
    for step in range(5):
        batch = {key: value.to(torch.get_default_dtype()) for key, value in sampler.sample().items()}
        torch.manual_seed(100 + step)
        osrl_step(trainer, cfg, batch)
        torch.manual_seed(100 + step)
        stats = ours.train_step(batch)
        for ref_name, name in NAMES.items():
            assert float(stats[name]) == pytest.approx(recorder.stats[ref_name], **TOL), \
                (step, name)
        assert ours.log_alpha.exp().item() == pytest.approx(
            recorder.stats["loss/alpha_value"], **TOL)
        assert ours.pid.integral.item() == pytest.approx(float(ref.controller.error_integral),
                                                         **TOL)
    if threshold < 0:
        assert recorder.stats["loss/lagrangian"] > 0 and recorder.stats["loss/qc_penalty"] != 0
    # the weights after five steps: ours against the OSRL modules copied into a fresh model
    _, _, _, again = build_pair(threshold, cfg)
    copy_osrl_into_ours(ref, again)
    for name in ("actor", "actor_target", "critics", "critics_target", "vae"):
        for key, value in getattr(again, name).state_dict().items():
            torch.testing.assert_close(getattr(ours, name).state_dict()[key], value,
                                       rtol=1e-9, atol=1e-9, msg=f"{name}.{key}")
