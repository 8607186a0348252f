"""LSPC-code against the authors' own trainer (PrajwalKoirala/LSPC-Safe-Offline-RL): the same
initial weights, batches and random draws for five steps must give the same parameters (to
1e-5) and the same LSPC-S and LSPC-O actions; and every task's config must be the code's.

Needs a checkout of the authors' code, named by LSPC_OFFICIAL_HOME:

    git clone https://github.com/PrajwalKoirala/LSPC-Safe-Offline-RL ~/lspc-official
    LSPC_OFFICIAL_HOME=~/lspc-official pytest tests_oracle/test_lspc_official.py -s

Their lspc_iql.py and lspc_iql_configs.py are imported from the checkout (nothing of theirs
is copied here). They import fsrl (for a logger) and pyrallis (for `field`) at import time;
where those are not installed, a stub of the one name each needs stands in while the two
modules load. Their trainer is built as train_lspc_iql.py builds it, from the task's config.

Layout differences (same math): our twin critics are one EnsembleMLP of four members and one
of two values, and the CVAE's and the encoder's mean and log-std heads are one Linear layer
each; weights are copied across. Random draws: each step and each action is preceded by the
same torch.manual_seed on both sides, and both draw in the same order (the CVAE's posterior
noise, then the encoder's sample; torch.randn_like and Normal.rsample both fill with
normal_, so the same seed gives the same numbers). Batches are indexed out of their own
ReplayBuffer (which builds done = terminals + timeouts) and out of the same arrays for ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from algorithms import build_config
from algorithms.lspc_code import LSPCCode
from tasks.registry import TASKS, get_task

HOME = os.environ.get("LSPC_OFFICIAL_HOME")
if not HOME:
    pytest.skip("LSPC_OFFICIAL_HOME is not set (a checkout of PrajwalKoirala/"
                "LSPC-Safe-Offline-RL; see this module's docstring)", allow_module_level=True)

STEPS, BATCH, TOL = 5, 256, 1e-5


@contextlib.contextmanager
def stand_ins():
    """fsrl.utils and pyrallis where they are not installed, only while their modules load."""
    added = []
    try:
        importlib.import_module("fsrl.utils")
    except ImportError:
        class DummyLogger:
            def store(self, *args, **kwargs):
                pass

        utils = types.ModuleType("fsrl.utils")
        utils.DummyLogger = utils.WandbLogger = DummyLogger
        fsrl = types.ModuleType("fsrl")
        fsrl.utils = utils
        sys.modules.update({"fsrl": fsrl, "fsrl.utils": utils})
        added += ["fsrl", "fsrl.utils"]
    try:
        importlib.import_module("pyrallis")
    except ImportError:
        pyrallis = types.ModuleType("pyrallis")
        pyrallis.field = dataclasses.field
        sys.modules["pyrallis"] = pyrallis
        added.append("pyrallis")
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]


def load(name: str):
    path = Path(HOME).expanduser() / f"{name}.py"
    if not path.exists():
        pytest.skip(f"LSPC_OFFICIAL_HOME={HOME} has no {name}.py")
    spec = importlib.util.spec_from_file_location(f"lspc_official_{name}", path)
    module = importlib.util.module_from_spec(spec)
    with stand_ins():
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def official():
    return load("lspc_iql"), load("lspc_iql_configs")


def their_config(configs, spec) -> dict:
    return dataclasses.asdict(configs.BC_DEFAULT_CONFIG[spec.env_id]())


def test_every_task_config_is_the_codes(official):
    _, configs = official
    for name, spec in TASKS.items():
        theirs, ours = their_config(configs, spec), build_config(LSPCCode, name)
        assert theirs["vae_clamper"] == theirs["max_latent_action"], name  # safe_epsilon None
        threshold = theirs["safe_qc_vc_threshold"]
        assert ours.safe_value_threshold == (None if threshold >= 999 else threshold), name
        assert (ours.epsilon, ours.batch_size, ours.gamma, ours.polyak_tau, ours.expectile,
                ours.reward_inverse_temperature, ours.cost_inverse_temperature,
                ours.max_weight, ours.max_weight, ours.kl_coef, ours.latent_dim,
                ours.encoder_log_std_bounds, (ours.lr,) * 3) == (
            theirs["max_latent_action"], theirs["batch_size"], theirs["discount"],
            theirs["tau"], theirs["iql_tau"], theirs["beta_reward"], theirs["beta_cost"],
            theirs["exp_adv_max_cost"], theirs["exp_adv_max_reward"], theirs["vae_beta"],
            theirs["latent_dim"], (theirs["log_std_min"], theirs["log_std_max"]),
            (theirs["actor_lr"], theirs["qf_lr"], theirs["vf_lr"])), name
        assert ours.safe_epsilon is None and theirs["reward_scale"] == 1.0, name
        assert LSPCCode.steps_for("paper", name) == theirs["max_timesteps"], name


def build_theirs(lspc_iql, cfg: dict, spec):
    """The trainer as train_lspc_iql.py builds it."""
    cfg = {**cfg, "state_dim": spec.obs_dim, "action_dim": spec.act_dim, "device": "cpu"}
    kwargs = lspc_iql.LSPC_IQL_kwargs(cfg)
    kwargs.update(episode_len=cfg["episode_len"], iql_tau=cfg["iql_tau"], tau=cfg["tau"],
                  discount=cfg["discount"], exp_adv_max_cost=cfg["exp_adv_max_cost"],
                  exp_adv_max_reward=cfg["exp_adv_max_reward"],
                  beta_reward=cfg["beta_reward"], beta_cost=cfg["beta_cost"],
                  safe_qc_vc_threshold=cfg["safe_qc_vc_threshold"])
    return lspc_iql.LSPC_IQL_Trainer(**kwargs)


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def pairs(ours: LSPCCode, theirs):
    """(name, our tensor, their tensor in our layout) for every parameter."""
    out = []
    for ens_name, ens, nets in (
            ("q", ours.q_ens, [theirs.qf.q1, theirs.qf.q2, theirs.cost_qf.q1, theirs.cost_qf.q2]),
            ("q_target", ours.q_target, [theirs.q_target.q1, theirs.q_target.q2,
                                         theirs.cost_q_target.q1, theirs.cost_q_target.q2]),
            ("v", ours.v_ens, [theirs.vf.v, theirs.cost_vf.v])):
        for m, net in enumerate(nets):
            for i, layer in enumerate(linears(net)):
                out.append((f"{ens_name}[{m}].{i}.weight", ens.weights[i][m], layer.weight.T))
                out.append((f"{ens_name}[{m}].{i}.bias", ens.biases[i][m, 0], layer.bias))
    vae, enc = theirs.actor.actor, theirs.actor.safety_encoder
    heads = {"cvae.encoder": (ours.cvae.encoder, [vae.e1, vae.e2], (vae.mean, vae.log_std)),
             "encoder.net": (ours.encoder.net, [enc.encoder[0], enc.encoder[2]],
                             (enc.mean, enc.log_std))}
    for name, (seq, trunk, (mean, log_std)) in heads.items():
        mine = linears(seq)
        for i, layer in enumerate(trunk):
            out += [(f"{name}.{i}.weight", mine[i].weight, layer.weight),
                    (f"{name}.{i}.bias", mine[i].bias, layer.bias)]
        half = mean.out_features  # our one head: the mean's rows, then the log-std's
        head = mine[-1]
        out += [(f"{name}.mean.weight", head.weight[:half], mean.weight),
                (f"{name}.mean.bias", head.bias[:half], mean.bias),
                (f"{name}.log_std.weight", head.weight[half:], log_std.weight),
                (f"{name}.log_std.bias", head.bias[half:], log_std.bias)]
    for i, (mine, layer) in enumerate(zip(linears(ours.cvae.decoder), [vae.d1, vae.d2, vae.d3])):
        out += [(f"cvae.decoder.{i}.weight", mine.weight, layer.weight),
                (f"cvae.decoder.{i}.bias", mine.bias, layer.bias)]
    return out


def fake_data(spec, n=2000, seed=0) -> dict[str, np.ndarray]:
    """Transitions of the task's shapes: costs, terminals, timeouts, 2.5% of rows both."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, spec.obs_dim)).astype(np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[19::20] = 1.0
    terminals = (rng.random(n) < 0.02).astype(np.float32)
    terminals[39::40] = 1.0  # terminal and timeout at once: done = 2 in the code
    return {"observations": obs, "next_observations": rng.normal(size=obs.shape).astype(np.float32),
            "actions": np.tanh(rng.normal(size=(n, spec.act_dim))).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "costs": (rng.random(n) < 0.2).astype(np.float32),
            "terminals": terminals, "timeouts": timeouts}


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("task", ["CarRun", "easysparse"])  # eps 0.6; the MetaDrive mask
def test_five_steps_and_actions_equal_the_authors_trainer(official, task, parallel):
    lspc_iql, configs = official
    spec = get_task(task)
    torch.manual_seed(0)
    theirs = build_theirs(lspc_iql, their_config(configs, spec), spec)
    ours = LSPCCode(spec, build_config(LSPCCode, task), None, seed=0)
    ours.parallel_updates = parallel  # critics and actor side by side in two threads
    with torch.no_grad():
        for name, mine, their in pairs(ours, theirs):
            their.copy_(mine)
    arrays = ours.training_data(fake_data(spec))
    buffer = lspc_iql.ReplayBuffer(spec.obs_dim, spec.act_dim, len(arrays["rewards"]))
    with contextlib.redirect_stdout(None):  # it prints the dataset size
        buffer.load_d4rl_dataset(arrays)
    tensors = {k: torch.as_tensor(v) for k, v in arrays.items()}
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        index = torch.as_tensor(rng.integers(0, len(arrays["rewards"]), BATCH))
        torch.manual_seed(100 + step)
        theirs.train_one_step(buffer._states[index], buffer._next_states[index],
                              buffer._actions[index], buffer._rewards[index],
                              buffer._costs[index], buffer._dones[index])
        torch.manual_seed(100 + step)
        ours.train_step({k: v[index] for k, v in tensors.items()})
    worst = max((float((mine - their).detach().abs().max()), name)
                for name, mine, their in pairs(ours, theirs))
    print(f"\n{task} parallel={parallel}: largest parameter difference after {STEPS} steps "
          f"{worst[0]:.2e} ({worst[1]})")
    for name, mine, their in pairs(ours, theirs):
        torch.testing.assert_close(mine, their, rtol=0, atol=TOL, msg=name)
    # actions: LSPC-S (their VAE_policy.act) and LSPC-O (their SafeActor.act), one state each
    largest = 0.0
    for i, state in enumerate(arrays["observations"][:16]):
        for policy, act in (("LSPC-S-code", theirs.actor.actor.act), ("LSPC-O-code",
                                                                       theirs.actor.act)):
            torch.manual_seed(1000 + i)
            expected = act(state, "cpu")
            ours.policy = policy
            torch.manual_seed(1000 + i)
            mine = ours.act(state[None])
            np.testing.assert_allclose(mine, expected, rtol=0, atol=TOL, err_msg=policy)
            largest = max(largest, float(np.abs(mine - expected).max()))
    print(f"{task} parallel={parallel}: largest action difference {largest:.2e}")
