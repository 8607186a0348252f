"""FISOR: the native port's losses and weights by hand, its actor, and the adapter to the
official code against a stand-in checkout this file writes (the official modules' interface
and output format, with NumPy inside)."""

import dataclasses
import json
import math
import pickle
import re
import sys
import textwrap

import numpy as np
import pytest
import torch

from algorithms.fisor import (FISOR, Config, NoisePredictor, cosine_lr, ddpm_sample,
                              diffusion_loss, feasibility_weights, feasible_target, fisor_data,
                              q_losses, value_losses, vp_schedule)
from algorithms.fisor_official import (OfficialFISOR, OfficialFISORError, check_official,
                                       official_overrides, official_setup)
from bench.cli import main
from tasks.registry import get_task
from helpers import fake_arrays

SPEC = get_task("DroneRun")


def small_config(**changes):
    small = dict(batch_size=64, critic_batch_size=16, critic_hidden=(32, 32), actor_hidden=32,
                 actor_blocks=1, time_dim=8, time_hidden=(16, 16), candidates=4)
    return dataclasses.replace(Config(), **(small | changes))


def fisor(config=None, seed=0):
    torch.manual_seed(seed)
    return FISOR(SPEC, config or small_config(), None, seed)


def fixed(values):
    """A stand-in network returning (members, B, 1) fixed outputs whatever its input."""
    out = torch.tensor(values, dtype=torch.float32)[..., None]
    return lambda x: out


# ---- the critics ---------------------------------------------------------------------------
def test_value_losses_by_hand_reversed_expectile_for_the_feasibility_value():
    obs, actions = torch.zeros(2, 1), torch.zeros(2, 1)
    # target critics: Q_r1, Q_r2 (min: [1, 0]), Q_h1, Q_h2 (max: [2, -1])
    q_target = fixed([[1.0, 2.0], [3.0, 0.0], [0.5, -1.0], [2.0, -3.0]])
    v_ens = fixed([[0.5, 1.0], [0.0, 1.0]])  # V_r, V_h
    loss, stats = value_losses(Config(), v_ens, q_target, obs, actions)
    # V_r, tau 0.9: u = Q_r - V_r = [0.5, -1]: (0.9 * 0.25 + 0.1 * 1) / 2
    assert stats["loss/v_r"].item() == pytest.approx(0.1625)
    # V_h reversed: u = Q_h - V_h = [2, -2]; V_h below Q_h costs 0.1, above it 0.9
    assert stats["loss/v_h"].item() == pytest.approx((0.1 * 4 + 0.9 * 4) / 2)
    assert loss.item() == pytest.approx(0.1625 + 2.0)
    assert stats["feasible_fraction"].item() == 0.5  # V_h(s) <= 0 in the first state only


def test_feasible_bellman_target_by_hand():
    h = torch.tensor([25.0, -1.0, -1.0, -1.0])
    next_vh = torch.tensor([-5.0, 3.0, -2.0, 7.0])
    done = torch.tensor([0.0, 0.0, 0.0, 1.0])
    target = feasible_target(h, next_vh, done, 0.99)
    # (1 - g) h + g max(h, V_h(s')); h itself where the episode ends
    assert target.tolist() == pytest.approx([0.25 + 0.99 * 25, -0.01 + 0.99 * 3,
                                             -0.01 - 0.99, -1.0])


def test_q_losses_by_hand():
    obs, actions = torch.zeros(2, 1), torch.zeros(2, 1)
    q_ens = fixed([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])  # Q_r1, Q_r2, Q_h1, Q_h2
    v_ens = fixed([[2.0, 2.0], [-3.0, 4.0]])  # V_r(s'), V_h(s')
    rewards, h = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 25.0])
    done = torch.tensor([0.0, 1.0])
    _, stats = q_losses(Config(), q_ens, v_ens, obs, actions, rewards, h, obs, done)
    q_backup = np.array([1 + 0.99 * 2, 0.0])
    expected_q = np.mean([(1 - q_backup) ** 2, (2 - q_backup) ** 2])  # mean over members too
    assert stats["loss/q_r"].item() == pytest.approx(expected_q, rel=1e-6)
    h_backup = np.array([-0.01 + 0.99 * -1.0, 25.0])  # max(-1, -3) = -1; then done
    expected_h = np.mean([(0 - h_backup) ** 2, (1 - h_backup) ** 2])
    assert stats["loss/q_h"].item() == pytest.approx(expected_h, rel=1e-6)


