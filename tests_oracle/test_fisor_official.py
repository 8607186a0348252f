"""The native FISOR port against the authors' JAX code: the official agent's initial weights
(flax) copied into ours (torch), the same batch and the same random draws of the actor's
diffusion loss, then one step each: the value, critic and actor losses and every updated
weight (the critics, the values, their targets, the actor and its EMA copy) agree to 1e-4.

Needs the official environment (bash scripts/setup_fisor_official.sh prints the two exports):
    FISOR_HOME    a checkout of ZhengYinan-AIR/FISOR
    FISOR_PYTHON  the interpreter of its environment (jax, flax, optax)
and is skipped without them. tests_oracle/fisor_official_step.py runs their FISOR.create and
FISOR.update under FISOR_PYTHON (a subprocess, nothing of the harness imported there) and
hands back the weights before and after, the batch, the draws and the losses.

What is set apart from the official `fisor` config, on both sides: dropout 0 in the actor's
residual blocks (JAX's dropout masks cannot be replayed in torch; 0.1 otherwise), a batch of
512 rows (two actor halves of 256; the critics take the first 256 rows either way) and task
shapes of CarRun (observations 7, actions 2). Our min_cost_weight is set to the floor the
checkout hard-codes, so a master checkout (0) and a metadrive_imitation one (1) both check.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import algorithms.fisor as fisor_module
from algorithms.fisor import FISOR, Config
from algorithms.fisor_official import (OfficialFISORError, official_min_cost_weight,
                                       official_setup)
from tasks.registry import get_task

SPEC = get_task("CarRun")
ROWS = 512
STEP_SCRIPT = Path(__file__).with_name("fisor_official_step.py")
TOL = {"rtol": 1e-4, "atol": 1e-4}
#: native stat -> the official FISOR.update info key
LOSSES = {"loss/actor": "actor_loss", "loss/v_r": "value_loss", "loss/q_r": "critic_loss",
          "loss/v_h": "safe_value_loss", "loss/q_h": "safe_critic_loss"}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """The official step's npz (weights before/after, batch, draws, losses)."""
    try:
        home, python = official_setup()
    except OfficialFISORError as err:
        pytest.skip(f"no official FISOR environment: {err}")
    folder = tmp_path_factory.mktemp("fisor-official")
    job = folder / "job.json"
    job.write_text(json.dumps({"home": str(home), "obs_dim": SPEC.obs_dim,
                               "act_dim": SPEC.act_dim, "batch": ROWS, "seed": 0,
                               "agent_kwargs": {"actor_dropout_rate": 0.0}}))
    out = folder / "step.npz"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "DSRL_SUPPRESS_IMPORT_ERROR": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    done = subprocess.run([python, "-W", "ignore", str(STEP_SCRIPT), str(job), str(out)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with np.load(out) as data:
        found = {key: data[key] for key in data.files}
    # the floor of the infeasible weights this checkout hard-codes (0 master, 1
    # metadrive_imitation): ours is set to it, so either branch can be checked
    found["floor"] = official_min_cost_weight(home)
    return found


def weight_pairs(method: FISOR):
    """(flax path, our tensor in the flax layout: a view that writes through) for every
    parameter: Dense kernels (in, out) are our Linear weights transposed; the official twin
    critics (vmapped, a leading member axis) are members 0-1 (Q_r) and 2-3 (Q_h) of our
    ensembles, whose layers already hold (members, in, out); V_r and V_h are members 0, 1."""
    pairs = []

    def ensemble(net, members, prefix, layers, axis=True):
        for i, layer in enumerate(layers):
            weight, bias = net.weights[i][members], net.biases[i][members, 0]
            if not axis:
                weight, bias = weight[0], bias[0]
            pairs.append((f"{prefix}/{layer}/kernel", weight))
            pairs.append((f"{prefix}/{layer}/bias", bias))

    q_layers = ["MLP_0/Dense_0", "MLP_0/Dense_1", "Dense_0"]
    v_layers = ["MLP_0/Dense_0", "MLP_0/Dense_1", "OutputVDense"]
    for ours, theirs in ((method.q_ens, ""), (method.q_target, "target_")):
        ensemble(ours, slice(0, 2), f"{theirs}critic/VmapStateActionValue_0", q_layers)
        ensemble(ours, slice(2, 4), f"safe_{theirs}critic/VmapStateActionValue_0", q_layers)
    ensemble(method.v_ens, slice(0, 1), "value", v_layers, axis=False)
    ensemble(method.v_ens, slice(1, 2), "safe_value", v_layers, axis=False)

    def linear(prefix, module):
        pairs.append((f"{prefix}/kernel", module.weight.T))
        pairs.append((f"{prefix}/bias", module.bias))

    for actor, name in ((method.actor, "score_model"), (method.actor_target,
                                                        "target_score_model")):
        pairs.append((f"{name}/FourierFeatures_0/kernel", actor.time.kernel))
        linear(f"{name}/MLP_0/Dense_0", actor.time_mlp[0])
        linear(f"{name}/MLP_0/Dense_1", actor.time_mlp[2])
        linear(f"{name}/MLPResNet_0/Dense_0", actor.inp)
        for b, block in enumerate(actor.blocks):
            prefix = f"{name}/MLPResNet_0/MLPResNetBlock_{b}"
            pairs.append((f"{prefix}/LayerNorm_0/scale", block.norm.weight))
            pairs.append((f"{prefix}/LayerNorm_0/bias", block.norm.bias))
            linear(f"{prefix}/Dense_0", block.up)
            linear(f"{prefix}/Dense_1", block.down)
        linear(f"{name}/MLPResNet_0/Dense_1", actor.out)
    return pairs


class OfficialDraws:
    """Stands for `torch` inside algorithms.fisor during the step: diffusion_loss's t and
    noise are the official update_actor's, one (t, noise) pair per actor half, in order."""

    def __init__(self, draws):
        self.queue = list(draws)

    def __getattr__(self, name):
        return getattr(torch, name)

    def randint(self, high, size, device=None):
        t, _ = self.queue[0]
        assert high == 5 and tuple(size) == tuple(t.shape)
        return t

    def randn_like(self, like):
        _, noise = self.queue.pop(0)
        assert noise.shape == like.shape
        return noise


@pytest.fixture(scope="module")
def stepped(official):
    """Our port after one step from the official initial weights: (method, pairs, stats)."""
    method = FISOR(SPEC, Config(actor_dropout=0.0, batch_size=ROWS,
                                min_cost_weight=official["floor"]), None, 0)
    pairs = weight_pairs(method)
    assert sorted(k for k in official if k.startswith("init/")) == sorted(
        f"init/{key}" for key, _ in pairs)  # every official parameter has its place
    with torch.no_grad():
        for key, ours in pairs:
            ours.copy_(torch.as_tensor(official[f"init/{key}"]))
    batch = {key: torch.as_tensor(official[f"batch/{key}"]) for key in (
        "observations", "actions", "rewards", "next_observations")}
    batch["h"] = torch.as_tensor(official["batch/costs"])  # relabelled: 25 or -1
    batch["terminals"] = 1.0 - torch.as_tensor(official["batch/masks"])
    batch["timeouts"] = torch.zeros(ROWS)
    draws = [(torch.as_tensor(official[f"draws/time{i}"]).long(),
              torch.as_tensor(official[f"draws/noise{i}"])) for i in range(2)]
    patched = OfficialDraws(draws)
    real, fisor_module.torch = fisor_module.torch, patched
    try:
        stats = method.train_step(batch)
    finally:
        fisor_module.torch = real
    assert not patched.queue  # both halves drew theirs
    return method, pairs, stats


def test_losses_match_the_official_step(official, stepped):
    _, _, stats = stepped
    pairs = [(ours, float(stats[ours]), float(official[f"info/{theirs}"]))
             for ours, theirs in LOSSES.items()]
    print("\n" + ", ".join(f"{name} {a:.6g} vs {b:.6g}" for name, a, b in pairs), file=sys.stderr)
    for ours, theirs in LOSSES.items():
        torch.testing.assert_close(torch.as_tensor(float(stats[ours])),
                                   torch.as_tensor(float(official[f"info/{theirs}"])), **TOL,
                                   msg=lambda m, k=ours: f"{k}: {m}")


#: the soft-update rates of the target networks (official tau, actor_tau)
TARGET_RATES = {"target_critic": 0.005, "safe_target_critic": 0.005,
                "target_score_model": 0.001}


def test_updated_weights_match_the_official_step(official, stepped):
    _, pairs, _ = stepped
    worst = []
    for key, ours in pairs:
        theirs, before = (torch.as_tensor(official[f"{when}/{key}"]) for when in ("new", "init"))
        ours = ours.detach()
        worst.append(((ours - theirs).abs().max().item(), (theirs - before).abs().max().item(),
                      key))
        torch.testing.assert_close(ours, theirs, **TOL, msg=lambda m, k=key: f"{k}: {m}")
        rate = TARGET_RATES.get(key.split("/")[0])
        if rate:  # a target moves by rate x the update: its move / rate to the same 1e-4,
            # beyond the float32 rounding of the weight itself (a LayerNorm scale near 1)
            rounding = 2 * torch.finfo(torch.float32).eps * before.abs().max().item() / rate
            torch.testing.assert_close((ours - before) / rate, (theirs - before) / rate,
                                       rtol=TOL["rtol"], atol=TOL["atol"] + rounding,
                                       msg=lambda m, k=key: f"{k} (move / rate): {m}")
    largest = max(worst)
    print(f"\nlargest difference {largest[0]:.2e} ({largest[2]}, which moved {largest[1]:.2e})",
          file=sys.stderr)
