"""The protocol every registered method meets, on a small fake dataset of a real task's shape."""

import contextlib
import typing
from unittest import mock

import numpy as np
import pytest
import torch

from algorithms import METHODS, build_config, get_method
from algorithms.base import ConfigError
from bench.train import TrainSchedule, train
from tasks.samplers import BatchSampler, make_sampler
from helpers import SPEC, build, fake_arrays

@pytest.mark.parametrize("name", list(METHODS))
def test_protocol_train_act_save_load(name, tmp_path, device):
    """On `device` (--device; cpu in CI): train, act, save, load, and go on training as if
    never saved. The checkpoint also loads on the CPU, where evaluation and transfer run."""
    torch.manual_seed(0)
    method = build(name, device=device)
    data = method.training_data(fake_arrays())
    sampler = make_sampler(method, data, 32, seed=0, device=device)  # as the runner does
    for _ in range(3):
        stats = method.train_step(sampler.sample())
        assert stats and all(np.isfinite(float(v)) for v in stats.values())
    obs = np.random.default_rng(1).normal(size=(5, SPEC.obs_dim)).astype(np.float32)
    method.reset(5)
    torch.manual_seed(7)  # stochastic policies (BCQ's sampling, LSPC-S) draw the same noise
    actions = method.act(obs)
    assert isinstance(actions, np.ndarray) and actions.shape == (5, SPEC.act_dim)
    assert np.all(np.abs(actions) <= 1.0)
    torch.save(method.state_dict(), tmp_path / "state.pt")
    other = build(name, seed=1, device=device)
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=False))
    other.reset(5)
    torch.manual_seed(7)
    np.testing.assert_array_equal(other.act(obs), actions)
    on_cpu = build(name, seed=1)
    on_cpu.load_state_dict(torch.load(tmp_path / "state.pt", map_location="cpu",
                                      weights_only=False))
    on_cpu.reset(5)
    assert np.all(np.abs(on_cpu.act(obs)) <= 1.0)  # as the GPU's: the next test, on a GPU
    # what training depends on came along too (optimizers, targets, duals): same next step
    batch = sampler.sample()
    torch.manual_seed(4)
    first = {k: float(v) for k, v in method.train_step(batch).items()}
    torch.manual_seed(4)
    assert {k: float(v) for k, v in other.train_step(batch).items()} == first


@contextlib.contextmanager
def noise_drawn_on_the_cpu(seed: int):
    """torch.randn and torch.randn_like (every draw of the policies' act: BCQ's latent, LSPC's,
    FISOR's diffusion noise) draw on the CPU from one generator seeded `seed` and move the
    numbers to the device asked for: the same noise on every device."""
    generator = torch.Generator().manual_seed(seed)
    randn = torch.randn

    def randn_on_cpu(*size, device=None, dtype=None):
        return randn(*size, generator=generator, dtype=dtype).to(device)

    def randn_like_on_cpu(like):
        return randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)

    with mock.patch.object(torch, "randn", randn_on_cpu), \
            mock.patch.object(torch, "randn_like", randn_like_on_cpu):
        yield


def acts_alike_on_the_cpu(name, trained_on: str, tmp_path) -> None:
    """A method trained on `trained_on`, saved and loaded on the CPU, acts as it did there:
    every policy, from the same noise, to within float rounding (atol 1e-4)."""
    torch.manual_seed(0)
    method = build(name, device=trained_on)
    sampler = make_sampler(method, method.training_data(fake_arrays()), 32, seed=0,
                           device=trained_on)
    for _ in range(3):
        method.train_step(sampler.sample())
    torch.save(method.state_dict(), tmp_path / "state.pt")
    on_cpu = build(name, seed=1)
    on_cpu.load_state_dict(torch.load(tmp_path / "state.pt", map_location="cpu",
                                      weights_only=False))
    obs = np.random.default_rng(1).normal(size=(5, SPEC.obs_dim)).astype(np.float32)
    for policy in type(method).policies or (None,):
        actions = []
        for each in (method, on_cpu):
            if policy is not None:
                each.policy = policy
            each.reset(5)
            with noise_drawn_on_the_cpu(7):
                actions.append(each.act(obs))
        np.testing.assert_allclose(actions[1], actions[0], rtol=0, atol=1e-4,
                                   err_msg=f"{name} {policy or ''}: CPU against {trained_on}")


@pytest.mark.parametrize("name", list(METHODS))
def test_a_model_trained_on_the_gpu_acts_alike_on_the_cpu(name, tmp_path, device,
                                                          monkeypatch):
    """Evaluation and transfer run on the CPU what a GPU trained: the same actions, for every
    method, stochastic policies included (their noise drawn alike on both)."""
    gpu = device if device.startswith("cuda") else "cuda" if torch.cuda.is_available() else None
    if gpu is None:
        pytest.skip("no GPU here: the CPU is held against the GPU where torch sees one")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # fp32 as on the CPU
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    acts_alike_on_the_cpu(name, gpu, tmp_path)


