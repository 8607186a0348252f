"""CDT: the sequence sampler, the loss terms, training on fake data, prompted acting, save/load,
the augmented training data, and one smoke run end to end. The transformer kernel is tested in
test_transformer.py, the augmentation's parts in test_augmentation.py."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from algorithms import build_config, get_method
from algorithms.cdt import CDT, TARGET_RETURNS, CDTNet, cdt_loss, temperature_loss
from tasks.samplers import SequenceSampler, make_sampler
from tasks.registry import get_task, suite_tasks
from helpers import fake_arrays

SPEC = get_task("DroneRun")  # observations 17, actions 4


def tiny_arrays():
    """Two trajectories: steps 0..3 (ends by timeout) and 4..8 (ends by terminal)."""
    n = 9
    obs = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    return {"observations": obs, "actions": -obs[:, :1],
            "rewards": np.arange(1, n + 1, dtype=np.float32),
            "costs": np.array([0, 1, 0, 1, 1, 0, 0, 1, 0], np.float32),
            "terminals": np.array([0, 0, 0, 0, 0, 0, 0, 0, 1], np.float32),
            "timeouts": np.array([0, 0, 0, 1, 0, 0, 0, 0, 0], np.float32)}


def test_sequence_sampler_windows_stay_inside_one_trajectory():
    arrays = tiny_arrays()
    sampler = SequenceSampler(arrays, batch_size=512, seed=0, device="cpu", seq_len=3)
    batch = sampler.sample()
    assert batch["observations"].shape == (512, 3, 2) and batch["actions"].shape == (512, 3, 1)
    starts, ends = [0, 4], [4, 9]
    rewards, costs = arrays["rewards"], arrays["costs"]
    seen = set()
    for b in range(512):
        first = int(batch["observations"][b, 0, 0])  # observation = global step index
        traj = 0 if first < 4 else 1
        start_in_traj = first - starts[traj]
        seen.add(first)
        for k in range(3):
            step = first + k
            real = step < ends[traj]
            assert batch["mask"][b, k] == float(real)
            assert batch["timesteps"][b, k] == start_in_traj + k  # padded steps included
            if real:
                assert batch["observations"][b, k, 0] == step
                assert batch["actions"][b, k, 0] == -step
                assert batch["returns_to_go"][b, k] == pytest.approx(
                    rewards[step:ends[traj]].sum())
                assert batch["costs_to_go"][b, k] == costs[step:ends[traj]].sum()
                assert batch["costs"][b, k] == costs[step]
            else:  # zero padding past the trajectory's end
                assert batch["observations"][b, k].abs().sum() == 0
                assert batch["returns_to_go"][b, k] == batch["costs_to_go"][b, k] == 0
    assert seen == set(range(9))  # every start index of both trajectories is drawn


def test_sequence_sampler_trajectory_weights():
    weights = np.array([0.0, 1.0])  # only the second trajectory
    batch = SequenceSampler(tiny_arrays(), 256, 0, "cpu", seq_len=2,
                            trajectory_weights=weights).sample()
    assert (batch["observations"][:, 0, 0] >= 4).all()
    with pytest.raises(ValueError, match="one non-negative weight per trajectory"):
        SequenceSampler(tiny_arrays(), 4, 0, "cpu", seq_len=2, trajectory_weights=[1.0])


def test_cost_sampling_weights_as_osrl():
    method = build()
    arrays = fake_arrays()  # episode i has cost return i
    options = method.sequence_options(arrays)
    assert options["seq_len"] == 10
    np.testing.assert_allclose(options["trajectory_weights"], 70.0 - np.arange(12))
    assert isinstance(make_sampler(method, arrays, 8, 0, "cpu"), SequenceSampler)


def build(seed=0, **changes):
    _, cls = get_method("CDT")
    config = dataclasses.replace(build_config(cls, SPEC.name), batch_size=32, **changes)
    return cls(SPEC, config, None, seed)


def test_loss_terms_by_hand():
    torch.manual_seed(0)
    config = dataclasses.replace(CDT.Config(), embedding_dim=16, num_layers=1, num_heads=2)
    net = CDTNet(3, 2, 4, 20, config).eval()
    batch = {"observations": torch.randn(2, 4, 3), "actions": torch.rand(2, 4, 2) * 2 - 1,
             "returns_to_go": torch.rand(2, 4) * 10, "costs_to_go": torch.rand(2, 4) * 5,
             "costs": torch.tensor([[0, 1, 0, 0], [1, 1, 0, 0.0]]),
             "timesteps": torch.arange(4).repeat(2, 1),
             "mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0.0]])}
    alpha = torch.tensor(0.3)
    loss, stats = cdt_loss(net, batch, alpha, 0.02, 0.1, 1.0)
    mean, log_std, cost_logp = net(batch["returns_to_go"] * 0.1, batch["costs_to_go"],
                                   batch["observations"], batch["actions"], batch["timesteps"])
    real = batch["mask"] > 0
    dist = torch.distributions.Normal(mean, log_std.exp())
    log_likelihood = dist.log_prob(batch["actions"])[real].mean()
    entropy = dist.entropy()[real].mean()
    nll = torch.nn.functional.nll_loss(cost_logp.reshape(-1, 2), batch["costs"].flatten().long(),
                                       reduction="none")
    cost_loss = (nll * batch["mask"].flatten()).mean()  # padded steps count zero, as OSRL
    torch.testing.assert_close(stats["cdt/nll"], -log_likelihood)
    torch.testing.assert_close(stats["cdt/entropy"], entropy)
    torch.testing.assert_close(stats["loss/cost"], cost_loss)
    torch.testing.assert_close(loss, -(log_likelihood + 0.3 * entropy) + 0.02 * cost_loss)
    alpha_loss, _ = temperature_loss(torch.tensor(math.log(0.1)), entropy, -2.0)
    torch.testing.assert_close(alpha_loss, 0.1 * (entropy + 2.0))


def test_padding_changes_nothing_at_real_steps():
    """The causal mask alone hides the padding that follows a window's real steps."""
    torch.manual_seed(0)
    config = dataclasses.replace(CDT.Config(), embedding_dim=16, num_layers=2, num_heads=2)
    net = CDTNet(3, 2, 5, 20, config).eval()
    args = [torch.randn(1, 5), torch.randn(1, 5), torch.randn(1, 5, 3), torch.randn(1, 5, 2),
            torch.arange(5)[None]]
    full = net(*args)
    short = net(*(a[:, :3] for a in args))
    for whole, part in zip(full, short):
        torch.testing.assert_close(whole[:, :3], part, rtol=1e-5, atol=1e-6)