# ---- the weights ---------------------------------------------------------------------------
def test_feasibility_weights_by_hand():
    #   feasible; feasible state, infeasible action; infeasible; infeasible, clipped;
    #   feasible, clipped; infeasible, action worse than V_h
    v_h = torch.tensor([-1.0, -1.0, 1.0, 2.0, -1.0, 1.0])
    q_h = torch.tensor([-0.5, 0.5, 0.8, -40.0, -1.0, 2.0])
    q_r = torch.tensor([1.2, 5.0, 9.0, 9.0, 11.0, 0.0])
    v_r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    w = feasibility_weights(Config(), q_r, v_r, q_h, v_h)
    expected = [math.exp(3 * 0.2), 0.0, math.exp(5 * 0.2), 150.0, 100.0, math.exp(-5.0)]
    assert w.tolist() == pytest.approx(expected, rel=1e-5)
    # the MetaDrive branch floors the infeasible weights at 1
    w = feasibility_weights(Config(min_cost_weight=1.0), q_r, v_r, q_h, v_h)
    assert w[5].item() == 1.0 and w[1].item() == 0.0


def test_data_as_the_official_loader_gives_it():
    spec = get_task("BallRun")
    arrays = {"rewards": np.array([1.0, 2.0], np.float32), "costs": np.array([0.0, 1.0]),
              "actions": np.array([[1.0, -1.0], [0.5, 0.0]], np.float32)}
    out = fisor_data(arrays, spec, Config())
    assert out["h"].tolist() == [-1.0, 25.0]
    scale = 100 / (spec.reward_max - spec.reward_min)  # L / (r_max - r_min)
    assert out["rewards"].tolist() == pytest.approx([scale, 2 * scale])
    assert out["actions"][0].tolist() == pytest.approx([1 - 1e-5, -1 + 1e-5])
    assert out["costs"] is arrays["costs"]


# ---- the diffusion actor ---------------------------------------------------------------------
def test_vp_schedule_and_cosine_decay():
    betas, alphas, alpha_bars = vp_schedule(5)
    assert alphas[0].item() == pytest.approx(math.exp(-0.1 / 5 - 0.5 * 9.9 / 25))
    assert betas.tolist() == pytest.approx((1 - alphas).tolist())
    # sum over t of (2t - 1) is T^2: abar_T = exp(-b_min - (b_max - b_min) / 2)
    assert alpha_bars[-1].item() == pytest.approx(math.exp(-0.1 - 4.95), rel=1e-5)
    assert cosine_lr(3e-4, 0, 100) == pytest.approx(3e-4)
    assert cosine_lr(3e-4, 50, 100) == pytest.approx(1.5e-4)
    assert cosine_lr(3e-4, 500, 100) == 0.0


def test_diffusion_loss_falls_on_a_tiny_dataset_and_samples_follow_the_data():
    torch.manual_seed(0)
    cfg = small_config(actor_hidden=64, actor_dropout=0.0)
    obs = torch.randn(128, 3)
    actions = torch.tanh(obs @ torch.randn(3, 2))
    model = NoisePredictor(3, 2, cfg)
    _, _, alpha_bars = vp_schedule(cfg.diffusion_steps)
    ones = torch.ones(len(obs))

    def mean_loss():
        torch.manual_seed(123)  # the same t and noise draws before and after
        with torch.no_grad():
            return np.mean([diffusion_loss(model, alpha_bars, obs, actions, ones)[0].item()
                            for _ in range(20)])

    before = mean_loss()
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss, _ = diffusion_loss(model, alpha_bars, obs, actions, ones)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert mean_loss() < 0.5 * before
    # and the reverse process then lands on the data's actions (the sampler's arithmetic)
    model.eval()
    betas, alphas, _ = vp_schedule(cfg.diffusion_steps)
    sampled = ddpm_sample(model, obs, 2, betas, alphas, alpha_bars)
    spread = (actions - actions.mean(0)).abs().mean()
    assert (sampled - actions).abs().mean() < 0.2 * spread


