"""`bench latent` on a real (tiny) LSPC run: its numbers, its figure, and its one-line errors."""

import json

import numpy as np
import pytest

from bench.cli import main
from tasks.datasets import split_trajectories
from helpers import load_script, run


@pytest.fixture
def lspc_run(local_ballrun, tmp_path):
    results = tmp_path / "results"
    assert run(results, "--methods", "LSPC,BC-All") == 0
    return results, local_ballrun


def test_latent_summary_and_figure(lspc_run, capsys, tmp_path):
    results, (path, arrays) = lspc_run
    capsys.readouterr()
    out = tmp_path / "figs" / "latent"
    assert main(["latent", "--task", "BallRun", "--results", str(results), "--format", "json",
                 "--plot", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "LSPC" and summary["task"] == "BallRun"
    assert summary["latent_dim"] == 32 and summary["action_dim"] == 2
    assert summary["transitions"] == len(arrays["rewards"])  # fewer than the sample: all read
    # the safe share is the data's own: transitions of trajectories within each threshold
    trajectories = split_trajectories(arrays)
    lengths = trajectories.ends - trajectories.starts
    for threshold, row in summary["safe_trajectories"].items():
        safe = trajectories.cost_returns <= float(threshold)
        assert row["share"] == pytest.approx(lengths[safe].sum() / lengths.sum())
        assert 0.0 <= row["weighted_share"] <= 1.0
        # the weighted share is the two sides' mean weights, each by its count of transitions
        w_safe, w_unsafe = row["mean_weight"]["safe"], row["mean_weight"]["unsafe"]
        if w_safe is not None and w_unsafe is not None:
            share = w_safe * row["share"] / (w_safe * row["share"] + w_unsafe * (1 - row["share"]))
            assert row["weighted_share"] == pytest.approx(share, rel=1e-4)
        assert all(v is None or v >= 0 for v in row["mean_abs_advantage"].values())
    assert len(summary["code_center"]) == len(summary["used_dimensions"])
    assert summary["safe_box"] == 0.25 and summary["epsilon"] == 0.6  # A.3.1, BallRun
    assert all(value >= 0 for value in summary["action_error"].values())
    assert out.with_suffix(".png").stat().st_size > 0

    capsys.readouterr()
    assert main(["latent", "--task", "BallRun", "--results", str(results)]) == 0
    text = capsys.readouterr().out
    assert "latent dimensions" in text and "LSPC-S's box |z| <= 0.25" in text
    assert "safe vs unsafe trajectories: cost <= 10: w_c" in text


@pytest.mark.parametrize("args, damage, message", [
    (["--method", "BC-All"], None, "has no latent space"),
    (["--sample", "0"], None, "--sample is the number of transitions to read"),
    (["--seed", "5"], None, "no record of LSPC on BallRun, seed 5"),
    ([], "checkpoint", "checkpoint.pt is missing"),
    ([], "data", "is missing: the run trained on BallRun-local-smoke.hdf5"),
    ([], "other data", "is not the data the run trained on"),
])
def test_bad_input_is_one_line_exit_2(lspc_run, capsys, args, damage, message):
    results, (path, arrays) = lspc_run
    if damage == "checkpoint":
        next(results.rglob("LSPC/run-*/checkpoint.pt")).unlink()
    elif damage == "data":
        path.rename(path.with_suffix(".moved"))
    elif damage == "other data":
        from tasks.datasets import write_dsrl_file

        changed = {**arrays, "rewards": arrays["rewards"] + np.float32(1.0)}
        write_dsrl_file(path, changed, {"source": "local", "seed": 0})
    capsys.readouterr()
    assert main(["latent", "--task", "BallRun", "--results", str(results), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_latent_of_the_authors_code_uses_its_box(local_ballrun, tmp_path, capsys):
    results = tmp_path / "results"
    assert run(results, "--methods", "LSPC-code") == 0
    capsys.readouterr()
    assert main(["latent", "--task", "BallRun", "--method", "LSPC-code", "--results",
                 str(results), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # the authors' code samples LSPC-S in the same box as LSPC-O: eps_S = eps = 0.6 on BallRun
    assert summary["method"] == "LSPC-code" and summary["safe_box"] == summary["epsilon"] == 0.6


def test_where_it_ends_reads_the_agent_and_repeats(lspc_run, capsys, monkeypatch):
    results, _ = lspc_run
    script = load_script("where_it_ends")
    argv = ["where_it_ends.py", "--task", "BallRun", "--results", str(results), "--episodes", "2"]
    monkeypatch.setattr("sys.argv", argv)
    capsys.readouterr()
    assert script.main() == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0].startswith("LSPC on BallRun, seed 0")
    lines = first[1:]
    assert [line.split()[0] for line in lines] == ["LSPC-S"] * 2 + ["LSPC-O"] * 2
    assert all("end at x" in line and "speed" in line for line in lines)
    # the episode seed fixes LSPC-S's latent draws and the agent's start: a rerun repeats
    assert script.main() == 0
    assert capsys.readouterr().out.splitlines()[1:] == lines
    # every episode on a simulator of its own, closed after it: Car and Drone worlds keep
    # state through reset(seed) (test_run.py shows it on CarRun; this BallRun does not), so
    # a reused one would make a line depend on the episodes acted before it
    made = []

    def counted_env(spec):
        env = script_make_env(spec)
        made.append(env)
        return env

    script_make_env = script.make_env
    monkeypatch.setattr(script, "make_env", counted_env)
    monkeypatch.setattr("sys.argv", [*argv[:5], "--episodes", "1"])
    assert script.main() == 0
    assert capsys.readouterr().out.splitlines()[1:] == [lines[0], lines[2]]
    assert len(made) == 2 and len({id(env) for env in made}) == 2
    monkeypatch.setattr("sys.argv", [*argv[:5], "--seed", "7"])
    assert script.main() == 2
    err = capsys.readouterr().err
    assert "no record of LSPC on BallRun, seed 7" in err and len(err.strip().splitlines()) == 1
    # other boxes on the same decoder: the trained box repeats LSPC-S's episodes, others differ
    monkeypatch.setattr("sys.argv", [*argv, "--safe-epsilon", "0.25,0.6"])
    assert script.main() == 0
    boxed = capsys.readouterr().out.splitlines()[1:]

    def labelled(output, label):  # the lines of one label, the label cut off
        return [line.split(None, 1)[1] for line in output if line.startswith(label + " ")]

    at_trained, at_wider = labelled(boxed, "eps_S=0.25"), labelled(boxed, "eps_S=0.6")
    trained_s = labelled(lines, "LSPC-S")
    assert at_trained[:2] == trained_s and at_trained[2].startswith("mean cost")
    assert len(at_wider) == 3 and at_wider[:2] != trained_s
    for bad in ("-0.1", "wide", ""):
        monkeypatch.setattr("sys.argv", [*argv, "--safe-epsilon", bad])
        assert script.main() == 2
        err = capsys.readouterr().err
        assert "--safe-epsilon" in err and len(err.strip().splitlines()) == 1
    # LSPC-O acted at the encoder's mean repeats the trained LSPC's episodes; sampled, it differs
    monkeypatch.setattr("sys.argv", [*argv, "--optimal-latent", "mean,sample"])
    assert script.main() == 0
    acted = capsys.readouterr().out.splitlines()[1:]
    at_mean, sampled = labelled(acted, "O_z=mean"), labelled(acted, "O_z=sample")
    trained_o = labelled(lines, "LSPC-O")
    assert at_mean[:2] == trained_o and at_mean[2].startswith("mean cost")
    assert len(sampled) == 3 and sampled[:2] != trained_o
    monkeypatch.setattr("sys.argv", [*argv, "--optimal-latent", "median"])
    assert script.main() == 2
    err = capsys.readouterr().err
    assert "--optimal-latent" in err and len(err.strip().splitlines()) == 1


def test_the_codes_clamp_keeps_a_vc_born_below_zero_dead_and_the_papers_loss_does_not():
    """scripts/cost_value_fate.py: LSPC-code clamps V^c inside its own loss, so a V^c whose
    output is below 0 on every state never moves again; the paper's loss (LSPC) moves it."""
    import torch

    from bench.speed import synthetic_arrays
    from tasks.registry import get_task

    fate = load_script("cost_value_fate")
    arrays = synthetic_arrays(get_task("BallRun"), size=5000)
    paths = {}
    for name in ("LSPC-code", "LSPC"):
        method = fate.build(name, "BallRun", seed=0)
        with torch.no_grad():  # V^c's output layer (member 1 of v_ens) well below 0
            method.v_ens.biases[-1][1] -= 5.0
        paths[name] = fate.critic_path(method, arrays, steps=30, every=10)
    code, paper = paths["LSPC-code"], paths["LSPC"]
    assert code[0][1] == paper[0][1] == 0.0  # both start below 0 on every probed state
    assert [row[1:3] for row in code] == [code[0][1:3]] * 4  # not a digit moves
    assert paper[-1][2] > paper[0][2] + 1.0  # eq. 41 pulls it up towards Q^c >= 0
    # seeded as bench run seeds a job: the same seed, the same networks, the same path
    again = fate.build("LSPC-code", "BallRun", seed=0)
    fresh = fate.build("LSPC-code", "BallRun", seed=0)
    assert fate.critic_path(again, arrays, 10, 10) == fate.critic_path(fresh, arrays, 10, 10)
