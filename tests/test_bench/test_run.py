"""End to end on the real Bullet simulator with tiny budgets: plan, train, evaluate, record, resume."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.evaluate import evaluate_policy, step_costs
from tasks.datasets import file_sha256, write_dsrl_file
from tasks.envs import make_env
from tasks.registry import get_task
from helpers import run

SPEC = get_task("BallRun")


def records_in(results):
    return {p.relative_to(results): p for p in sorted(results.rglob("thr*-seed*.json"))
            if not p.name.endswith(".error.json")}


def test_run_records_every_threshold_and_resumes_without_training(local_ballrun, tmp_path, capsys):
    path, arrays = local_ballrun
    from tasks.datasets import split_trajectories

    assert (split_trajectories(arrays).cost_returns <= 10).any()  # BC-Safe has data at 10
    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All,BC-Safe") == 0
    records = records_in(results)
    assert len(records) == 6  # 2 methods x 3 thresholds x 1 seed
    record = json.loads(records[next(r for r in records if "BC-All" in str(r))].read_text())
    assert record["data_source"] == "local"
    assert record["dataset_sha256"] == file_sha256(path)
    assert record["dataset_attrs"]["source"] == "local"
    assert record["method"] == "BC-All" and record["suite"] == "bullet"
    assert record["steps"] == 20 and record["eval_episodes"] == 2
    assert record["cuda_graph"] is False  # trained on the CPU, step by step
    assert len(record["reward_returns"]) == len(record["cost_returns"]) == 2
    reward, cost = SPEC.normalize(np.array(record["reward_returns"]),
                                  np.array(record["cost_returns"]), record["threshold"])
    assert record["normalized_reward"] == pytest.approx(reward.mean())
    assert record["normalized_cost"] == pytest.approx(cost.mean())
    # BC-All is threshold-agnostic: one training run serves its three records
    assert len(list((results / "bullet/BallRun/BC-All").glob("run-*/checkpoint.pt"))) == 1
    assert len(list((results / "bullet/BallRun/BC-Safe").glob("run-*/checkpoint.pt"))) == 3

    mtimes = {k: p.stat().st_mtime_ns for k, p in records.items()}
    capsys.readouterr()
    assert run(results, "--methods", "BC-All,BC-Safe") == 0
    out = capsys.readouterr().out
    assert "(0 to run, 4 already recorded)" in out and "0 trained, 4 skipped" in out
    assert {k: p.stat().st_mtime_ns for k, p in records_in(results).items()} == mtimes

    # an interrupted evaluation: the model is reloaded from its checkpoint, not trained again
    lost = next(k for k in records if "BC-All" in str(k))
    curve = next((results / "bullet/BallRun/BC-All").glob("run-*/curve.csv"))
    curve_mtime = curve.stat().st_mtime_ns
    (results / lost).unlink()
    assert run(results, "--methods", "BC-All") == 0
    assert (results / lost).exists() and curve.stat().st_mtime_ns == curve_mtime

    assert main(["report", "--results", str(results)]) == 0
    table = capsys.readouterr().out
    assert "| BallRun |" in table and "locally collected" in table


def test_jobs_are_named_by_the_transitions_so_records_move_to_a_new_machine(
        local_ballrun, tmp_path, capsys):
    """The same collection made again (another card: commit, timings) is the same jobs: copied
    records are found and nothing trains; other transitions are other jobs."""
    import shutil

    from tasks.datasets import file_arrays_sha256

    path, arrays = local_ballrun
    first = tmp_path / "first"
    assert run(first, "--methods", "BC-All") == 0
    old = json.loads(next(first.rglob("thr10-seed0-*.json")).read_text())
    assert old["dataset_arrays_sha256"] == file_arrays_sha256(path)

    old_file = file_sha256(path)
    write_dsrl_file(path, arrays, {"source": "local", "seed": 0, "commit": "another"})
    assert file_sha256(path) != old_file  # another file, the same transitions
    moved = tmp_path / "moved"
    for record in first.rglob("thr*-seed*.json"):  # the records alone, as docs/ keeps them
        target = moved / record.relative_to(first)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(record, target)
    capsys.readouterr()
    assert run(moved, "--methods", "BC-All") == 0
    assert "0 to run, 1 already recorded" in capsys.readouterr().out
    assert not list(moved.rglob("checkpoint.pt"))

    write_dsrl_file(path, {**arrays, "rewards": arrays["rewards"] * 2}, {"source": "local"})
    assert run(moved, "--methods", "BC-All") == 0
    assert "1 to run" in capsys.readouterr().out
    assert len(list(moved.rglob("thr10-seed0-*.json"))) == 2


def test_missing_data_is_one_clear_message(data_dirs, tmp_path, capsys):
    assert run(tmp_path / "r", "--methods", "BC-All") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no dataset for BallRun")
    assert "python -m bench collect --task BallRun --profile smoke" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,match", [
    (["--methods", "BC-Al"], "Did you mean BC-All"),
    (["--methods", "BC-All", "--set", "hidden"], "key=value"),
    (["--methods", "BC-All", "--set", "nosuch=1"], "no selected method has"),
])
def test_bad_input_exits_2_with_a_message(local_ballrun, tmp_path, capsys, args, match):
    assert run(tmp_path / "r", *args) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_bad_flag_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--suite", "bullet", "--seeds", "a,b"])
    assert exit_info.value.code == 2
    assert "--seeds: takes integers" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "transfer", "speed"])
@pytest.mark.parametrize("device,match", [
    ("gpu0", "unknown torch device 'gpu0'"),
    ("cuda", "sees no CUDA GPU"),
    ("mps", "trains on cpu, cuda or cuda:N"),
])
def test_a_device_this_machine_lacks_is_refused_before_any_job(command, device, match,
                                                               tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--device", device])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_a_failing_job_leaves_an_error_record_and_keeps_the_rest(local_ballrun, tmp_path,
                                                                capsys):
    path, arrays = local_ballrun
    arrays = dict(arrays)
    arrays["costs"] = np.where(arrays["costs"] > 0, arrays["costs"], 0.5)  # nothing safe at 10
    write_dsrl_file(path, arrays, {"source": "local"})
    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All,BC-Safe", "--set", "actor_lr=0.001") == 1
    assert "FAILED BC-Safe [actor_lr=0.001] BallRun thr=10" in capsys.readouterr().out
    errors = list(results.rglob("*.error.json"))
    assert errors and "Traceback" in json.loads(errors[0].read_text())["traceback"]
    assert len([k for k in records_in(results) if "BC-All" in str(k)]) == 3


def test_vectorized_evaluation_matches_a_plain_loop():
    def act(obs):
        return np.tile([0.8, -0.3], (len(obs), 1)).astype(np.float32)

    vectorized = evaluate_policy(act, SPEC, episodes=3, seed=40)
    for i in range(3):
        env = make_env(SPEC)
        env.reset(seed=40 + i)
        reward = cost = 0.0
        done = False
        while not done:
            _, r, term, trunc, info = env.step(np.array([0.8, -0.3], np.float32))
            reward, cost, done = reward + r, cost + info["cost"], term or trunc
        # PyBullet clients in one process agree to float32 precision, not bit for bit
        assert vectorized["reward_returns"][i] == pytest.approx(reward, rel=1e-5)
        assert vectorized["cost_returns"][i] == pytest.approx(cost)
    assert max(vectorized["cost_returns"]) > 0  # the check above compared real costs


def test_step_costs_reads_the_final_step_of_a_reset_env():
    infos = {"cost": np.array([1.0, 0.0]), "_cost": np.array([True, False]),
             "final_info": np.array([None, {"cost": 1.0}], dtype=object),
             "_final_info": np.array([False, True])}
    assert step_costs(infos, 2).tolist() == [1.0, 1.0]


def test_lspc_records_both_policies_and_an_epsilon_sweep(local_ballrun, tmp_path, capsys):
    results = tmp_path / "results"
    assert run(results, "--methods", "LSPC", "--set", "epsilon=0.1,0.9",
               "--set", "batch_size=64") == 0
    records = [json.loads(p.read_text()) for p in records_in(results).values()]
    # one training per epsilon, each recorded as LSPC-S and LSPC-O at three thresholds
    assert len(records) == 2 * 2 * 3
    assert {r["method"] for r in records} == {"LSPC-S", "LSPC-O"}
    assert {r["config"]["epsilon"] for r in records} == {0.1, 0.9}
    assert {r["variant"] for r in records} == {"epsilon=0.1, batch_size=64",
                                               "epsilon=0.9, batch_size=64"}
    assert len(list(results.rglob("checkpoint.pt"))) == 2
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--sweep", "epsilon"]) == 0
    out = capsys.readouterr().out
    assert "LSPC-O" in out and "0.9" in out
    assert (results / "sweep-epsilon.png").stat().st_size > 10_000
    assert main(["report", "--results", str(results)]) == 0
    assert "LSPC-S [epsilon=0.1, batch_size=64]" in capsys.readouterr().out

    # the paper's Fig. 4: both restrictions move together (LSPC-S's box is epsilon)
    assert run(results, "--methods", "LSPC", "--set", "epsilon=0.1,0.9",
               "--set", "safe_epsilon=None", "--set", "batch_size=64") == 0
    coupled = [json.loads(p.read_text()) for p in records_in(results).values()]
    coupled = [r for r in coupled if "safe_epsilon=None" in r["variant"]]
    assert len(coupled) == 12 and all(r["config"]["safe_epsilon"] is None for r in coupled)
    capsys.readouterr()
    assert main(["plot", "--kind", "sweep", "--field", "epsilon", "--results",
                 str(results)]) == 0
    assert (results / "sweep-epsilon.png").stat().st_size > 10_000


def test_a_method_from_outside_the_repository(local_ballrun, tmp_path, capsys, monkeypatch):
    example = Path(__file__).resolve().parents[2] / "examples" / "plugin_method"
    monkeypatch.syspath_prepend(str(example))
    results = tmp_path / "results"
    assert run(results, "--method-module", "bench_example_method:LinearBC",
               "--methods", "Linear-BC,BC-All") == 0
    records = [json.loads(p.read_text()) for p in records_in(results).values()]
    assert {r["method"] for r in records} == {"Linear-BC", "BC-All"}
    capsys.readouterr()
    assert main(["report", "--results", str(results)]) == 0
    assert "Linear-BC reward" in capsys.readouterr().out
    assert run(results, "--method-module", "no_such_module:X", "--methods", "BC-All") == 2
    assert "cannot import it" in capsys.readouterr().err


def test_tensorboard_events_beside_the_csv_curve(local_ballrun, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard is optional (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All", "--tensorboard") == 0
    events = next(results.rglob("run-seed0-*/tensorboard"))
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    logged = accumulator.Scalars("loss/actor")
    assert [point.step for point in logged] == [10, 20]  # smoke: log every 10 of 20 steps
    curve = (events.parent / "curve.csv").read_text().splitlines()
    assert len(curve) == 3 and float(curve[2].split(",")[1]) == pytest.approx(logged[1].value)


def test_an_evaluation_during_training_leaves_every_random_stream_as_it_was():
    import random

    import torch

    from algorithms import build_config
    from algorithms.lspc import LSPC
    from bench.curves import curve_evaluator
    from bench.streams import seed_everything

    method = LSPC(SPEC, build_config(LSPC, SPEC.name), None, 0)
    evaluate = curve_evaluator(method, SPEC, LSPC.policies, 1)

    def draws(seed, evaluated):
        seed_everything(seed)
        random.seed(seed)
        if evaluated:
            evaluate(5)  # LSPC-S draws its latents from torch's generator
        return (torch.rand(4).tolist(), np.random.rand(4).tolist(), random.random())

    for seed in (0, 1, 2):  # as if the evaluation had not happened
        assert draws(seed, evaluated=True) == draws(seed, evaluated=False)
    after = [draws(seed, evaluated=True) for seed in (0, 1, 2)]
    assert len({str(d) for d in after}) == 3  # seeds stay independent after it


def test_a_curve_point_does_not_depend_on_the_points_before_it():
    """A resumed job starts its curves on new simulators; an unbroken one has evaluated before.
    CarRun's world keeps state through reset(seed) (BallRun's does not), so it shows."""
    from algorithms import build_config
    from algorithms.lspc import LSPC
    from bench.curves import curve_evaluator

    car = get_task("CarRun")
    method = LSPC(car, build_config(LSPC, car.name), None, 0)
    unbroken = curve_evaluator(method, car, LSPC.policies, 2)
    unbroken(10)
    after_earlier_points = unbroken(20)
    resumed = curve_evaluator(method, car, LSPC.policies, 2)(20)
    assert after_earlier_points == resumed
    assert resumed != unbroken(10)  # the point's step seeds its episodes


def test_curves_do_not_change_what_is_trained(local_ballrun, tmp_path):
    import torch

    def trained(results, *extra):
        assert run(results, "--methods", "LSPC", "--set", "batch_size=64", *extra) == 0
        records = {(r["method"], r["threshold"]): r for r in
                   (json.loads(p.read_text()) for p in records_in(results).values())}
        state = torch.load(next(results.rglob("checkpoint.pt")), weights_only=False)["state"]
        return records, state

    plain, plain_state = trained(tmp_path / "plain")
    curved, curved_state = trained(tmp_path / "curves", "--eval-every", "3")
    curve = next((tmp_path / "curves").rglob("curve.csv")).read_text()
    assert "LSPC-S/reward_return" in curve  # the curve run did evaluate during training
    for name in ("q_ens", "v_ens", "cvae", "encoder"):
        for key, value in plain_state[name].items():
            assert torch.equal(value, curved_state[name][key]), (name, key)
    assert plain.keys() == curved.keys()
    for key, record in plain.items():
        for field in ("final_train_stats", "reward_returns", "cost_returns",
                      "normalized_reward", "normalized_cost"):
            assert record[field] == curved[key][field], (key, field)


def test_data_profile_picks_the_local_collection_to_train_on(local_ballrun, tmp_path):
    """--data-profile study trains on `bench collect --profile study`'s files whatever budget
    --profile gives the run; the data's hash is in the job's, so the jobs are apart."""
    from bench.plan import plan_jobs
    from tasks.datasets import DatasetError

    path, _ = local_ballrun  # the smoke collection
    (job,) = plan_jobs([SPEC], ["BC-All"], [0], "quick", tmp_path, "local",
                       data_profile="smoke")
    assert job.data_path == str(path) and job.profile == "quick"
    with pytest.raises(DatasetError, match="BallRun-local-study.hdf5"):
        plan_jobs([SPEC], ["BC-All"], [0], "smoke", tmp_path, "local", data_profile="study")
    assert main(["run", "--tasks", "BallRun", "--methods", "BC-All", "--data", "local",
                 "--data-profile", "smoke", "--profile", "quick", "--results",
                 str(tmp_path / "r"), "--dry-run"]) == 0