def test_weights_scale_the_diffusion_loss():
    torch.manual_seed(0)
    model = NoisePredictor(3, 2, small_config(actor_dropout=0.0))
    _, _, alpha_bars = vp_schedule(5)
    obs, actions = torch.randn(8, 3), torch.rand(8, 2)
    torch.manual_seed(1)
    base, _ = diffusion_loss(model, alpha_bars, obs, actions, torch.ones(8))
    torch.manual_seed(1)
    double, _ = diffusion_loss(model, alpha_bars, obs, actions, 2 * torch.ones(8))
    torch.manual_seed(1)
    none, _ = diffusion_loss(model, alpha_bars, obs, actions, torch.zeros(8))
    assert double.item() == pytest.approx(2 * base.item()) and none.item() == 0.0


def test_sampled_actions_stay_in_the_bounds():
    method = fisor()
    data = method.training_data(fake_arrays())
    batch = {k: torch.as_tensor(v[:64]) for k, v in data.items()}
    for _ in range(2):
        stats = method.train_step(batch)
    assert all(np.isfinite(float(v)) for v in stats.values())
    obs = 1000.0 * np.random.default_rng(0).normal(size=(7, SPEC.obs_dim)).astype(np.float32)
    actions = method.act(obs)
    assert actions.shape == (7, SPEC.act_dim) and np.all(np.abs(actions) <= 1.0)
    # even a noise predictor gone wild leaves the sampler's clip in charge
    betas, alphas, alpha_bars = vp_schedule(5)
    wild = ddpm_sample(lambda s, x, t: 1e6 * torch.ones_like(x), torch.zeros(5, 3), 2,
                       betas, alphas, alpha_bars)
    assert torch.all(wild.abs() <= 1.0)


def test_act_takes_the_candidate_with_the_lowest_feasibility_value(monkeypatch):
    method = fisor()
    candidates = torch.tensor([[0.3, 0.0], [-0.2, 0.1], [0.9, 0.5], [-0.7, 0.2],  # state 0
                               [0.1, 0.1], [0.2, 0.2], [0.0, 0.4], [0.5, 0.5]])  # state 1
    monkeypatch.setattr("algorithms.fisor.ddpm_sample", lambda *args, **kw: candidates)

    def critics(sa):  # Q_r = -a_1; Q_h1 = a_0, Q_h2 = a_0 - 1 (max: a_0)
        a = sa[:, -2:]
        return torch.stack([-a[:, 1], -a[:, 1], a[:, 0], a[:, 0] - 1])[..., None]

    method.q_target = critics
    obs = np.zeros((2, SPEC.obs_dim), np.float32)
    np.testing.assert_allclose(method.act(obs), [[-0.7, 0.2], [0.0, 0.4]])
    method.config = dataclasses.replace(method.config, pick="max_qr")
    np.testing.assert_allclose(method.act(obs), [[0.3, 0.0], [0.1, 0.1]])


def test_save_load_round_trip(tmp_path):
    method = fisor()
    data = method.training_data(fake_arrays())
    batch = {k: torch.as_tensor(v[:64]) for k, v in data.items()}
    for _ in range(3):
        method.train_step(batch)
    torch.save(method.state_dict(), tmp_path / "fisor.pt")
    other = fisor(seed=1)
    other.load_state_dict(torch.load(tmp_path / "fisor.pt", weights_only=False))
    assert other.actor_updates == method.actor_updates == 6  # two actor halves per step
    obs = np.random.default_rng(2).normal(size=(3, SPEC.obs_dim)).astype(np.float32)
    torch.manual_seed(5)
    actions = method.act(obs)
    torch.manual_seed(5)
    np.testing.assert_array_equal(other.act(obs), actions)
    # the EMA actor acts, the online one learns: they differ after training
    online = dict(method.actor.named_parameters())
    assert any(not torch.equal(p, online[n]) for n, p in method.actor_target.named_parameters())


