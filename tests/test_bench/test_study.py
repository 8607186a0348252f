"""What a study may train on (bench/study.py, scripts/study.sh): its transitions and its
precision, and what --save copies into it."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, fake_arrays
from bench.study import refusal, saved_files
from tasks.datasets import file_arrays_sha256, local_path, write_dsrl_file
from tasks.registry import get_task


@pytest.fixture
def study(data_dirs, tmp_path):
    """A DroneRun `study` file, a study naming its transitions (bf16), and a second study
    naming other transitions of the same task."""
    path = write_dsrl_file(local_path(get_task("DroneRun"), "study"), fake_arrays(),
                           {"source": "local", "seed": 0})
    sha = file_arrays_sha256(path)
    root = tmp_path / "docs" / "study"
    (root / "other").mkdir(parents=True)
    (root / "data.json").write_text(json.dumps(
        {"arrays_sha256": {"DroneRun": sha}, "precision": "bf16"}))
    (root / "other" / "data.json").write_text(json.dumps(
        {"arrays_sha256": {"DroneRun": "0" * 64}}))
    return root, sha


def test_training_goes_on_only_on_the_study_s_transitions_and_precision(study, tmp_path):
    root, sha = study
    results = tmp_path / "results"
    assert refusal(root, ["DroneRun"], "bf16", results) is None
    # a task without a local file yet is left to bench run (which says what to collect)
    assert refusal(root, ["DroneRun", "BallRun"], "bf16", results) is None

    wrong_precision = refusal(root, ["DroneRun"], "fp32", results)
    assert "trains in bf16" in wrong_precision and "not in fp32" in wrong_precision
    # a data.json without a precision is an fp32 study, as a record without one is fp32
    assert refusal(root / "other", [], "fp32", results) is None

    # the file here holds the first study's transitions, not the other study's: the refusal
    # names the study that these transitions are, and its precision
    other = refusal(root / "other", ["DroneRun"], "fp32", results)
    assert f"other transitions ({sha[:12]})" in other
    assert f"STUDY_DIR={root}, in bf16" in other

    # a committed record made on other data is never copied onto this file
    record = results / "bullet" / "DroneRun" / "LSPC-S" / "thr10-seed0-abcdef1234.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"task": "DroneRun", "dataset_arrays_sha256": "1" * 64}))
    assert str(record) in refusal(root, ["DroneRun"], "bf16", results)
    # ... nor onto a machine that trains other tasks only
    assert str(record) in refusal(root, ["BallRun"], "bf16", results)


def test_a_machine_trains_the_tasks_it_collects_alike_beside_the_others_records(
        study, tmp_path):
    """A machine whose collection gives the study's transitions on some tasks only trains
    those; the records of the others, made on the study's transitions elsewhere, are the
    study's though this machine's file of their task differs."""
    root, sha = study
    results = tmp_path / "results"
    record = results / "bullet" / "DroneRun" / "LSPC-S" / "thr10-seed0-abcdef1234.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"task": "DroneRun", "dataset_arrays_sha256": sha}))
    write_dsrl_file(local_path(get_task("DroneRun"), "study"), fake_arrays(seed=1),
                    {"source": "local", "seed": 1})  # this machine's DroneRun: other arrays
    assert refusal(root, ["BallRun"], "bf16", results) is None
    assert "holds other transitions" in refusal(root, ["DroneRun", "BallRun"], "bf16", results)


def test_save_keeps_the_records_of_the_study_s_precision_and_their_curves(tmp_path):
    results = tmp_path / "results"
    task = results / "bullet" / "BallRun"

    def job(method, trained_as, job_hash, precision, thresholds):
        for thr in thresholds:
            record = task / method / f"thr{thr}-seed0-{job_hash}.json"
            record.parent.mkdir(parents=True, exist_ok=True)
            fields = {"task": "BallRun"} | ({"precision": precision} if precision else {})
            record.write_text(json.dumps(fields))
        run = task / trained_as / f"run-seed0-{job_hash}"
        run.mkdir(parents=True, exist_ok=True)
        (run / "curve.csv").write_text("step\n")
        (run / "checkpoint.pt").write_bytes(b"x")

    job("LSPC-S", "LSPC", "aaaaaaaaaa", "bf16", (10, 20))
    job("LSPC-S", "LSPC", "bbbbbbbbbb", None, (10,))  # fp32, as old records say it: nothing
    job("BC-All", "BC-All", "cccccccccc", "fp32", (10,))
    (task / "LSPC-S" / "thr10-seed1-dddddddddd.error.json").write_text("{}")
    orphan = task / "LSPC" / "run-seed2-eeeeeeeeee"  # a run no record names: abandoned
    orphan.mkdir(parents=True)
    (orphan / "curve.csv").write_text("step\n")

    bf16 = {str(p) for p in saved_files(results, "bf16")}
    assert bf16 == {"bullet/BallRun/LSPC-S/thr10-seed0-aaaaaaaaaa.json",
                    "bullet/BallRun/LSPC-S/thr20-seed0-aaaaaaaaaa.json",
                    "bullet/BallRun/LSPC/run-seed0-aaaaaaaaaa/curve.csv"}
    fp32 = {str(p) for p in saved_files(results, "fp32")}
    assert fp32 == {"bullet/BallRun/LSPC-S/thr10-seed0-bbbbbbbbbb.json",
                    "bullet/BallRun/LSPC/run-seed0-bbbbbbbbbb/curve.csv",
                    "bullet/BallRun/BC-All/thr10-seed0-cccccccccc.json",
                    "bullet/BallRun/BC-All/run-seed0-cccccccccc/curve.csv"}


@pytest.mark.parametrize("mode", ["", "--save"])
def test_study_sh_refuses_another_precision_before_it_touches_anything(study, tmp_path, mode):
    root, _ = study
    results = tmp_path / "runs"
    done = subprocess.run(["bash", "scripts/study.sh", str(results), "fp32", *filter(None, [mode])],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "STUDY_DIR": str(root),
                               "STUDY_TASKS": "DroneRun", "PYTHON": sys.executable})
    assert done.returncode == 2
    assert "trains in bf16" in done.stderr and "Traceback" not in done.stderr
    assert not results.exists() and not (root / "results").exists()
