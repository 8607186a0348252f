"""Local data collection (tasks/collect/): format, provenance, determinism, safety, resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("bullet_safety_gym")
pytest.importorskip("dsrl")

from tasks import collect  # noqa: E402
from tasks.collect import (COLLECT_PROFILES, CollectError, collect_task,  # noqa: E402
                           format_summary, partial_dir, steps_for)
from tasks.datasets import KEYS, local_path, read_dsrl_file, split_trajectories  # noqa: E402
from tasks.registry import get_task  # noqa: E402

SPEC = get_task("BallRun")


@pytest.fixture(autouse=True)
def local_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_LOCAL_DATA_DIR", str(tmp_path))
    return tmp_path


def _arrays(path):
    arrays, _ = read_dsrl_file(path, SPEC)
    return arrays


def test_smoke_collection_file_attrs_summary_plot(local_dir):
    summary = collect_task(SPEC, "smoke", seed=0, progress=False)
    path = local_path(SPEC, "smoke")
    assert summary["path"] == str(path) and path.parent == local_dir
    arrays, attrs = read_dsrl_file(path, SPEC)  # validates keys, shapes, dtypes, finiteness

    size = len(arrays["rewards"])
    assert arrays["observations"].shape == (size, SPEC.obs_dim)
    assert arrays["next_observations"].shape == (size, SPEC.obs_dim)
    assert arrays["actions"].shape == (size, SPEC.act_dim)
    assert np.all(np.abs(arrays["actions"]) <= 1.0)  # the clipped action is stored

    budget = COLLECT_PROFILES["smoke"]
    assert attrs["source"] == "local"
    assert attrs["collector"] == "ppo-lagrangian (bench)"
    assert attrs["task"] == "BallRun" and attrs["env_id"] == SPEC.env_id
    assert attrs["profile"] == "smoke" and attrs["seed"] == 0
    assert attrs["n_agents"] == len(budget.cost_limits) == len(attrs["cost_limits"])
    assert attrs["env_steps_per_agent"] == steps_for(budget, SPEC)
    assert attrs["versions"] and "created" not in attrs  # the date is on the card beside
    for package in ("torch", "gymnasium", "pybullet", "bench"):
        assert package in attrs["versions"]

    # every episode is whole: it ends by termination or by the time limit, never cut short
    trajs = split_trajectories(arrays)
    done = (arrays["terminals"] > 0) | (arrays["timeouts"] > 0)
    lengths = trajs.ends - trajs.starts
    assert done[-1] and np.all(lengths <= SPEC.max_episode_steps)
    ends = trajs.ends - 1
    np.testing.assert_array_equal(arrays["timeouts"][ends] > 0,
                                  (lengths == SPEC.max_episode_steps)
                                  & ~(arrays["terminals"][ends] > 0))
    inside = ~done[:-1]
    np.testing.assert_array_equal(arrays["next_observations"][:-1][inside],
                                  arrays["observations"][1:][inside])
    assert not np.array_equal(arrays["next_observations"][:-1][~inside],
                              arrays["observations"][1:][~inside])  # a reset between episodes

    assert summary["task"] == "BallRun"
    assert summary["n_trajectories"] == len(trajs)
    assert summary["n_transitions"] == size
    assert summary["reward_return_min"] == pytest.approx(trajs.reward_returns.min(), rel=1e-5)
    assert summary["reward_return_max"] == pytest.approx(trajs.reward_returns.max(), rel=1e-5)
    assert summary["cost_return_min"] == pytest.approx(trajs.cost_returns.min())
    assert summary["cost_return_max"] == pytest.approx(trajs.cost_returns.max())
    assert set(summary["fraction_cost_le"]) == set(SPEC.thresholds)
    for threshold, fraction in summary["fraction_cost_le"].items():
        assert fraction == pytest.approx(np.mean(trajs.cost_returns <= threshold))

    plot = path.with_suffix(".png")
    assert summary["plot"] == str(plot) and plot.stat().st_size > 0
    assert not partial_dir(path, 0).exists()
    text = format_summary(summary)
    assert "BallRun" in text and str(path) in text


def test_same_seed_same_data_other_seed_differs(local_dir):
    first = collect_task(SPEC, "smoke", seed=3, out_path=local_dir / "a.hdf5", progress=False)
    again = collect_task(SPEC, "smoke", seed=3, out_path=local_dir / "b.hdf5", progress=False)
    other = collect_task(SPEC, "smoke", seed=4, out_path=local_dir / "c.hdf5", progress=False)
    a, b, c = (_arrays(s["path"]) for s in (first, again, other))
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["observations"][:5], c["observations"][:5])


def test_refuses_to_overwrite_without_force_and_official_names(local_dir):
    out = local_dir / "data.hdf5"
    collect_task(SPEC, "smoke", out_path=out, progress=False)
    before = out.read_bytes()
    with pytest.raises(CollectError, match="--force"):
        collect_task(SPEC, "smoke", out_path=out, progress=False)
    assert out.read_bytes() == before
    collect_task(SPEC, "smoke", out_path=out, progress=False, force=True)
    with pytest.raises(CollectError, match="official"):
        collect_task(SPEC, "smoke", out_path=local_dir / SPEC.dataset_file, progress=False)
    with pytest.raises(CollectError, match="profile"):
        collect_task(SPEC, "nope", out_path=local_dir / "x.hdf5", progress=False)


def test_resume_reuses_finished_agents(local_dir, monkeypatch):
    reference = collect_task(SPEC, "smoke", seed=1, out_path=local_dir / "ref.hdf5",
                             progress=False)
    real_train = collect._train_agent
    calls = []

    def interrupted(spec, budget, steps, seed, agent, *args, **kwargs):
        if agent == 1:
            raise KeyboardInterrupt
        calls.append(agent)
        return real_train(spec, budget, steps, seed, agent, *args, **kwargs)

    out = local_dir / "resumed.hdf5"
    monkeypatch.setattr(collect, "_train_agent", interrupted)
    with pytest.raises(KeyboardInterrupt):
        collect_task(SPEC, "smoke", seed=1, out_path=out, progress=False)
    assert calls == [0] and not out.exists()
    assert (partial_dir(out, 1) / "agent0.npz").exists()

    def counting(spec, budget, steps, seed, agent, *args, **kwargs):
        calls.append(agent)
        return real_train(spec, budget, steps, seed, agent, *args, **kwargs)

    monkeypatch.setattr(collect, "_train_agent", counting)
    summary = collect_task(SPEC, "smoke", seed=1, out_path=out, progress=False)
    assert calls == [0, 1]  # agent 0 was not trained again
    assert summary["resumed_stages"] == ["agent0"]
    assert not partial_dir(out, 1).exists()
    a, b = _arrays(reference["path"]), _arrays(out)
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_budgets():
    quick = COLLECT_PROFILES["quick"]
    assert set(COLLECT_PROFILES) == {"smoke", "quick", "study", "paper"}
    # slower simulators get fewer steps, so every quick collection takes about the same time
    assert steps_for(quick, get_task("CarCircle")) < steps_for(quick, get_task("BallRun"))
    assert any(not math.isfinite(limit) for limit in quick.cost_limits)
    assert min(quick.cost_limits) < 10 and max(filter(math.isfinite, quick.cost_limits)) > 40
    assert steps_for(COLLECT_PROFILES["paper"], SPEC) >= 1_000_000


# ----------------------------------------------------------------- the study profile's shape

from tasks.composition import GridFilter  # noqa: E402

#: the study profile's shape at smoke size: two agents in 3 segments each, limits annealed up
#: from 2 (DSRL's schedule), the grid filter without a window
TINY_STUDY = collect.CollectBudget(
    env_steps_per_agent=600, cost_limits=(10.0, math.inf), num_envs=2, steps_per_epoch=200,
    update_epochs=2, minibatch_size=100, anneal_from=2.0, anneal_window=(0.34, 0.67),
    segment_steps=200, agent_scale=(("BallRun", 1.0),),
    grid_filter=GridFilter(window="none", min_per_bin=0))


@pytest.fixture
def tiny_study(monkeypatch):
    monkeypatch.setitem(COLLECT_PROFILES, "tiny-study", TINY_STUDY)
    return "tiny-study"


def test_study_stages_segments_and_annealed_limits():
    stages = collect.plan_stages(TINY_STUDY, SPEC)
    # round robin: every agent's first segment, then every agent's second, ...
    assert [s.name for s in stages] == ["agent0-seg0", "agent1-seg0", "agent0-seg1",
                                        "agent1-seg1", "agent0-seg2", "agent1-seg2"]
    by = {s.name: s for s in stages}
    assert by["agent0-seg0"].parent is None and by["agent0-seg2"].parent == "agent0-seg1"
    # flat at 2 for the first third of the epochs, rising to 10 by two thirds, then flat
    assert [lim for j in range(3) for lim in by[f"agent0-seg{j}"].cost_limits] == [2.0, 10.0,
                                                                                   10.0]
    longer = dataclasses.replace(TINY_STUDY, env_steps_per_agent=2000, segment_steps=1000,
                                 anneal_window=(0.1, 0.9))
    limits = [lim for s in collect.plan_stages(longer, SPEC) if s.lineage == "limit 10"
              for lim in s.cost_limits]
    assert limits == [2.0] + [2.0 + 8.0 * k / 8 for k in range(1, 9)] + [10.0]
    assert all(math.isinf(lim) for s in stages if s.lineage == "unconstrained"
               for lim in s.cost_limits)
    assert len({s.agent for s in stages}) == len(stages)  # every stage its own random streams
    assert collect._segments(1000, 400, 200) == [600, 400]  # whole epochs, no stub segment
    # the study profile: five agents, the fourth one's limit the official file's largest cost
    # (BallRun-v0-80-...: 80), none such where that is no higher than 40 (CarRun's file), the
    # last unconstrained; ants get three times the steps
    study = COLLECT_PROFILES["study"]
    assert collect.OFFICIAL_MAX in study.cost_limits and study.grid_filter is not None
    assert collect.agent_cost_limits(study, get_task("BallRun")) == (10.0, 20.0, 40.0, 80.0,
                                                                     math.inf)
    assert collect.agent_cost_limits(study, get_task("CarRun")) == (10.0, 20.0, 40.0, math.inf)
    assert steps_for(study, get_task("AntRun")) == 3 * steps_for(study, get_task("CarRun"))


def test_a_stage_fingerprint_ignores_the_other_agents_and_the_filter_but_not_its_window():
    from tasks.composition import GridFilter

    stage = collect.plan_stages(TINY_STUDY, SPEC)[0]
    base = collect.stage_fingerprint(SPEC, "p", TINY_STUDY, 0, stage, None)
    more_agents = dataclasses.replace(TINY_STUDY, cost_limits=TINY_STUDY.cost_limits + (40.0,))
    other_filter = dataclasses.replace(TINY_STUDY, grid_filter=GridFilter(
        window="none", exact_count=False, cost_bins=7))
    assert collect.stage_fingerprint(SPEC, "p", more_agents, 0, stage, None) == base
    assert collect.stage_fingerprint(SPEC, "p", other_filter, 0, stage, None) == base
    official_window = dataclasses.replace(TINY_STUDY, grid_filter=GridFilter())  # TINY: none
    assert collect.stage_fingerprint(SPEC, "p", official_window, 0, stage, None) != base
    other_lr = dataclasses.replace(TINY_STUDY, lr=1e-3)
    assert collect.stage_fingerprint(SPEC, "p", other_lr, 0, stage, None) != base


def test_study_collection_card_resume_and_datasets(local_dir, tiny_study, monkeypatch, capsys):
    import json

    from bench.cli import main
    from tasks.composition import describe_dataset

    reference = collect_task(SPEC, tiny_study, seed=2, out_path=local_dir / "ref-x.hdf5",
                             progress=False)
    real_train = collect._train_agent
    calls = []

    def interrupted(spec, budget, steps, seed, agent, *args, **kwargs):
        if agent == 1001:  # agent1-seg1: both agents' first segments and agent0-seg1 saved
            raise KeyboardInterrupt
        calls.append(agent)
        return real_train(spec, budget, steps, seed, agent, *args, **kwargs)

    out = local_path(SPEC, tiny_study)
    monkeypatch.setattr(collect, "_train_agent", interrupted)
    with pytest.raises(KeyboardInterrupt):
        collect_task(SPEC, tiny_study, seed=2, progress=False)
    assert calls == [0, 1000, 1] and not out.exists()
    monkeypatch.setattr(collect, "_train_agent", real_train)
    summary = collect_task(SPEC, tiny_study, seed=2, progress=False)
    assert summary["resumed_stages"] == ["agent0-seg0", "agent1-seg0", "agent0-seg1"]
    a, b = _arrays(reference["path"]), _arrays(out)
    for key in KEYS:  # resumed per segment, the same data as the unbroken collection
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    card = json.loads(collect.card_path_for(out).read_text())
    agents = {agent["agent"]: agent for agent in card["agents"]}
    assert set(agents) == {"limit 10", "unconstrained"}
    assert agents["limit 10"]["env_steps"] == 600 and agents["limit 10"]["final_cost_limit"] == 10
    assert card["filter"]["pool"] == sum(a["episodes_kept"] for a in agents.values())
    assert card["filter"]["kept"] == summary["n_trajectories"]
    assert card["profile"] == tiny_study and card["seed"] == 2
    assert card["budget"]["anneal_from"] == 2.0 and card["timing"]["core_seconds"] > 0
    # where the transitions were made: their rounding depends on the processor's kernels
    import torch
    made_on = card["timing"]["machine"]
    assert made_on["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert made_on["cpu"] and summary["machine"] == made_on
    # the card round-trips: the file's copy is the JSON beside it less its timings
    row = describe_dataset(SPEC, out, "local", tiny_study)
    assert row["card"] == {k: v for k, v in card.items() if k != "timing"}
    assert row["sha256"] == summary["sha256"] == reference["sha256"]  # same data, same hash

    capsys.readouterr()
    assert main(["datasets", "--tasks", "BallRun", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["source"], r["profile"]) for r in rows] == [("local", tiny_study)]
    for key in ("task", "source", "profile", "trajectories", "reward_min", "reward_max",
                "cost_max", "safe_fraction", "best_normalized_reward", "official", "sha256"):
        assert key in rows[0]
    assert rows[0]["trajectories"] == summary["n_trajectories"]
    assert set(rows[0]["safe_fraction"]) == {"10", "20", "40"}
    assert rows[0]["official"]["trajectories"] == 940
    assert main(["datasets", "--tasks", "BallRun"]) == 0
    table = capsys.readouterr().out
    assert "local tiny-study" in table and "(940)" in table and summary["sha256"] in table

    # the trained stages stay beside a filtered file: another filter retrains nothing
    assert (partial_dir(out, 2) / "agent1-seg2.npz").exists()
    refiltered = dataclasses.replace(TINY_STUDY, grid_filter=GridFilter(
        window="none", cost_bins=1, reward_bins=1, max_per_bin=3, min_share_each_side=None))
    monkeypatch.setitem(COLLECT_PROFILES, tiny_study, refiltered)
    monkeypatch.setattr(collect, "_train_agent", lambda *a, **k: pytest.fail("retrained"))
    again = collect_task(SPEC, tiny_study, seed=2, progress=False, force=True)
    assert len(again["resumed_stages"]) == 6 and again["n_trajectories"] == 3


def test_segments_continue_the_agent(tiny_study):
    """A segment continues its predecessor's weights, statistics, multiplier and Adam."""
    stages = collect.plan_stages(TINY_STUDY, SPEC)
    first = collect._train_agent(SPEC, TINY_STUDY, 200, 0, stages[0].agent, 2.0)
    state = {k: v for k, v in first.items() if k.startswith("state/")}
    assert any(k.startswith("state/adam.") for k in state)
    again = collect._train_agent(SPEC, TINY_STUDY, 200, 0, stages[1].agent, 10.0, start=state)
    fresh = collect._train_agent(SPEC, TINY_STUDY, 200, 0, stages[1].agent, 10.0)
    assert not np.array_equal(again["state/actor.0.weight"], fresh["state/actor.0.weight"])
    assert float(again["state/norm_count"]) > float(first["state/norm_count"])