def test_the_schedule_kept_as_tensors_for_a_cuda_graph_trains_as_the_python_one():
    """prepare_graph_capture (before a CUDA graph records the step) moves the actor's update
    count and learning rate onto the device as tensors; the cosine schedule they give must be
    the Python one, through its end (decay over 8 updates, 12 taken), and a checkpoint still
    holds plain numbers."""
    from tasks.samplers import BatchSampler

    config = small_config(lr_decay_steps=8)
    python, tensors = fisor(config), fisor(config, seed=1)
    tensors.load_state_dict(python.state_dict())
    tensors.prepare_graph_capture()
    sampler = BatchSampler(python.training_data(fake_arrays()), 64, seed=0, device="cpu")
    batches = [sampler.sample() for _ in range(6)]  # two actor updates a step
    for method in (python, tensors):
        torch.manual_seed(3)
        for batch in batches:
            method.train_step(batch)
    assert isinstance(tensors.actor_updates, torch.Tensor) and int(tensors.actor_updates) == 12
    assert float(tensors.actor_optim.param_groups[0]["lr"]) == 0.0 == cosine_lr(1.0, 12, 8)
    for name in ("actor", "actor_target", "q_ens", "v_ens"):
        for key, value in getattr(python, name).state_dict().items():
            torch.testing.assert_close(getattr(tensors, name).state_dict()[key], value,
                                       rtol=1e-5, atol=1e-6)
    state = tensors.state_dict()
    assert state["actor_updates"] == 12
    assert isinstance(state["actor_optim"]["param_groups"][0]["lr"], float)


def test_the_config_picks_the_implementation(monkeypatch):
    monkeypatch.delenv("FISOR_HOME", raising=False)
    assert FISOR.create(SPEC, small_config(), None, 0).record_fields() == {
        "implementation": "native"}
    with pytest.raises(OfficialFISORError, match="FISOR_HOME is not set"):
        FISOR.create(SPEC, small_config(implementation="official"), None, 0)


# ---- the adapter, against a stand-in checkout -------------------------------------------------
STANDIN = {
    "launcher/examples/train_offline.py": """
        # stand-in: the official entry point, python launcher/examples/train_offline.py
        #   --env_id N --config configs/train_config.py:fisor (the adapter imports the modules)
        raise SystemExit("not run by the harness")
        """,
    "configs/train_config.py": """
        def get_config(config_string):
            agent = dict(model_cls="FISOR", cost_limit=10, actor_lr=3e-4, critic_lr=3e-4,
                         value_lr=3e-4, cost_temperature=5, reward_temperature=3, T=5, N=16,
                         M=0, clip_sampler=True, actor_dropout_rate=0.1, actor_num_blocks=3,
                         actor_weight_decay=None, decay_steps=int(3e6), actor_layer_norm=True,
                         value_layer_norm=False, actor_tau=0.001, actor_architecture="ln_resnet",
                         critic_objective="expectile", critic_hyperparam=0.9,
                         cost_critic_hyperparam=0.9, critic_type="hj", cost_ub=150,
                         beta_schedule="vp", actor_objective="feasibility",
                         sampling_method="ddpm", extract_method="minqc")
            return {"fisor": dict(project="FISOR", seed=-1, max_steps=1000001,
                                  eval_episodes=20, batch_size=2048, log_interval=1000,
                                  eval_interval=250000, normalize_returns=True,
                                  dataset_kwargs=dict(cost_scale=25), agent_kwargs=agent)
                    }[config_string]
        """,
    "jaxrl5/__init__.py": "",
    "jaxrl5/agents/__init__.py": "from jaxrl5.agents.fisor.fisor import FISOR\n",
    "jaxrl5/agents/fisor/fisor.py": """
        import copy
        import os
        import pickle

        import numpy as np

        class FISOR:
            @classmethod
            def create(cls, seed, observation_space, action_space, **kwargs):
                agent = cls()
                agent.kwargs = dict(kwargs, seed=seed)
                agent.act_dim = action_space.shape[0]
                agent.rng = np.array([0, seed], np.uint32)
                agent.steps, agent.seen_costs = 0, set()
                return agent

            def replace(self, **changes):
                new = copy.copy(self)
                new.__dict__.update(changes)
                return new

            def update(self, batch):
                steps = self.steps + 1
                if os.environ.get("FAKE_FISOR_FAIL_AT") == str(steps):
                    raise RuntimeError("fake failure at step %d" % steps)
                info = {"actor_loss": 1.0 / steps, "costs": float(np.mean(batch["costs"])),
                        "rewards": float(np.mean(batch["rewards"]))}
                seen = self.seen_costs | set(np.unique(batch["costs"]).tolist())
                return self.replace(steps=steps, seen_costs=seen), info

            def eval_actions(self, observations):
                assert observations.ndim == 1
                noise = np.random.default_rng(self.rng.tolist()).uniform(-1, 1, self.act_dim)
                action = np.clip(np.tanh(observations[:self.act_dim]) + 0.1 * noise, -1, 1)
                return action, self.replace(rng=self.rng + np.array([1, 0], np.uint32))

            def save(self, modeldir, save_time):
                path = os.path.join(modeldir, "model" + str(save_time) + ".pickle")
                with open(path, "wb") as handle:
                    pickle.dump(self.__dict__, handle)

            def load(self, model_location):
                with open(model_location, "rb") as handle:
                    return self.replace(**pickle.load(handle))

            def update_actor(agent, batch):  # never called: the official line the harness reads
                if agent.actor_objective == "feasibility":
                    unsafe_weights = unsafe_condition * jnp.clip(cost_exp_adv, 0, agent.cost_ub)
        """,
    "jaxrl5/data/dsrl_datasets.py": """
        import numpy as np

        class DSRLDataset:
            def __init__(self, env, clip_to_eps=True, eps=1e-5, critic_type="qc",
                         data_location=None, cost_scale=1., ratio=1.0):
                data = env.get_dataset()
                print("max_episode_reward", env.max_episode_reward)
                dones = np.logical_or(data.pop("terminals"), data.pop("timeouts"))
                if critic_type == "hj":
                    data["costs"] = np.where(data["costs"] > 0, 1 * cost_scale, -1)
                data["actions"] = np.clip(data["actions"], -1 + eps, 1 - eps)
                data["masks"] = 1.0 - dones.astype(np.float32)
                self.data = data

            def normalize_returns(self, max_episode_reward, min_episode_reward, scaling=1000):
                self.data["rewards"] = (self.data["rewards"]
                                        / (max_episode_reward - min_episode_reward) * scaling)

            def seed(self, seed=None):
                self.rng = np.random.default_rng(seed)

            def sample_jax(self, batch_size):
                index = self.rng.integers(len(self.data["rewards"]), size=batch_size)
                return {key: value[index] for key, value in self.data.items()}
        """,
    "jax/__init__.py": "from jax import random  # noqa: F401\n",
    "jax/random.py": """
        import numpy as np

        def PRNGKey(seed):
            return np.array([0, seed % 2**32], np.uint32)
        """,
}