@pytest.mark.parametrize("name", [name for name, cls in METHODS.items()
                                  if not cls.threshold_agnostic])
def test_a_method_for_one_threshold_refuses_to_be_built_without_one(name):
    _, cls = get_method(name)
    with pytest.raises(ConfigError, match=f"^{cls.__name__} is trained for one cost threshold "
                                          r"\(its class says threshold_agnostic = False\); "
                                          "got None"):
        cls(SPEC, build_config(cls, SPEC.name), None, 0)
    with pytest.raises(ConfigError, match="one cost threshold"):
        cls.create(SPEC, build_config(cls, SPEC.name), None, 0)


def test_the_methods_for_one_threshold_are_these():
    assert {name for name, cls in METHODS.items() if not cls.threshold_agnostic} >= {
        "BC-Safe", "BCQ-Lag", "BEAR-Lag", "CPQ", "COptiDICE"}


def module_weights(method) -> dict:
    return {f"{name}.{key}": value.detach().cpu()
            for name, module in vars(method).items() if isinstance(module, torch.nn.Module)
            for key, value in module.state_dict().items()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", [name for name, cls in METHODS.items() if cls.graph_safe])
def test_a_graphed_step_trains_as_the_eager_one(name, precision, device):
    """On a GPU the runner replays a graph-safe method's step from a CUDA graph (bench/
    graphs.py). From the same start, batches and seed it must reach the same weights and
    statistics as the eager step, random draws included; in bf16 too (autocast regions
    inside the captured step)."""
    from bench.graphs import GraphedTrainStep, optimizers_of, training_step

    if not device.startswith("cuda"):
        pytest.skip("CUDA graphs need a GPU: run with --device cuda there")
    torch.manual_seed(0)
    eager, graphed = build(name, device=device), build(name, seed=1, device=device)
    eager.set_precision(precision)
    graphed.set_precision(precision)
    data = eager.training_data(fake_arrays())  # sets what some keep of the data (COptiDICE)
    graphed.load_state_dict(eager.state_dict())
    sampler = make_sampler(eager, data, 32, seed=0, device=device)
    batches = [sampler.sample() for _ in range(12)]
    step = training_step(graphed, device)
    assert isinstance(step, GraphedTrainStep)
    torch.manual_seed(5)
    eager_stats = [eager.train_step(batch) for batch in batches]
    torch.manual_seed(5)
    graph_stats = [step(batch) for batch in batches]
    assert step.graph is not None  # captured after the warm-up, replayed since
    for key, value in eager_stats[-1].items():
        assert float(graph_stats[-1][key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6)
    expected, got = module_weights(eager), module_weights(graphed)
    assert expected.keys() == got.keys()
    for key in expected:
        # atol: a replay may round a few weights differently from the eager step (on an
        # H100, BCQ-Lag: 1 weight in 160,000 by 1.3e-5 after 12 steps; eager against eager
        # was exact), presumably other kernel choices under capture
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=5e-5)
    # counters the step advances (FISOR's actor updates) advanced in the replays too
    counters = {k: v for k, v in eager.state_dict().items() if isinstance(v, int)}
    assert {k: graphed.state_dict()[k] for k in counters} == counters
    for mine, theirs in zip(optimizers_of(graphed), optimizers_of(eager)):
        assert [float(g["lr"]) for g in mine.param_groups] == pytest.approx(
            [float(g["lr"]) for g in theirs.param_groups], rel=1e-6)


def test_only_graph_safe_methods_on_a_gpu_are_captured(monkeypatch):
    from bench.graphs import training_step, uses_cuda_graph

    lspc, bear = build("LSPC"), build("BEAR-Lag")
    assert training_step(lspc, "cpu") == lspc.train_step  # the CPU runs the step as it is
    assert uses_cuda_graph(lspc, "cuda") and uses_cuda_graph(lspc, "cuda:1")
    assert not uses_cuda_graph(bear, "cuda")  # it counts its steps in Python
    monkeypatch.setenv("BENCH_CUDA_GRAPHS", "0")
    assert not uses_cuda_graph(lspc, "cuda")


def test_bc_safe_keeps_only_trajectories_within_the_threshold():
    arrays = fake_arrays()
    kept = build("BC-Safe", threshold=5.0).training_data(arrays)
    # episodes 0..5 have cost returns 0..5 <= 5: six episodes of 50 steps
    assert len(kept["rewards"]) == 6 * 50
    assert kept["costs"].sum() == sum(range(6))
    assert len(build("BC-All").training_data(arrays)["rewards"]) == len(arrays["rewards"])


def test_bc_safe_with_no_safe_trajectory_fails_clearly():
    arrays = fake_arrays()
    arrays["costs"][:] = 1.0
    with pytest.raises(ValueError, match="no trajectory has a cost return <= 10"):
        build("BC-Safe", threshold=10.0).training_data(arrays)


def test_training_lowers_the_bc_loss(tmp_path):
    torch.manual_seed(0)
    method = build("BC-All")
    arrays = fake_arrays()
    first = float(method.train_step(BatchSampler(arrays, 256, 0, "cpu").sample())["loss/actor"])
    trained = train(method, arrays, TrainSchedule(steps=200, batch_size=256, seed=0,
                                                  log_every=50), tmp_path)
    assert trained.resumed_from == 0 and not trained.cuda_graph and trained.seconds > 0
    assert trained.final_stats["loss/actor"] < 0.5 * first
    assert (tmp_path / "curve.csv").read_text().splitlines()[0] == "step,loss/actor"


def test_config_layers_and_bad_settings():
    _, cls = get_method("bc-all")
    assert build_config(cls, "BallRun", {"actor_lr": "0.01"}).actor_lr == 0.01
    assert build_config(cls, "BallRun", {"hidden": "64,64"}).hidden == (64, 64)
    with pytest.raises(ConfigError, match="Did you mean actor_lr"):
        build_config(cls, "BallRun", {"actor_rl": "1"})
    with pytest.raises(ConfigError, match="batch_size=big: expected an integer, like 512"):
        build_config(cls, "BallRun", {"batch_size": "big"})


def _valid_setting(kind, default):
    """(text, value) of a valid --set value for a field annotated `kind` (its default where
    it has one); a type this does not know fails the test below, so a new one gets a check."""
    from algorithms.base import _optional_parts

    options, optional = _optional_parts(kind)
    if optional and default is None:
        default = {float: 0.5, int: 3, str: "x", bool: True}.get(options[0])
    kind = options[0]
    if kind is bool:
        return str(not default).lower(), not default
    if kind in (int, float):
        value = kind(default * 2 + 1)
        return str(value), value
    if kind is str:
        return default + "-x", default + "-x"
    if typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        if default:
            value = tuple(type(v)(v * 2 + 1) for v in default)
        else:
            value = (7,) if items[0] is int else (0.5,)
        if len(items) == 2 and items[1] is Ellipsis:
            assert all(isinstance(v, items[0]) for v in value)
        else:
            assert tuple(map(type, value)) == items
        return ",".join(map(str, value)), value
    raise AssertionError(f"no check for a setting of type {kind!r}")


def test_every_setting_of_every_method_parses_by_its_annotation():
    from algorithms.base import _optional_parts, field_types

    kinds = set()
    for name, cls in METHODS.items():
        defaults = cls.Config()
        for key, kind in field_types(cls.Config).items():
            kinds.add(repr(kind))
            text, value = _valid_setting(kind, getattr(defaults, key))
            parsed = getattr(build_config(cls, "BallRun", {key: text}), key)
            assert parsed == value and type(parsed) is type(value), (name, key, text)
            if _optional_parts(kind)[1]:
                for word in ("None", "none", "null"):
                    assert getattr(build_config(cls, "BallRun", {key: word}), key) is None
            else:
                with pytest.raises(ConfigError, match=f"{key} cannot be None"):
                    build_config(cls, "BallRun", {key: "None"})
    # the kinds the registered methods use today, each checked above
    assert {"<class 'bool'>", "<class 'int'>", "<class 'float'>", "<class 'str'>",
            "float | None", "tuple[int, ...]", "tuple[float, float]"} <= kinds


def test_optional_settings_are_reachable_from_the_command_line():
    _, lspc = get_method("LSPC")
    assert build_config(lspc, "BallRun", {"safe_epsilon": "None"}).safe_epsilon is None
    value = build_config(lspc, "BallRun", {"safe_value_threshold": "0.02"}).safe_value_threshold
    assert value == 0.02 and isinstance(value, float)  # was the string '0.02'
    assert build_config(lspc, "easysparse", {"safe_value_threshold": "null"}
                        ).safe_value_threshold is None
    from bench.plan import expand_sweeps

    assert expand_sweeps(lspc, {"safe_epsilon": "None,0.5", "hidden": "64,64"}) == [
        {"safe_epsilon": "None", "hidden": "64,64"}, {"safe_epsilon": "0.5", "hidden": "64,64"}]
    with pytest.raises(ConfigError, match="expected a number or None, like 0.25"):
        build_config(lspc, "BallRun", {"safe_epsilon": "wide"})
    _, bcq = get_method("BCQ-Lag")
    assert build_config(bcq, "BallRun", {"pid": "0.2, 0, 1e-3"}).pid == (0.2, 0.0, 0.001)
    _, cpq = get_method("CPQ")
    with pytest.raises(ConfigError, match=r"2 comma-separated values \(a number, a number\)"):
        build_config(cpq, "BallRun", {"log_std_bounds": "1,2,3"})
    _, bc = get_method("BC-All")
    with pytest.raises(ConfigError, match="hidden cannot be None"):
        build_config(bc, "BallRun", {"hidden": "none"})
    assert build_config(bc, "BallRun", {"batch_size": "1e3"}).batch_size == 1000
    with pytest.raises(ConfigError, match="expected an integer"):
        build_config(bc, "BallRun", {"batch_size": "2.5"})


def test_an_installed_entry_point_method_is_found_by_name():
    # tox installs examples/plugin_method, whose pyproject declares a bench.methods entry point
    from importlib import metadata

    if not any(e.name == "Linear-BC" for e in metadata.entry_points(group="bench.methods")):
        pytest.fail("examples/plugin_method is not installed: "
                    "pip install --no-deps -e examples/plugin_method")
    name, cls = get_method("linear-bc")
    assert name == "Linear-BC" and cls.__module__ == "bench_example_method"


def test_a_time_based_checkpoint_resumes_to_the_uninterrupted_state(tmp_path, device,
                                                                   monkeypatch):
    """With checkpoint_seconds, a job whose steps are slow is saved by wall time, not only every
    N steps; a kill after such a save loses only the steps since, and the resumed run ends
    where an unbroken one does. On a GPU, BC's step is replayed from a CUDA graph, captured
    anew after the resume."""
    import itertools

    import bench.train

    arrays = fake_arrays()
    real_sampler = bench.train.make_sampler

    def interrupted_after(steps):
        # the kill comes between steps, where the batch is drawn (outside any CUDA graph)
        def make_sampler(*args, **kwargs):
            sampler = real_sampler(*args, **kwargs)
            draw, calls = sampler.sample, itertools.count(1)

            def sample():
                if next(calls) > steps:
                    raise KeyboardInterrupt
                return draw()

            sampler.sample = sample
            return sampler

        return make_sampler

    def trained(run_dir):
        torch.manual_seed(0)
        method = build("BC-All", device=device)
        schedule = TrainSchedule(steps=30, batch_size=64, seed=0, device=device, log_every=10,
                                 checkpoint_seconds=1e-9)
        return method, train(method, arrays, schedule, run_dir)

    unbroken, _ = trained(tmp_path / "unbroken")
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(bench.train, "make_sampler", interrupted_after(17))
        trained(tmp_path / "broken")
    saved = torch.load(tmp_path / "broken" / "training.pt", weights_only=False)
    assert saved["step"] == 17  # a save after every step: no step count would have saved here
    resumed, result = trained(tmp_path / "broken")
    assert result.resumed_from == 17
    obs = arrays["observations"][:50]
    if device == "cpu":
        assert np.array_equal(unbroken.act(obs), resumed.act(obs))
    else:  # eager steps 18-20 of the resumed run against replays of the unbroken one's graph
        np.testing.assert_allclose(resumed.act(obs), unbroken.act(obs), rtol=1e-5, atol=1e-6)


def test_the_progress_file_follows_steps_between_log_points(tmp_path, monkeypatch):
    """`bench run`'s per-job bars read progress.json; with slow steps it must move before the
    first log point (quick FISOR logs every 500 of its 600 steps)."""
    import json

    import bench.train

    monkeypatch.setattr(bench.train, "PROGRESS_SECONDS", 0.0)
    method, seen = build("BC-All"), []
    real_step = method.train_step

    def step(batch):
        seen.append(json.loads((tmp_path / "progress.json").read_text())["step"])
        return real_step(batch)

    method.train_step = step
    train(method, fake_arrays(), TrainSchedule(steps=5, batch_size=64, seed=0, log_every=1000),
          tmp_path)
    assert seen == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("name", ["BC-All", "BC-Safe"])
def test_bc_trains_osrl_s_200k_steps_on_metadrive(name):
    from tasks.registry import suite_tasks

    _, cls = get_method(name)
    for spec in suite_tasks("metadrive"):  # OSRL bc_configs: update_steps 200_000 there
        assert cls.steps_for("paper", spec.name) == 200_000, spec.name
        assert cls.steps_for("quick", spec.name) == cls.profile_steps["quick"]
    assert cls.steps_for("paper", "CarCircle") == 100_000