def test_training_on_fake_data_stays_finite_and_learns():
    torch.manual_seed(0)
    method = build(embedding_dim=32, num_layers=1, num_heads=2, lr_warmup_steps=10,
                   lr=1e-3)
    sampler = make_sampler(method, method.training_data(fake_arrays()), 32, 0, "cpu")
    history = [method.train_step(sampler.sample()) for _ in range(300)]
    for stats in history:
        assert all(np.isfinite(float(v)) for v in stats.values())
    first = np.mean([float(s["cdt/nll"]) for s in history[:20]])
    last = np.mean([float(s["cdt/nll"]) for s in history[-20:]])
    assert last < first
    assert method.scheduler.get_last_lr()[0] == pytest.approx(1e-3)  # warm-up done


def test_prompted_acting_and_save_load(tmp_path):
    torch.manual_seed(0)
    method = build()
    sampler = make_sampler(method, fake_arrays(), 32, 0, "cpu")
    for _ in range(2):
        method.train_step(sampler.sample())
    obs = np.random.default_rng(1).normal(size=(12, 3, SPEC.obs_dim)).astype(np.float32)

    def episode(m):
        m.reset(3, threshold=20.0)
        actions = []
        for t in range(12):  # longer than the context of 10 steps
            torch.manual_seed(t)
            actions.append(m.act(obs[t]))
            m.observe(np.ones(3), np.array([0.0, 1.0, 0.0]), np.zeros(3, bool))
        return np.stack(actions)

    actions = episode(method)
    assert actions.shape == (12, 3, SPEC.act_dim) and np.abs(actions).max() <= 1.0
    # the prompt: target reward and threshold, lowered by each step's scaled reward and cost
    target = TARGET_RETURNS["DroneRun"][20.0]
    np.testing.assert_allclose(method.returns_to_go.numpy(), 0.1 * (target - 12), rtol=1e-6)
    np.testing.assert_allclose(method.costs_to_go.numpy(), [20.0, 8.0, 20.0])
    assert method.context["timesteps"][0].tolist() == list(range(2, 12))
    torch.save(method.state_dict(), tmp_path / "state.pt")
    other = build(seed=1)
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    np.testing.assert_array_equal(episode(other), actions)
    # another threshold is another prompt, so other actions
    method.reset(3, threshold=40.0)
    assert not np.array_equal(method.act(obs[0]), actions[0])