@pytest.fixture
def standin(tmp_path, monkeypatch):
    home = tmp_path / "FISOR"
    for path, text in STANDIN.items():
        (home / path).parent.mkdir(parents=True, exist_ok=True)
        (home / path).write_text(textwrap.dedent(text))
    monkeypatch.setenv("FISOR_HOME", str(home))
    monkeypatch.setenv("FISOR_PYTHON", sys.executable)
    return home


def test_missing_or_broken_checkout_is_one_clear_message(standin, tmp_path, monkeypatch):
    assert official_setup() == (standin.resolve(), sys.executable)
    monkeypatch.delenv("FISOR_HOME")
    with pytest.raises(OfficialFISORError, match="^FISOR_HOME is not set: set FISOR_HOME to a "
                                                 "checkout of https://github.com/ZhengYinan"):
        official_setup()
    monkeypatch.setenv("FISOR_HOME", str(tmp_path))
    with pytest.raises(OfficialFISORError, match="is not a checkout of the official FISOR code "
                                                 r"\(no launcher/examples/train_offline.py"):
        official_setup()
    monkeypatch.setenv("FISOR_HOME", str(standin))
    (standin / "launcher/examples/train_offline.py").unlink()
    with pytest.raises(OfficialFISORError, match="no launcher/examples/train_offline.py"):
        official_setup()
    (standin / "launcher/examples/train_offline.py").write_text("")
    monkeypatch.delenv("FISOR_PYTHON")
    with pytest.raises(OfficialFISORError, match="^FISOR_PYTHON is not set"):
        official_setup()
    monkeypatch.setenv("FISOR_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(OfficialFISORError, match="is not an executable"):
        official_setup()


def test_a_checkout_that_does_not_import_fails_the_check_with_its_error(standin):
    assert check_official()["event"] == "ok"
    (standin / "jaxrl5/agents/__init__.py").write_text("import flax_not_installed_here\n")
    with pytest.raises(OfficialFISORError, match="cannot import the official code") as err:
        check_official()
    assert "No module named 'flax_not_installed_here'" in str(err.value)


def test_settings_the_official_code_hard_codes_cannot_change(standin):
    overrides = official_overrides(Config())
    assert overrides["agent_kwargs"]["extract_method"] == "minqc"
    assert overrides["agent_kwargs"]["cost_ub"] == 150 and overrides["batch_size"] == 2048
    assert overrides["dataset_kwargs"] == {"cost_scale": 25.0}
    with pytest.raises(OfficialFISORError, match="cannot change critic_batch_size=128"):
        official_overrides(Config(critic_batch_size=128))


def run(results, *extra):
    return main(["run", "--tasks", "BallRun", "--methods", "FISOR", "--profile", "smoke",
                 "--results", str(results), "--jobs", "1", "--quiet", *extra])


def test_run_without_a_checkout_is_one_line(local_ballrun, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FISOR_HOME", raising=False)
    assert run(tmp_path / "r", "--set", "implementation=official") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: FISOR_HOME is not set") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    assert main(["run", "--tasks", "BallRun", "--methods", "BC-All", "--set",
                 "implementation=native", "--results", str(tmp_path / "r")]) == 2
    assert "no selected method has such a setting" in capsys.readouterr().err