def test_agents_that_never_reach_dsrl_window_are_one_clear_error(local_dir, monkeypatch):
    # at smoke size no BallRun episode reaches DSRL's r_min (26): nothing to keep
    windowed = dataclasses.replace(TINY_STUDY, cost_limits=(10.0,), env_steps_per_agent=200,
                                   grid_filter=GridFilter())
    monkeypatch.setitem(COLLECT_PROFILES, "windowed", windowed)
    with pytest.raises(CollectError, match="did not learn the task"):
        collect_task(SPEC, "windowed", seed=0, progress=False)
    assert not local_path(SPEC, "windowed").exists()


def test_the_cli_offers_every_collection_profile():
    from bench.cli import COLLECT_PROFILE_NAMES

    assert tuple(COLLECT_PROFILES) == COLLECT_PROFILE_NAMES


def test_agents_trained_apart_on_two_cores_make_the_serial_file(local_dir, capsys):
    """`bench collect --jobs 2` trains every agent of a task as its own job (worker
    processes) and pools after: the same transitions as the serial collection, its card
    naming what an earlier run had saved."""
    from bench.cli import main

    reference = collect_task(SPEC, "smoke", seed=0, out_path=local_dir / "ref-x.hdf5",
                             progress=False)
    agents = collect.agents_of(SPEC, "smoke")
    assert len(agents) == len(COLLECT_PROFILES["smoke"].cost_limits) >= 2
    # one agent trained before (an interrupted run): kept, and named as resumed
    first = collect.train_agent_stages(SPEC, "smoke", 0, agents[-1])
    assert first["resumed"] == [] and len(first["trained"]) == 1
    capsys.readouterr()
    assert main(["collect", "--tasks", "BallRun", "--profile", "smoke", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert f"resumed: {first['trained'][0]}\n" in out
    a, b = _arrays(reference["path"]), _arrays(local_path(SPEC, "smoke"))
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(CollectError, match="no agent 'limit 99'"):
        collect.train_agent_stages(SPEC, "smoke", 0, "limit 99", force=True)


@pytest.fixture
def avx2():
    """Portable kernels pin every library to AVX2: a processor without it cannot run them."""
    from tasks.collect.kernels import KernelsError, portable_environment

    try:
        portable_environment()
    except KernelsError:
        pytest.skip("this processor has no AVX2, which portable kernels pin")


def test_portable_kernels_pin_what_the_machine_would_pick(local_dir, avx2, capfd, monkeypatch):
    """`--kernels portable` collects in a child process whose torch, MKL, oneDNN and numpy
    load pinned to AVX2 kernels: settings a machine picks otherwise (stood in for by variables
    the parent set otherwise) do not reach the file, though they do change a native one; the
    card says which kernels; a native stage saved before is not taken for a portable one."""
    import json
    import os
    import subprocess
    import sys

    from bench.cli import main
    from tasks.datasets import file_arrays_sha256

    path = local_path(SPEC, "smoke")
    last_agent = collect.agents_of(SPEC, "smoke")[-1]
    assert collect.train_agent_stages(SPEC, "smoke", 0, last_agent)["trained"]  # native
    capfd.readouterr()
    argv = ["collect", "--tasks", "BallRun", "--profile", "smoke", "--jobs", "1", "--force"]
    assert main([*argv, "--kernels", "portable"]) == 0
    out = capfd.readouterr().out
    assert "resumed:" not in out and "portable kernels" in out
    card = path.with_name(path.name + ".card.json")
    machine = json.loads(card.read_text())["timing"]["machine"]
    assert machine["kernels"] == "portable" and machine["torch_cpu_capability"] == "AVX2"
    assert not any(name.startswith("AVX512") for name in machine["numpy_cpu_features"])
    portable = file_arrays_sha256(path)

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")  # torch's plainest kernels
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    assert main([*argv, "--kernels", "portable"]) == 0
    assert file_arrays_sha256(path) == portable
    # the same variables in a native collection: other numbers (so the pinning is what holds)
    subprocess.run([sys.executable, "-m", "bench", *argv], env=dict(os.environ), check=True,
                   capture_output=True)
    assert json.loads(card.read_text())["timing"]["machine"]["kernels"] == "native"
    assert file_arrays_sha256(path) != portable
    # a child whose pinning did not take says so, rather than starting a child of its own
    monkeypatch.setenv("BENCH_PORTABLE_CHILD", "1")
    capfd.readouterr()
    assert main([*argv, "--kernels", "portable"]) == 2
    assert "did not take" in capfd.readouterr().err


def test_portable_kernels_judge_numpy_by_its_avx512_dispatch_targets(monkeypatch):
    """numpy keeps reporting AVX512VL, AVX512BW and the other finer flags when AVX512F is
    turned off (an AMD EPYC with AVX-512 does), yet runs no AVX-512 loop without AVX512F: a
    pinned child there is portable; any AVX512F or AVX512_* group still on is not."""
    import torch

    from tasks.collect import kernels

    for name, value in kernels.PINNED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    seen_pinned = {"AVX2": True, "FMA3": True, "AVX512F": False, "AVX512_SKX": False,
                   "AVX512VL": True, "AVX512BW": True, "AVX512VNNI": True}
    monkeypatch.setattr(kernels, "numpy_cpu_features", lambda: seen_pinned)
    assert kernels.kernels_in_use() == "portable"
    for still_on in ("AVX512F", "AVX512_SKX"):
        monkeypatch.setattr(kernels, "numpy_cpu_features",
                            lambda: seen_pinned | {still_on: True})
        assert kernels.kernels_in_use() == "native", still_on


def test_portable_check_records_where_transitions_repeat_and_where_they_differ(
        tmp_path, monkeypatch, capsys):
    """scripts/portable_check.py --record: a task whose portable file holds the ledger's
    transitions adds this processor to its `made_on`; one whose file holds others adds it,
    with its hash, to `differs_on`, and exits 1; nothing a processor recorded before is lost."""
    import json
    import sys

    from helpers import fake_arrays, load_script
    from tasks.datasets import file_arrays_sha256, write_dsrl_file

    check = load_script("portable_check")
    data = tmp_path / "data"
    shas = {}
    for task, seed in (("BallRun", 0), ("DroneRun", 1)):
        path = data / local_path(get_task(task), "study").name
        write_dsrl_file(path, fake_arrays(seed=seed), {"source": "local", "seed": 0})
        path.with_name(path.name + ".card.json").write_text(json.dumps(
            {"harness_commit": "c" * 40,
             "timing": {"machine": {"kernels": "portable", "cpu": "Here CPU",
                                    "isa": ["avx2", "avx512f"]}}}))
        shas[task] = file_arrays_sha256(path)
    before = {task: {"arrays_sha256": sha, "collector_commit": "a" * 40,
                     "made_on": ["There CPU (avx2)"]} for task, sha in shas.items()}
    before["DroneRun"]["arrays_sha256"] = "0" * 64  # made otherwise there
    ledger = tmp_path / "portable.json"
    ledger.write_text(json.dumps({"about": "-", "hashes": {"study": before}}))
    monkeypatch.setattr(check, "LEDGER", ledger)
    monkeypatch.setattr(check, "ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["portable_check.py", "--profile", "study", "--tasks",
                                      "BallRun,DroneRun", "--data", str(data), "--record"])
    assert check.main() == 1
    out = capsys.readouterr().out
    assert "BallRun (study): same" in out and "DroneRun (study): DIFFERS" in out
    after = json.loads(ledger.read_text())["hashes"]["study"]
    here = "Here CPU (avx2, avx512f)"
    assert after["BallRun"]["made_on"] == ["There CPU (avx2)", here]
    assert "differs_on" not in after["BallRun"]
    assert after["DroneRun"]["made_on"] == ["There CPU (avx2)"]
    assert after["DroneRun"]["arrays_sha256"] == "0" * 64
    assert after["DroneRun"]["differs_on"] == {
        here: {"arrays_sha256": shas["DroneRun"], "collector_commit": "c" * 40}}


def test_portable_kernels_pin_numpy_s_blas(local_dir, avx2):
    """DroneRun's simulator multiplies through numpy's BLAS (OpenBLAS), whose kernels follow
    the processor (SkylakeX ones on AVX-512, Haswell ones on AVX2) or OPENBLAS_CORETYPE: a
    native collection under another core type makes other transitions, a portable one the
    same (the pinned Haswell kernels, whatever the parent set)."""
    import os
    import subprocess
    import sys

    from tasks.datasets import file_arrays_sha256

    path = local_path(get_task("DroneRun"), "smoke")

    def collected(kernels: str, coretype: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        env |= {"OPENBLAS_CORETYPE": coretype} if coretype else {}
        subprocess.run([sys.executable, "-m", "bench", "collect", "--tasks", "DroneRun",
                        "--profile", "smoke", "--jobs", "1", "--force", "--kernels", kernels],
                       env=env, check=True, capture_output=True)
        return file_arrays_sha256(path)

    # Prescott: OpenBLAS's SSE3 kernels, which every x86-64 runs
    assert collected("native", "Prescott") != collected("native", "Haswell")
    assert collected("portable", "Prescott") == collected("portable", None)
