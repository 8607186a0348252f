"""`bench transfer`: agents trained on one MetaDrive configuration, evaluated zero-shot on
others; the matrix (Markdown and LaTeX, bold/blue rule) and the Fig. 12 chart; bad sources."""

import json

import numpy as np
import pytest

from bench.cli import main
from reports.transfer import transfer_matrix, transfer_table
from tasks.datasets import local_path, write_dsrl_file
from tasks.registry import get_task

pytest.importorskip("metadrive")

SOURCE = get_task("easysparse")


def synthetic_metadrive_data(episodes=6, length=50, seed=0):
    """DSRL-layout arrays of MetaDrive's shapes (the transfer test needs trained agents, not
    good ones)."""
    rng = np.random.default_rng(seed)
    n = episodes * length
    timeouts = np.zeros(n, np.float32)
    timeouts[length - 1::length] = 1
    obs = rng.uniform(0, 1, (n, SOURCE.obs_dim)).astype(np.float32)
    return {"observations": obs, "next_observations": np.roll(obs, -1, 0),
            "actions": rng.uniform(-1, 1, (n, SOURCE.act_dim)).astype(np.float32),
            "rewards": rng.uniform(0, 1, n).astype(np.float32),
            "costs": (rng.uniform(size=n) < 0.1).astype(np.float32),
            "terminals": np.zeros(n, np.float32), "timeouts": timeouts}