def test_official_run_records_with_our_data_and_evaluation(local_ballrun, standin, tmp_path,
                                                           capsys):
    results = tmp_path / "results"
    assert run(results, "--set", "implementation=official") == 0
    assert "FISOR (official) BallRun seed 0: step 10/10" in capsys.readouterr().err
    records = sorted(results.rglob("thr*-seed0-*.json"))
    assert len(records) == 3
    record = json.loads(records[0].read_text())
    assert record["method"] == "FISOR" and record["implementation"] == "official"
    assert record["config"]["implementation"] == "official"
    assert record["official_commit"] is None  # the stand-in is no git checkout
    assert record["official_min_cost_weight"] == record["config"]["min_cost_weight"] == 0.0
    assert record["official_versions"]["python"] == sys.version.split()[0]
    assert record["eval_episodes"] == 2 and len(record["cost_returns"]) == 2
    run_dir = next(p for p in (results / "bullet/BallRun/FISOR").glob("run-*") if p.is_dir())
    # the driver trained on the harness's file, relabelled by the official loader
    with open(run_dir / "official/model10.pickle", "rb") as handle:
        agent = pickle.load(handle)
    assert agent["steps"] == 10 and agent["seen_costs"] <= {-1.0, 25.0}
    kwargs = agent["kwargs"]
    assert kwargs["T"] == 5 and kwargs["N"] == 16 and kwargs["extract_method"] == "minqc"
    assert kwargs["env_max_steps"] == 100 and "model_cls" not in kwargs
    assert "max_episode_reward" in (run_dir / "official/train.log").read_text()
    assert not (run_dir / "official/data.npz").exists()
    curve = (run_dir / "curve.csv").read_text().splitlines()
    assert curve[0].split(",") == ["step", "actor_loss", "costs", "rewards"]
    # seeded evaluation: the same episodes again from the checkpoint, without training
    record_path = records[0]
    record_path.unlink()
    assert run(results, "--set", "implementation=official") == 0
    again = json.loads(record_path.read_text())
    assert again["reward_returns"] == record["reward_returns"]
    assert again["official_versions"] == record["official_versions"]  # kept in the checkpoint


