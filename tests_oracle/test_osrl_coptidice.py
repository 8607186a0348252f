"""COptiDICE against osrl-lib's COptiDICE: same sizes, weights copied across, the same batches
(with is_init), the same dataset statistics and the same random draws; every loss term and
both dual variables must agree to 1e-5, step after step, and so must the weights.

Needs (into the venv): pip install --no-deps osrl-lib==0.1.0 fast-safe-rl==0.1.0, and
tensorboard and wandb, which osrl-lib's import of fsrl.utils pulls in.

The statistics are handed to OSRL as float32 arrays (what our training_data computes): OSRL
turns them into tensors of the array's dtype, and float64 ones would make its noisy
observations float64 and its float32 actor fail.
Random draws: OSRL draws the observation noise, the action noise and then an unused actor
sample; we draw the first two only, so one seed before each step gives both the same noise.

Timing (ours and osrl-lib's, interleaved in one run): python -m bench speed --method COptiDICE
"""

import dataclasses

import numpy as np
import pytest
import torch

osrl_coptidice = pytest.importorskip("osrl.algorithms.coptidice")

from algorithms.coptidice import Config, COptiDICE  # noqa: E402
from bench import osrl_reference  # noqa: E402
from tasks.samplers import BatchSampler  # noqa: E402
from bench.speed import synthetic_arrays  # noqa: E402
from tasks.registry import get_task  # noqa: E402

SPEC = get_task("AntRun")  # observations 33, actions 8
TOL = dict(rel=1e-5, abs=1e-5)


@torch.no_grad()
def copy_osrl_into_ours(ref, ours: COptiDICE):
    trunk, head = ours.actor.trunk, ours.actor.head
    for i in (0, 2):
        trunk[i].weight.copy_(ref.actor.net[i].weight)
        trunk[i].bias.copy_(ref.actor.net[i].bias)
    head.weight.copy_(torch.cat([ref.actor.mu_layer.weight, ref.actor.log_std_layer.weight]))
    head.bias.copy_(torch.cat([ref.actor.mu_layer.bias, ref.actor.log_std_layer.bias]))
    ours.nu.load_members(list(ref.nu_network.q_nets))
    ours.chi.load_members(list(ref.chi_network.q_nets))
    ours.scalars["tau"].copy_(ref.tau)
    ours.scalars["lmbda"].copy_(ref.lmbda)


def build_pair(threshold: float, arrays: dict, cfg: Config | None = None):
    cfg = cfg or Config()
    torch.manual_seed(0)
    ours = COptiDICE(SPEC, cfg, threshold, 0)
    data = ours.training_data(arrays)
    ref = osrl_reference.build_model("COptiDICE", SPEC, cfg, threshold, ours)
    ref.setup_optimizers(cfg.actor_lr, cfg.critic_lr, cfg.scalar_lr)
    copy_osrl_into_ours(ref, ours)
    return ref, ours, data


def osrl_step(ref, cfg: Config, batch) -> dict:
    """OSRL's dataset scales rewards and costs and sets done = terminal or timeout."""
    done = torch.clamp(batch["terminals"] + batch["timeouts"], max=1.0)
    return ref.update((batch["observations"], batch["next_observations"], batch["actions"],
                       batch["rewards"] * cfg.reward_scale, batch["costs"] * cfg.cost_scale,
                       done, batch["is_init"]))


NAMES = {"loss/chi_loss": "loss/chi", "loss/tau_loss": "loss/tau", "loss/D_kl": "D_kl",
         "loss/Df": "Df", "loss/td_error": "td_error", "loss/nu_loss": "loss/nu",
         "loss/lmbda_loss": "loss/lmbda", "loss/actor_loss": "loss/actor", "loss/lmbda": "lmbda",
         "loss/tau": "tau"}


def fake_data():
    arrays = synthetic_arrays(SPEC, size=5000)
    # more cost, so the cost terms are not all zeros
    arrays["costs"] = (np.random.default_rng(1).random(5000) < 0.5).astype(np.float32)
    return arrays


@pytest.mark.parametrize("cost_ub_epsilon", [0.01, 0.0])
@pytest.mark.parametrize("threshold", [10.0, 1.0])
def test_losses_and_weights_match_osrl(threshold, cost_ub_epsilon):
    cfg = dataclasses.replace(Config(), cost_ub_epsilon=cost_ub_epsilon)
    ref, ours, data = build_pair(threshold, fake_data(), cfg)
    assert ours.kappa == pytest.approx(ref.qc_thres, rel=1e-12)
    assert ref.observations_std.dtype == torch.float32
    sampler = BatchSampler(data, 256, seed=0, device="cpu")
    for step in range(5):
        batch = sampler.sample()
        torch.manual_seed(100 + step)
        ref_stats = osrl_step(ref, cfg, batch)
        torch.manual_seed(100 + step)
        stats = ours.train_step(batch)
        for ref_name, name in NAMES.items():
            assert float(stats[name]) == pytest.approx(ref_stats[ref_name], **TOL), (step, name)
    # the weights after five steps (1e-4: Adam divides by the running |gradient|, so a
    # gradient element near zero shows the rounding of the two computations)
    _, again, _ = build_pair(threshold, fake_data(), cfg)
    copy_osrl_into_ours(ref, again)
    for name in ("actor", "nu", "chi", "scalars"):
        for key, value in getattr(again, name).state_dict().items():
            torch.testing.assert_close(getattr(ours, name).state_dict()[key], value,
                                       rtol=1e-4, atol=1e-4, msg=f"{name}.{key}")