def test_transfer_matrix_and_chart_from_a_trained_agent(data_dirs, tmp_path, capsys):
    write_dsrl_file(local_path(SOURCE, "smoke"), synthetic_metadrive_data(),
                    {"source": "local", "seed": 0})
    results = tmp_path / "results"
    args = ["transfer", "--from", "easy sparse", "--methods", "BC-All", "--seeds", "0",
            "--profile", "smoke", "--targets", "easysparse,hardmean", "--results",
            str(results), "--jobs", "1", "--quiet", "--format", "latex"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "\\begin{tabular}" in out and "(source)" in out
    # main records of the source run, and transfer records apart from them
    records = sorted((results / "transfer" / "easysparse").rglob("thr*-seed*.json"))
    assert {p.parts[-3] for p in records} == {"easysparse", "hardmean"}
    assert len(records) == 2 * 3  # two targets x three thresholds, one seed
    first = json.loads(records[0].read_text())
    assert first["transfer_from"] == "easysparse" and first["checkpoint"].endswith(
        "checkpoint.pt") and first["eval_episodes"] == 2
    # the agent's job, flat as every saved job is: it reads back as the job that trained
    from bench.plan import job_from_fields

    target = json.loads(next(p for p in records if p.parts[-3] == "hardmean").read_text())
    job = job_from_fields({k: v for k, v in target["job"].items() if k != "results"}, results)
    assert job.task == "easysparse" and job.options.device == "cpu"
    assert "options" not in target["job"] and target["job"]["results"] == "."  # no machine path
    matrix_files = [results / "transfer" / f"easysparse-matrix{s}" for s in (".md", ".tex")]
    charts = [results / "transfer" / f"easysparse-matrix-chart{s}" for s in (".png", ".pdf")]
    assert all(p.stat().st_size > 0 for p in matrix_files + charts)
    from bench.records import load_records

    assert all("transfer_from" not in r for r in load_records(results))  # kept apart
    # a second call evaluates nothing again and writes the same matrix
    before = matrix_files[0].read_text()
    assert main(args) == 0
    assert matrix_files[0].read_text() == before
    # the report layer renders the same matrix and chart from the records alone
    capsys.readouterr()
    assert main(["report", "--transfer", "easysparse", "--results", str(results)]) == 0
    assert capsys.readouterr().out.strip() == before.strip()
    assert main(["report", "--transfer", "easysparse", "--results", str(results),
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "target,method,reward,cost"
    chart = tmp_path / "again"
    assert main(["plot", "--kind", "transfer", "--task", "easy sparse", "--results",
                 str(results), "--out", str(chart)]) == 0
    assert chart.with_suffix(".png").stat().st_size > 0
    assert chart.with_suffix(".pdf").stat().st_size > 0
    # `bench status` counts the evaluations of the saved transfer plan, recorded and left
    records[0].unlink()
    capsys.readouterr()
    assert main(["status", "--results", str(results)]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines()
               if line.startswith("from easysparse"))
    assert row[2:] == ["BC-All", "5", "1", "6"]
    # no records from that source: one line saying how to make them
    assert main(["report", "--transfer", "harddense", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "no transfer records from harddense" in err and "Traceback" not in err


def test_matrix_means_over_thresholds_then_seeds_and_highlights():
    import pandas as pd

    frame = pd.DataFrame([
        # target, method, seed, threshold, reward, cost
        ("easysparse", "A", 0, 10, 0.5, 0.2), ("easysparse", "A", 0, 20, 0.7, 0.4),
        ("easysparse", "A", 1, 10, 0.9, 0.6), ("easysparse", "B", 0, 10, 0.9, 1.5),
        ("hardmean", "A", 0, 10, 0.1, 2.0), ("hardmean", "B", 0, 10, 0.3, 0.1),
    ], columns=["target", "method", "seed", "threshold", "reward", "cost"])
    frame["data_source"], frame["profile"], frame["steps"] = "local", "quick", 100
    matrix = transfer_matrix(frame).set_index(["target", "method"])
    assert matrix.loc[("easysparse", "A"), "reward"] == pytest.approx((0.6 + 0.9) / 2)
    assert matrix.loc[("easysparse", "A"), "cost"] == pytest.approx((0.3 + 0.6) / 2)
    table = transfer_table(frame, "easysparse")
    rows = {key: cells for key, _, cells in table.sections[0].rows}
    assert rows["easysparse"]["A"].blue and not rows["easysparse"]["B"].bold  # B unsafe
    assert rows["hardmean"]["B"].blue and not rows["hardmean"]["A"].bold


def test_unknown_source_lists_the_metadrive_tasks(capsys):
    assert main(["transfer", "--from", "CarRun"]) == 2
    err = capsys.readouterr().err
    assert "easysparse" in err and "harddense" in err and "Traceback" not in err


def test_dry_run_counts_what_is_left_and_runs_nothing(data_dirs, tmp_path, capsys):
    write_dsrl_file(local_path(SOURCE, "smoke"), synthetic_metadrive_data(),
                    {"source": "local", "seed": 0})
    results = tmp_path / "results"
    args = ["transfer", "--from", "easysparse", "--methods", "BC-All,BC-Safe", "--seeds", "0",
            "--profile", "smoke", "--targets", "easysparse,hardmean,mediumdense",
            "--results", str(results), "--jobs", "1", "--quiet", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # BC-All: one agent, BC-Safe: one per threshold; each evaluated at its thresholds on the
    # two targets other than the source: (3 + 3) x 2
    assert "4 training jobs, 6 evaluations to run" in out
    assert "zero-shot evaluations to run: 12," in out and "from assumed)" in out
    assert not results.exists() or not any(results.rglob("*.json"))


def test_transfer_estimate_times_each_method_by_its_own_records(data_dirs, tmp_path):
    """A slow method's transfer records must not be averaged into a fast one's estimate (on
    MetaDrive they differ a hundredfold): each method is timed by its own records."""
    from bench.estimate import transfer_estimate
    from bench.plan import plan_jobs
    from bench.transfer import transfer_record_path

    write_dsrl_file(local_path(SOURCE, "smoke"), synthetic_metadrive_data(),
                    {"source": "local", "seed": 0})
    results = tmp_path / "results"
    jobs = plan_jobs([SOURCE], ["BC-All", "BC-Safe"], [0], "smoke", results, "auto")
    targets = ["easysparse", "hardmean", "mediumdense"]

    def fake_record(job, target, threshold, seconds):
        path = transfer_record_path(results, SOURCE.name, target, job.method, threshold,
                                    job.seed, job.job_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schema": 1, "status": "ok", "method": job.method,
                                    "task": target, "suite": "metadrive", "seed": job.seed,
                                    "threshold": threshold, "normalized_reward": 0.0,
                                    "normalized_cost": 0.0, "eval_seconds": seconds}))

    bc_all = next(job for job in jobs if job.method == "BC-All")
    bc_safe = [job for job in jobs if job.method == "BC-Safe"]
    fake_record(bc_all, "hardmean", 10.0, 300.0)  # slow, as FISOR is
    for job in bc_safe[:2]:  # fast; the median of all three records would be 3 s
        fake_record(job, "hardmean", job.thresholds[0], 3.0)
    estimate = transfer_estimate(jobs, targets, results, n_workers=2)
    # left, on the two targets other than the source: BC-All 3 thresholds x 2 less the one
    # recorded; BC-Safe one agent per threshold x 2 less the two recorded
    assert estimate["evaluations"] == 9
    assert estimate["core_hours"] == pytest.approx((5 * 300.0 + 4 * 3.0) / 3600)
    assert estimate["wall_hours"] == pytest.approx(estimate["core_hours"] / 2)
    assert estimate["from"] == "transfer records"