def test_a_failing_official_run_is_an_error_with_its_output(local_ballrun, standin, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setenv("FAKE_FISOR_FAIL_AT", "3")
    results = tmp_path / "results"
    assert run(results, "--set", "implementation=official") == 1
    out = capsys.readouterr().out
    assert ("FAILED FISOR [implementation=official] BallRun thr=all seed=0: "
            "OfficialFISORError: official FISOR train on "
            "BallRun exited with status 1") in out
    error = json.loads(next(results.rglob("*.error.json")).read_text())
    assert "RuntimeError: fake failure at step 3" in error["error"]
    assert not list(results.rglob("thr*-seed0-*[0-9a-f].json"))


def test_the_adapter_serves_the_saved_agent_after_a_reload(standin, tmp_path):
    spec = get_task("BallRun")
    config = Config(implementation="official", batch_size=8)
    method = FISOR.create(spec, config, None, 0)
    assert isinstance(method, OfficialFISOR)
    arrays = fake_arrays(n=100)
    arrays = {k: (v[:, :spec.obs_dim] if k.endswith("observations") else
                  v[:, :spec.act_dim] if k == "actions" else v) for k, v in arrays.items()}
    points = list(method.fit(arrays, 4, 0, 2, tmp_path))
    assert [step for step, _ in points] == [2, 4]
    obs = np.random.default_rng(0).normal(size=(3, spec.obs_dim)).astype(np.float32)
    torch.manual_seed(0)
    method.reset(3)
    actions = method.act(obs)
    assert actions.shape == (3, spec.act_dim) and np.all(np.abs(actions) <= 1)
    other = FISOR.create(spec, config, None, 1)
    other.load_state_dict(method.state_dict())
    torch.manual_seed(0)
    other.reset(3)
    np.testing.assert_array_equal(other.act(obs), actions)
    method._close_server()
    other._close_server()


def _floor(standin, floor):
    """The stand-in as branch master (floor 0) or metadrive_imitation (floor 1)."""
    path = standin / "jaxrl5/agents/fisor/fisor.py"
    text = re.sub(r"jnp\.clip\(cost_exp_adv, [0-9.]+,", f"jnp.clip(cost_exp_adv, {floor},",
                  path.read_text())
    path.write_text(text)


def _metadrive_arrays(spec, n=100):
    rng = np.random.default_rng(0)
    arrays = fake_arrays(n=n)
    arrays["observations"] = rng.normal(size=(n, spec.obs_dim)).astype(np.float32)
    arrays["next_observations"] = rng.normal(size=(n, spec.obs_dim)).astype(np.float32)
    arrays["actions"] = rng.uniform(-1, 1, (n, spec.act_dim)).astype(np.float32)
    return arrays


def test_the_official_floor_of_the_infeasible_weights_is_what_the_record_says(standin,
                                                                             tmp_path):
    """MetaDrive's config says min_cost_weight=1 (branch metadrive_imitation); a master
    checkout clips at 0: that job is refused before it trains, and a record says what ran."""
    from algorithms import build_config

    spec = get_task("easysparse")
    config = dataclasses.replace(build_config(FISOR, "easysparse"),
                                 implementation="official", batch_size=8)
    assert config.min_cost_weight == 1.0
    method = FISOR.create(spec, config, None, 0)  # the stand-in as master
    with pytest.raises(OfficialFISORError, match=(
            "min_cost_weight=1 on easysparse, but the official checkout in FISOR_HOME clips "
            r"the infeasible weights at 0 \(jaxrl5/agents/fisor/fisor.py, as on branch master\)"
            ".*checkout metadrive_imitation.*--set min_cost_weight=0")):
        list(method.fit(_metadrive_arrays(spec), 2, 0, 2, tmp_path))
    assert not (tmp_path / "official" / "train.log").exists()  # refused before it ran

    _floor(standin, 1)  # the stand-in as metadrive_imitation
    method = FISOR.create(spec, config, None, 0)
    assert [step for step, _ in method.fit(_metadrive_arrays(spec), 2, 0, 2, tmp_path)] == [2]
    assert method.record_fields()["official_min_cost_weight"] == 1.0
    other = FISOR.create(spec, config, None, 1)
    _floor(standin, 0)  # the checkout changed since: a reloaded model says what trained it
    other.load_state_dict(method.state_dict())
    assert other.record_fields()["official_min_cost_weight"] == 1.0

    from algorithms.fisor_official import official_min_cost_weight

    assert official_min_cost_weight(standin) == 0.0
    (standin / "jaxrl5/agents/fisor/fisor.py").write_text("class FISOR: pass\n")
    with pytest.raises(OfficialFISORError, match="floor of the infeasible weights that would "
                                                 "run is unknown"):
        official_min_cost_weight(standin)


def test_a_metadrive_run_on_the_wrong_branch_is_refused_before_any_job(data_dirs, standin,
                                                                        tmp_path, capsys):
    from tasks.datasets import local_path, write_dsrl_file

    spec = get_task("easysparse")
    write_dsrl_file(local_path(spec, "smoke"), _metadrive_arrays(spec), {"source": "local"})
    results = tmp_path / "results"
    assert main(["run", "--tasks", "easysparse", "--methods", "FISOR", "--profile", "smoke",
                 "--results", str(results), "--jobs", "1", "--quiet",
                 "--set", "implementation=official"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: FISOR min_cost_weight=1 on easysparse, but the official "
                          "checkout") and "Traceback" not in err
    assert not results.exists()
