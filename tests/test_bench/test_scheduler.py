"""The scheduler with real processes: SIGKILL in mid-training and resume, two `bench run` on one
results folder, a failing job among good ones, `bench status`, `--dry-run`, and a real Dask
cluster (a scheduler and two workers on loopback)."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.locks import JobLock, is_locked
from helpers import ROOT, RUN, bench, records, wait_for_step


def test_sigkill_in_mid_training_then_resume_gives_the_uninterrupted_records(
        local_ballrun, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    first = bench(*RUN, "--results", str(whole))
    assert first.wait(timeout=300) == 0, first.stdout.read()

    proc = bench(*RUN, "--results", str(killed))
    wait_for_step(killed, 20, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, workers included
    proc.wait()
    assert not records(killed)  # killed before its records
    again = bench(*RUN, "--results", str(killed))
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert "resumed from step" in out
    assert records(killed) == records(whole)  # every record once, identical
    resumed = [json.loads(p.read_text())["resumed_from_step"]
               for p in killed.rglob("thr*-seed*.json")]
    assert min(resumed) >= 20  # trained on from the checkpoint, not from scratch


def test_two_runs_on_one_results_folder_share_the_work(local_ballrun, tmp_path):
    results = tmp_path / "shared"
    args = ["run", "--tasks", "BallRun", "--methods", "BC-All,BC-Safe", "--seeds", "0,1",
            "--profile", "smoke", "--steps", "300", "--jobs", "1", "--results", str(results)]
    a, b = bench(*args), bench(*args)
    outs = [p.communicate(timeout=300)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    trained = [int(out.split("done: ")[1].split(" trained")[0]) for out in outs]
    assert sum(trained) == 8  # 2 seeds x (BC-All once + BC-Safe per threshold): each once
    assert len(records(results)) == 2 * 3 + 2 * 3


FAILING = '''
import torch
from algorithms.bc import BCAll

class Diverges(BCAll):
    """BC whose loss turns NaN at step 5."""

    def train_step(self, batch):
        stats = super().train_step(batch)
        self.count = getattr(self, "count", 0) + 1
        if self.count >= 5:
            stats["loss/actor"] = torch.tensor(float("nan"))
        return stats
'''


def test_a_failing_job_is_recorded_and_the_rest_finish(local_ballrun, tmp_path, capsys,
                                                       monkeypatch):
    (tmp_path / "diverging.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = tmp_path / "results"
    args = ["run", "--tasks", "BallRun", "--profile", "smoke", "--results", str(results),
            "--jobs", "1", "--quiet", "--method-module", "diverging:Diverges",
            "--methods", "Diverges,BC-All"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "FAILED Diverges" in out and "not finite" in out
    error = json.loads(next(results.rglob("*.error.json")).read_text())
    assert error["step"] == 10 and "loss/actor" in error["error"]  # the first log point after
    assert len(records(results)) == 3  # BC-All at its three thresholds

    assert main(["status", "--results", str(results)]) == 0
    status = capsys.readouterr().out
    lines = {tuple(row.split()[:2]): row.split()[2:] for row in status.splitlines()
             if row.startswith("bullet")}
    # done running failed pending jobs, per method and for the suite
    assert lines["bullet", "BC-All"] == ["1", "0", "0", "0", "1"]
    assert lines["bullet", "Diverges"] == ["0", "0", "1", "0", "1"]
    assert lines["bullet", "all"] == ["1", "0", "1", "0", "2"]

    assert main(args) == 1  # a failed job is not rerun unless asked, and the run is not done
    assert "1 failed earlier" in capsys.readouterr().out
    assert main([*args, "--retry-failed"]) == 1
    assert "FAILED Diverges" in capsys.readouterr().out


def test_dry_run_counts_jobs_and_estimates_time(local_ballrun, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "results"
    assert main(["run", "--tasks", "BallRun", "--methods", "BC-All,BC-Safe", "--profile",
                 "smoke", "--seeds", "0,1", "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 training jobs" in out and "12 evaluations" in out
    bc_safe = next(row for row in out.splitlines() if row.startswith("BC-Safe"))
    assert bc_safe.split()[1:3] == ["6", "6"]
    assert "measured now" in out and "estimated" in out
    assert not results.exists() or not records(results)  # nothing ran


def test_lock_is_exclusive_and_dies_with_its_owner(tmp_path):
    path = tmp_path / "job.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from bench.locks import JobLock\n"
        "lock = JobLock(%r); assert lock.acquire(); print('held', flush=True); time.sleep(60)"
    ) % (str(ROOT), str(path))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert is_locked(path)
    with JobLock(path) as held:
        assert not held
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert not is_locked(path)
    with JobLock(path) as held:
        assert held


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_smoke_suite_on_a_real_dask_cluster(local_ballrun, tmp_path):
    pytest.importorskip("distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    dask = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [str(dask / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    workers = [subprocess.Popen(
        [str(dask / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
         "--no-dashboard", "--local-directory", str(tmp_path / f"worker{i}")],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
        for i in range(2)]
    try:
        from distributed import Client

        with Client(address, timeout="60s") as client:  # both workers up before the run
            client.wait_for_workers(2, timeout=120)
        results = tmp_path / "results"
        proc = bench("run", "--tasks", "BallRun", "--methods", "BC-All,BC-Safe", "--profile",
                     "smoke", "--results", str(results), "--backend", "dask", "--scheduler",
                     address)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        assert "dask cluster" in out and "2 workers" in out
        assert len(records(results)) == 6
        hosts = {json.loads(p.read_text())["worker"] for p in results.rglob("thr*-seed*.json")}
        assert len(hosts) == 2  # both workers took jobs
    finally:
        for proc in (*workers, scheduler):
            proc.terminate()
        for proc in (*workers, scheduler):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):  # the nanny's worker process too
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_training_speeds_are_kept_apart_per_device(tmp_path, monkeypatch):
    """A GPU trains these networks up to fifty times faster than a CPU core
    (docs/performance.md, "On a GPU"): a dry run for CPU jobs must not be timed by GPU
    records, nor the other way round, and a cached CPU speed (the old key) must not time a
    GPU job."""
    from bench.estimate import SpeedBook, remember_speed
    from bench.records import SCHEMA

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    results = tmp_path / "results"

    def fake_record(name, device, steps_per_s):
        path = results / "bullet" / "BallRun" / "LSPC" / f"thr10-seed0-{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"schema": SCHEMA, "status": "ok", "method": "LSPC-S",
                                    "trained_as": "LSPC", "task": "BallRun", "device": device,
                                    "suite": "bullet", "seed": 0, "threshold": 10.0,
                                    "normalized_reward": 0.1, "normalized_cost": 0.1,
                                    "steps": 1000, "train_seconds": 1000 / steps_per_s}))

    fake_record("a", "cpu", 20.0)
    fake_record("b", "cuda", 900.0)
    fake_record("c", "cuda", 1000.0)
    book = SpeedBook(results, measure=False)
    assert book.steps_per_s("LSPC", "BallRun", "cpu") == (pytest.approx(20.0), "records")
    assert book.steps_per_s("LSPC", "BallRun", "cuda") == (pytest.approx(950.0), "records")
    assert book.steps_per_s("LSPC", "CarRun", "cuda") == (pytest.approx(950.0),
                                                          "records (other tasks)")
    remember_speed("CPQ", "BallRun", 40.0)  # what `bench speed` on one CPU thread keeps
    assert SpeedBook(results, measure=False).steps_per_s("CPQ", "BallRun", "cuda") == (
        None, "unknown")
    remember_speed("CPQ", "CarRun", 400.0, "cuda")
    book = SpeedBook(results, measure=False)
    assert book.steps_per_s("CPQ", "BallRun", "cpu") == (40.0, "speed cache")
    assert book.steps_per_s("CPQ", "BallRun", "cuda") == (400.0, "speed cache (other tasks)")


def test_the_outcome_summary_counts_and_fails_while_a_job_stands_failed():
    from bench.schedule import summarize

    ok = {"job": "a", "status": "ok"}
    text, code = summarize([ok, {"job": "b", "status": "skipped"}])
    assert text == "done: 1 trained, 1 skipped, 0 failed" and code == 0
    text, code = summarize([ok, {"job": "c", "status": "error", "error": "ValueError: x"},
                            {"job": "d", "status": "failed earlier", "error": "?"},
                            {"job": "e", "status": "busy"}])
    assert code == 1 and text.splitlines() == [
        "done: 1 trained, 0 skipped, 1 failed, 1 left to another process, 1 failed earlier "
        "(rerun with --retry-failed)",
        "  FAILED c: ValueError: x (traceback in its .error.json)"]
    assert summarize([{"job": "d", "status": "failed earlier", "error": "?"}])[1] == 1


def test_set_values_are_parsed_once_for_every_method():
    from algorithms.base import ConfigError
    from bench.plan import parse_sets

    assert parse_sets(["epsilon=0.1,0.5", " safe_epsilon = None", "epsilon=0.2"]) == {
        "epsilon": "0.2", "safe_epsilon": "None"}
    assert parse_sets(["note=a=b"]) == {"note": "a=b"}
    with pytest.raises(ConfigError, match="--set takes key=value, not 'epsilon'"):
        parse_sets(["epsilon"])