def many_trajectories(count=300, length=4, seed=0):
    rng = np.random.default_rng(seed)
    cost_returns = rng.integers(0, 30, count)
    n = count * length
    costs = np.zeros(n, np.float32)
    for i, c in enumerate(cost_returns):  # spread each cost return over the steps
        costs[i * length: (i + 1) * length] = c / length
    rewards = (rng.uniform(0, 10, n) + np.repeat(cost_returns, length)).astype(np.float32)
    timeouts = np.zeros(n, np.float32)
    timeouts[length - 1::length] = 1
    obs = rng.normal(size=(n, SPEC.obs_dim)).astype(np.float32)
    return {"observations": obs, "next_observations": obs,
            "actions": np.tanh(obs[:, :SPEC.act_dim]), "rewards": rewards, "costs": costs,
            "terminals": np.zeros(n, np.float32), "timeouts": timeouts}


def test_augmentation_relabels_copies_above_the_frontier():
    from tasks.datasets import split_trajectories

    arrays = many_trajectories()
    method = build(max_reward=200.0, deg=1)
    data = method.training_data(arrays)
    n = len(arrays["rewards"])
    for key in arrays:  # the data first, unchanged
        np.testing.assert_array_equal(data[key][:n], arrays[key])
    trajectories = split_trajectories(data)
    assert len(trajectories) > 300
    added = len(trajectories) - 300
    assert added <= 0.2 * 300 and added >= 0.2 * 100  # 20% of what the grid filter keeps
    assert (np.diff(trajectories.ends - trajectories.starts) == 0).all()  # whole copies
    first_costs = data["costs_to_go"][trajectories.starts[300:]]
    first_rewards = data["returns_to_go"][trajectories.starts[300:]]
    # targets: costs evenly spaced over the data's range, rewards above the data, <= max_reward
    np.testing.assert_allclose(np.diff(first_costs), np.diff(first_costs)[0], atol=1e-9)
    assert first_rewards.max() <= 200.0
    best = split_trajectories(arrays).reward_returns.max()
    assert np.median(first_rewards) > best / 2
    # a copy keeps its steps: the returns-to-go still fall by each step's reward and cost
    for start, end in zip(trajectories.starts[300:], trajectories.ends[300:]):
        np.testing.assert_allclose(-np.diff(data["returns_to_go"][start:end]),
                                   data["rewards"][start:end - 1], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(-np.diff(data["costs_to_go"][start:end]),
                                   data["costs"][start:end - 1], rtol=1e-5, atol=1e-5)
    # sampled windows carry the relabelled prompts; cost sampling uses the relabelled costs
    options = method.sequence_options(data)
    np.testing.assert_allclose(options["trajectory_weights"][300:],
                               np.maximum(70.0 - first_costs, 0))
    batch = make_sampler(method, data, 64, 0, "cpu").sample()
    assert torch.isfinite(batch["returns_to_go"]).all()
    assert method.training_data(arrays)["returns_to_go"].tolist() == data["returns_to_go"].tolist()


def test_target_returns_cover_every_task_threshold():
    for suite in ("bullet", "safetygym", "metadrive"):
        for spec in suite_tasks(suite):
            assert set(TARGET_RETURNS[spec.name]) == set(spec.thresholds), spec.name
    assert len(TARGET_RETURNS) == 28


def test_cdt_smoke_run_end_to_end(local_ballrun, tmp_path):
    from bench.cli import main

    results = tmp_path / "results"
    assert main(["run", "--tasks", "BallRun", "--profile", "smoke", "--results", str(results),
                 "--jobs", "1", "--quiet", "--methods", "CDT",
                 "--set", "batch_size=64"]) == 0  # 2048 windows: slow steps on a CPU
    records = sorted(results.rglob("thr*-seed*.json"))
    assert len(records) == 3 and not list(results.rglob("*.error.json"))
    record = json.loads(records[0].read_text())
    assert record["method"] == "CDT" and record["steps"] == 10
    assert np.isfinite(record["normalized_reward"]) and np.isfinite(record["normalized_cost"])
    assert len(list((results / "bullet/BallRun/CDT").glob("run-*/checkpoint.pt"))) == 1
