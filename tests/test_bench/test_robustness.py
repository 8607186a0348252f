"""The harness under damaged files, kills and bad input: nothing lost, nothing misread."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.records import check_record, load_records, read_record, set_aside


def run(results, *extra):
    return main(["run", "--tasks", "BallRun", "--profile", "smoke", "--results", str(results),
                 "--jobs", "1", "--quiet", *extra])


def records_in(results):
    return sorted(p for p in results.rglob("thr*-seed*.json")
                  if not p.name.endswith(".error.json"))


# ---------------------------------------------------------------- damaged records (item 2)

GOOD = {"schema": 1, "status": "ok", "method": "BC-All", "task": "CarRun", "suite": "bullet",
        "seed": 0, "threshold": 10.0, "normalized_reward": 0.5, "normalized_cost": 1.0,
        "profile": "quick", "steps": 100, "data_source": "local"}


def test_check_record_names_what_is_wrong():
    assert check_record(GOOD) is None
    assert "not an object" in check_record([GOOD])
    for field in ("method", "task", "suite", "seed", "normalized_reward", "normalized_cost"):
        assert repr(field) in check_record({k: v for k, v in GOOD.items() if k != field})
    assert "not a number" in check_record({**GOOD, "normalized_cost": "1.3"})
    assert "nan" in check_record({**GOOD, "normalized_reward": float("nan")})
    assert "whole number" in check_record({**GOOD, "seed": 1.5})
    assert "status" in check_record({**GOOD, "status": "error"})


def _write(folder, name, payload):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_report_leaves_damaged_records_out_and_says_so(tmp_path, capsys):
    cell = tmp_path / "bullet" / "CarRun" / "BC-All"
    for seed, cost in ((0, 1.0), (1, 2.0)):
        _write(cell, f"thr10-seed{seed}-abc.json", {**GOOD, "seed": seed,
                                                     "normalized_cost": cost})
    # each would bend the cell (cost 1.5) if it were read in
    _write(cell, "thr10-seed2-abc.json", {k: v for k, v in {**GOOD, "seed": 2}.items()
                                          if k != "normalized_reward"})
    _write(cell, "thr10-seed3-abc.json", json.dumps({**GOOD, "seed": 3})[:40])  # truncated
    _write(cell, "thr10-seed4-abc.json", [1, 2])
    _write(cell, "thr10-seed5-abc.json", {k: v for k, v in {**GOOD, "seed": 5}.items()
                                          if k != "method"})
    _write(cell, "thr10-seed6-abc.json", {**GOOD, "seed": 0, "normalized_cost": 9.0})  # key
    scan = load_records(tmp_path)
    assert sorted(r["seed"] for r in scan) == [0, 1] and len(scan.damaged) == 5
    assert main(["report", "--results", str(tmp_path), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "1.5" in out  # the mean of the two valid records only
    assert main(["report", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 damaged record(s) left out" in out and "thr10-seed3-abc.json" in out
    assert "Traceback" not in out


def test_run_sets_damaged_records_aside_and_redoes_their_jobs(local_ballrun, tmp_path, capsys):
    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All") == 0
    first = records_in(results)
    assert len(first) == 3
    original = first[0].read_text()
    first[0].write_text(original[: len(original) // 2])  # a torn write
    capsys.readouterr()
    assert main(["status", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert _status_lines(out)["bullet", "BC-All"] == ["0", "0", "0", "1", "1"]  # not done
    assert f"{first[0]}:" in out and "damaged record" in out  # named, with what is wrong
    assert run(results, "--methods", "BC-All") == 0
    out = capsys.readouterr().out
    assert "damaged record" in out and "moved to" in out and "1 to run" in out
    kept = first[0].with_name(first[0].name + ".damaged")
    assert kept.read_text() == original[: len(original) // 2]  # kept, not deleted
    record, problem = read_record(first[0])
    assert problem is None and record["seed"] == 0  # redone
    assert [p.name for p in records_in(results)] == [p.name for p in first]


def test_set_aside_never_overwrites(tmp_path):
    path = _write(tmp_path, "thr10-seed0-a.json", "{")
    first = set_aside(path)
    path = _write(tmp_path, "thr10-seed0-a.json", "[")
    second = set_aside(path)
    assert first != second and first.read_text() == "{" and second.read_text() == "["


# ------------------------------------------------------ files readable by colleagues (item 8)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_every_file_follows_the_umask(data_dirs, tmp_path, umask, mode):
    """Datasets, their cards, records, plans, checkpoints, curves: every file as open() would
    make it under the process umask, so a colleague sharing the folder reads them all."""
    from tasks.files import umask_mode

    old = os.umask(umask)
    try:
        assert umask_mode() == mode and os.umask(umask) == umask  # read, not changed
        assert main(["collect", "--tasks", "BallRun", "--profile", "smoke", "--jobs", "1"]) == 0
        results = tmp_path / "results"
        assert run(results, "--methods", "BC-All,LSPC", "--eval-every", "5") == 0
    finally:
        os.umask(old)
    files = [p for folder in (results, *data_dirs) for p in Path(folder).rglob("*")
             if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".hdf5", ".pt", ".csv"} <= kinds, kinds
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# ------------------------------------------------------- plans and status (items 3, 4, 6)


def _status_lines(out):
    return {tuple(row.split()[:2]): row.split()[2:] for row in out.splitlines()
            if row.startswith("bullet")}


def test_status_of_a_moved_folder_from_anywhere(local_ballrun, tmp_path, capsys, monkeypatch):
    import shutil

    first = tmp_path / "first"
    assert run(first, "--methods", "BC-All") == 0
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["status", "--results", str(moved)]) == 0
    assert _status_lines(capsys.readouterr().out)["bullet", "BC-All"] == ["1", "0", "0", "0", "1"]
    assert main(["status", "--results", "moved"]) == 0  # relative to where it is asked from
    assert _status_lines(capsys.readouterr().out)["bullet", "BC-All"] == ["1", "0", "0", "0", "1"]


def test_an_unreadable_plan_is_named_not_a_traceback(local_ballrun, tmp_path, capsys):
    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All") == 0
    (results / ".plans" / "broken.json").write_text("[1, 2]")
    (results / ".plans" / "torn.json").write_text('{"jobs": [')
    (results / ".plans" / "alien.json").write_text('{"jobs": [{"what": 1}]}')
    capsys.readouterr()
    assert main(["status", "--results", str(results)]) == 2
    out, err = capsys.readouterr()
    assert "broken.json: not a plan" in err and "torn.json: unreadable plan" in err
    assert "alien.json" in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 3  # one line a plan
    assert _status_lines(out)["bullet", "BC-All"] == ["1", "0", "0", "0", "1"]  # the rest shown


FAILS_ON_SMALL_DATA = '''
import os

from algorithms.bc import BCAll


class Picky(BCAll):
    """BC that fails while PICKY_FAILS=1 (a data problem, fixed later)."""

    def train_step(self, batch):
        if os.environ.get("PICKY_FAILS") == "1":
            raise RuntimeError("too little data")
        return super().train_step(batch)
'''


def test_failed_jobs_exit_non_zero_and_superseded_failures_leave_status(
        local_ballrun, tmp_path, capsys, monkeypatch):
    (tmp_path / "picky.py").write_text(FAILS_ON_SMALL_DATA)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = tmp_path / "results"
    args = ["--method-module", "picky:Picky", "--methods", "Picky"]
    monkeypatch.setenv("PICKY_FAILS", "1")
    assert run(results, *args) == 1
    assert run(results, *args) == 1  # standing failed: still not done
    assert "1 failed earlier" in capsys.readouterr().out
    assert main(["status", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert _status_lines(out)["bullet", "Picky"] == ["0", "0", "1", "0", "1"]
    assert "--retry-failed" in out and "delete its .error.json" in out

    # the data changes (a new file, a new job hash): the old failure is superseded
    from helpers import rollout_arrays
    from tasks.datasets import local_path, write_dsrl_file
    from tasks.registry import get_task

    spec = get_task("BallRun")
    write_dsrl_file(local_path(spec, "smoke"), rollout_arrays(spec, episodes=31, seed=1),
                    {"source": "local", "seed": 1})
    monkeypatch.setenv("PICKY_FAILS", "0")
    assert run(results, *args) == 0
    capsys.readouterr()
    assert main(["status", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert _status_lines(out)["bullet", "Picky"] == ["1", "0", "0", "0", "1"]
    assert "superseded" in out and "--retry-failed" not in out


# ------------------------------------------------------------ numbers out of range (item 5)


@pytest.mark.parametrize("flag, value", [
    ("--steps", "0"), ("--steps", "-5"), ("--seeds", "-1"), ("--seeds", "0,0"),
    ("--seeds", "a"), ("--checkpoint-every", "-1"), ("--eval-every", "-3"), ("--jobs", "-3"),
    ("--steps", "1.5")])
def test_out_of_range_numbers_are_refused_when_parsed(flag, value, tmp_path, capsys):
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_:
        run(results, "--methods", "BC-All", f"{flag}={value}")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err and err.count("\n") == 1
    assert not results.exists()


@pytest.mark.parametrize("argv", [
    ["collect", "--tasks", "BallRun", "--seed", "-1"],
    ["speed", "--method", "BC-All", "--steps", "0"],
    ["speed", "--method", "BC-All", "--threads", "0"],
    ["transfer", "--from", "easysparse", "--jobs", "-1"]])
def test_other_commands_check_their_numbers(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and err.count("\n") == 1


# --------------------------------------------------------- plugins and method names (4, 7)

PLUGINS = '''
from algorithms.bc import BCAll


class Dots(BCAll):
    name = ".."


class Impostor(BCAll):
    name = "BC-All"


class Spaced(BCAll):
    name = "my method"


class NotAMethod:
    pass
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    import sys

    (tmp_path / "plugins_19.py").write_text(PLUGINS + "\n")
    (tmp_path / "raises_19.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("plugins_19", "raises_19"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("spec, message", [
    ("plugins_19:Dots", "not allowed"), ("plugins_19:Spaced", "not allowed"),
    ("plugins_19:Impostor", "already taken"), ("plugins_19:NotAMethod", "not an OfflineMethod"),
    ("raises_19:X", "broken at import")])
def test_method_modules_are_checked_once(spec, message, plugins, local_ballrun, tmp_path,
                                         capsys):
    from algorithms import METHODS, BCAll

    results = tmp_path / "results"
    assert run(results, "--method-module", spec, "--methods", "BC-All") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert METHODS["BC-All"] is BCAll and not results.exists()


def test_replacing_a_method_is_said_explicitly(plugins, local_ballrun, tmp_path, monkeypatch):
    import algorithms

    monkeypatch.setattr(algorithms, "METHODS", dict(algorithms.METHODS))
    results = tmp_path / "results"
    assert run(results, "--method-module", "plugins_19:Impostor", "--replace-method", "BC-All",
               "--methods", "BC-All") == 0
    assert algorithms.METHODS["BC-All"].__name__ == "Impostor"


def test_empty_methods_is_an_error(local_ballrun, tmp_path, capsys):
    assert run(tmp_path / "r", "--methods", "") == 2
    assert "--methods is empty" in capsys.readouterr().err


def test_a_broken_entry_point_is_skipped_and_named(local_ballrun, tmp_path, monkeypatch,
                                                   capsys):
    import algorithms

    class Entry:
        def __init__(self, name, value, load):
            self.name, self.value, self.dist = name, value, type("D", (), {"name": "acme"})
            self.load = load

    def boom():
        raise ImportError("no module named acme_internal")

    class Impostor(algorithms.BCAll):
        name = "BC-All"

    entries = [Entry("Broken", "acme.broken:M", boom),
               Entry("Thing", "acme.thing:T", lambda: object),
               Entry("BC-All", "acme.impostor:Impostor", lambda: Impostor),
               Entry("Fine", "acme.fine:F", lambda: algorithms.BCAll)]
    monkeypatch.setattr(algorithms.metadata, "entry_points", lambda group: entries)
    monkeypatch.setattr(algorithms, "_entry_points_loaded", False)
    monkeypatch.setattr(algorithms, "METHODS", dict(algorithms.METHODS))
    problems = algorithms.load_entry_points()
    assert len(problems) == 3 and "'Broken'" in problems[0] and "'acme'" in problems[0]
    assert "not an OfflineMethod" in problems[1]
    assert "'BC-All'" in problems[2] and "acme.impostor:Impostor" in problems[2]
    assert algorithms.METHODS["BC-All"] is algorithms.BCAll  # never silently replaced
    assert "Fine" in algorithms.METHODS and "LSPC" in algorithms.METHODS
    assert "warning: skipped the method entry point 'Broken'" in capsys.readouterr().err

    # end to end, as a user meets it: the commands that load plugins still work
    monkeypatch.setattr(algorithms, "_entry_points_loaded", False)
    monkeypatch.setattr(algorithms, "METHODS", dict(algorithms.METHODS))
    assert main(["methods"]) == 0
    out, err = capsys.readouterr()
    assert "LSPC" in out and "BC-All" in out and "Traceback" not in err
    assert "skipped the method entry point 'Broken'" in err
    assert run(tmp_path / "results", "--methods", "BC-All") == 0
    assert len(records_in(tmp_path / "results")) == 3
    record = json.loads(records_in(tmp_path / "results")[0].read_text())
    assert record["method"] == "BC-All"


# ------------------------------------------------- folders, CSVs and messages (items 4, 9)


def test_results_folder_problems_are_one_line(local_ballrun, tmp_path, capsys):
    import shutil
    import subprocess

    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All") == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for argv in (["run", "--tasks", "BallRun", "--methods", "BC-All"],
                 ["transfer", "--from", "easysparse"], ["status"], ["report"], ["claims"],
                 ["plot", "--kind", "sweep"]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--results", str(a_file)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "is a file" in err and err.count("\n") == 1, argv

    # read-only, as a colleague's share: folders without write permission, or for root (whom
    # permissions do not stop) immutable ones (chattr +i)
    folders = [results, *(p for p in results.rglob("*") if p.is_dir())]
    if os.geteuid() != 0:
        lock = [["chmod", "a-w"], ["chmod", "u+w"]]
    elif shutil.which("chattr") and subprocess.run(
            ["chattr", "+i", str(a_file)], capture_output=True).returncode == 0:
        subprocess.run(["chattr", "-i", str(a_file)], check=True)
        lock = [["chattr", "+i"], ["chattr", "-i"]]
    else:
        pytest.skip("running as root where chattr +i is not available: nothing makes a "
                    "folder read-only for root")
    subprocess.run([*lock[0], *map(str, folders)], check=True)
    try:
        capsys.readouterr()
        assert run(results, "--methods", "BC-All") == 0  # everything recorded: writes nothing
        assert "0 to run" in capsys.readouterr().out
        assert run(results, "--methods", "BC-All", "--seeds", "1") == 2
        err = capsys.readouterr().err
        assert "cannot write there" in err and "Traceback" not in err
    finally:
        subprocess.run([*lock[1], *map(str, folders)], check=True)


@pytest.mark.parametrize("content, message", [
    ("", "not a readable CSV"), ("suite,task,method,reward,cost\n", "no rows"),
    ("suite,task,method,reward,cost\nbullet,CarRun,X,high,0.1\n", "'high' is not a number"),
    ("suite,task,method,reward,cost\nbulet,CarRun,X,0.5,0.1\n", "unknown suite 'bulet'"),
    ("suite,task,method,reward,cost\nbullet,CarRn,X,0.5,0.1\n", "CarRn"),
    ("a,b\n1,2\n", "missing column")])
def test_bad_published_csvs_are_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "numbers.csv"
    path.write_text(content)
    assert main(["report", "--input", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    cell = tmp_path / "results" / "bullet" / "CarRun" / "BC-All"  # ours, beside the bad CSV
    _write(cell, "thr10-seed0-abc.json", GOOD)
    assert main(["report", "--results", str(tmp_path / "results"), "--compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_report_messages_say_what_there_is(tmp_path, capsys):
    cell = tmp_path / "bullet" / "CarRun" / "BC-All"
    _write(cell, "thr10-seed0-abc.json", GOOD)
    assert main(["report", "--results", str(tmp_path), "--profile", "paper"]) == 2
    err = capsys.readouterr().err
    assert "none of the 1 records" in err and "profiles quick" in err and "BC-All" in err
    assert main(["report", "--results", str(tmp_path), "--methods", "bc-all"]) == 0
    assert "CarRun" in capsys.readouterr().out
    assert main(["report", "--results", str(tmp_path), "--suite", "bulet"]) == 2
    assert "Did you mean bullet?" in capsys.readouterr().err
    # a method the paper has no number for: its difference is a dash, not "+nan"
    _write(tmp_path / "bullet" / "CarRun" / "LSPC-S-code", "thr10-seed0-abc.json",
           {**GOOD, "method": "LSPC-S-code"})
    assert main(["report", "--results", str(tmp_path), "--compare", "paper"]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "LSPC-S-code" in line and "CarRun" in line]
    assert "nan" not in out and "–" in row


def test_local_data_under_an_official_name_is_not_official(data_dirs, tmp_path, capsys):
    from helpers import rollout_arrays
    from tasks.datasets import DatasetError, load_dataset, official_path, write_dsrl_file
    from tasks.registry import get_task

    spec = get_task("BallRun")
    write_dsrl_file(official_path(spec), rollout_arrays(spec, episodes=3),
                    {"source": "local", "profile": "quick"})
    with pytest.raises(DatasetError, match="collected locally"):
        load_dataset(spec)
    assert main(["datasets", "--tasks", "BallRun", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["source"] == "local" and "under the official name" in row["profile"]
    # nor is it trained on as official data: the run is refused before it plans anything
    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All", "--data", "auto") == 2
    err = capsys.readouterr().err
    assert "collected locally" in err and "Traceback" not in err
    assert not records_in(results) and not list(results.rglob("*.json"))


def test_a_failed_cluster_attempt_leaves_no_plan(local_ballrun, tmp_path, monkeypatch, capsys):
    import contextlib

    from bench import schedule

    @contextlib.contextmanager
    def unreachable(address):
        raise schedule.BackendError(f"no Dask scheduler at {address}")
        yield

    monkeypatch.setattr(schedule, "dask_backend", unreachable)
    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All", "--backend", "dask",
               "--scheduler", "tcp://127.0.0.1:1") == 2
    assert "no Dask scheduler" in capsys.readouterr().err
    assert not list((results / ".plans").glob("*.json"))


# --------------------------------------------------- resumed during evaluation (item 1)

SLOW_ACTOR = '''
import time

from algorithms.bc import BCAll


class SlowBC(BCAll):
    """BC whose every action takes a while, so a kill lands inside an evaluation."""

    def act(self, obs):
        time.sleep(0.02)
        return super().act(obs)
'''


@pytest.fixture
def local_carrun(data_dirs):
    from helpers import rollout_arrays
    from tasks.datasets import local_path, write_dsrl_file
    from tasks.registry import get_task

    spec = get_task("CarRun")
    return write_dsrl_file(local_path(spec, "smoke"), rollout_arrays(spec, episodes=12),
                           {"source": "local", "seed": 0})


def test_a_record_redone_alone_equals_the_unbroken_one(local_carrun, tmp_path):
    """The issue's reproduction: run, copy, delete thr40's record, rerun, compare."""
    import shutil

    from helpers import records

    whole = tmp_path / "A"
    assert main(["run", "--tasks", "CarRun", "--methods", "BC-All", "--profile", "smoke",
                 "--results", str(whole), "--jobs", "1", "--quiet"]) == 0
    copy = tmp_path / "B"
    shutil.copytree(whole, copy)
    (thr40,) = copy.rglob("thr40-seed0-*.json")
    thr40.unlink()
    assert main(["run", "--tasks", "CarRun", "--methods", "BC-All", "--profile", "smoke",
                 "--results", str(copy), "--jobs", "1", "--quiet"]) == 0
    assert records(copy) == records(whole)


def test_sigkill_during_evaluation_then_resume_gives_the_unbroken_records(local_carrun,
                                                                          tmp_path):
    import signal
    import time

    import subprocess
    import sys

    from helpers import ROOT, records

    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "slow_bc.py").write_text(SLOW_ACTOR)
    env = {**os.environ, "PYTHONPATH": f"{plugin}:{ROOT}", "OMP_NUM_THREADS": "1"}

    def bench(*argv, env):
        return subprocess.Popen([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    args = ["run", "--tasks", "CarRun", "--methods", "SlowBC", "--method-module",
            "slow_bc:SlowBC", "--profile", "smoke", "--jobs", "1", "--quiet"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    first = bench(*args, "--results", str(whole), env=env)
    assert first.wait(timeout=600) == 0, first.stdout.read()

    proc = bench(*args, "--results", str(killed), env=env)
    deadline = time.time() + 300
    while not list(killed.rglob("thr10-seed0-*.json")):  # the first threshold recorded
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # in the middle of the second evaluation
    proc.wait()
    assert 1 <= len(records(killed)) < 3
    again = bench(*args, "--results", str(killed), env=env)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert records(killed) == records(whole)


def _children(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat_file.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_ends_the_worker_processes_too(local_ballrun, tmp_path):
    """`kill` on a parallel run: the workers stop with it (they used to train on, orphaned,
    beside the rerun), the message says how to resume, and the rerun trains."""
    import signal
    import subprocess
    import sys
    import time

    from helpers import ROOT

    results = tmp_path / "results"
    env = {**os.environ, "BENCH_THREADS_PER_JOB": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--tasks", "BallRun", "--methods", "BC-All",
         "--seeds", "0,1", "--profile", "smoke", "--steps", "10000000", "--jobs", "2",
         "--results", str(results), "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while len(list(results.rglob("run-seed*"))) < 2:  # both workers are training
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert workers
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command to resume" in out
    deadline = time.time() + 30
    while set(workers) & {int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
                          if _alive(p)}:
        assert time.time() < deadline, "worker processes outlived the terminated run"
        time.sleep(0.2)
    assert not list(results.rglob("thr*-seed*.json"))  # nothing finished, nothing recorded


def _alive(stat_file: Path) -> bool:
    try:
        return stat_file.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------ a plan without data (item 11)


def test_a_dry_run_needs_no_data(data_dirs, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--suite", "all", "--profile", "paper", "--methods", "BC-All,LSPC",
                 "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "training jobs" in out and "estimated:" in out
    assert "no data yet for 28 task(s)" in out
    assert "python -m bench collect --task AntRun --profile paper" in out
    assert not list(results.rglob("*.json"))  # a dry run writes no plan, no record
    # the real run still refuses, in one line, before anything is trained
    assert main(["run", "--tasks", "AntRun", "--profile", "paper", "--methods", "BC-All",
                 "--results", str(results)]) == 2
    assert "no dataset for AntRun" in capsys.readouterr().err


def test_transfer_counts_a_damaged_record_as_missing(tmp_path):
    from bench.plan import Job, RunOptions
    from bench.transfer import missing_transfers, transfer_record_path

    job = Job(method="BC-All", task="easysparse", suite="metadrive", seed=0,
              train_threshold=None, thresholds=(10.0, 20.0), config={}, profile="quick",
              steps=10, eval_episodes=2, data_path="", data_source="local", data_sha256="x",
              job_hash="abc", options=RunOptions(results=str(tmp_path)))
    good = transfer_record_path(tmp_path, "easysparse", "hardmean", "BC-All", 10.0, 0, "abc")
    torn = transfer_record_path(tmp_path, "easysparse", "hardmean", "BC-All", 20.0, 0, "abc")
    _write(good.parent, good.name, {**GOOD, "task": "hardmean", "suite": "metadrive"})
    _write(torn.parent, torn.name, '{"schema": 1, "status": "ok", "meth')
    assert missing_transfers(job, "hardmean") == [(20.0, "BC-All")]
    assert len(load_records(tmp_path, transfer_from="easysparse").damaged) == 1


def test_transfer_and_sweep_readers_name_damaged_records(tmp_path, capsys):
    from bench.transfer import transfer_record_path

    good = transfer_record_path(tmp_path, "easysparse", "hardmean", "BC-All", 10.0, 0, "abc")
    torn = transfer_record_path(tmp_path, "easysparse", "hardmean", "BC-All", 20.0, 0, "abc")
    _write(good.parent, good.name, {**GOOD, "task": "hardmean", "suite": "metadrive"})
    _write(torn.parent, torn.name, '{"schema": 1, "status": "ok", "meth')
    assert main(["report", "--results", str(tmp_path), "--transfer", "easysparse",
                 "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert "left out 1 damaged record(s)" in err and str(torn) in err
    assert "0.5" in out  # the valid record alone

    cell = tmp_path / "sweep" / "bullet" / "CarRun" / "LSPC-O"
    swept = {**GOOD, "method": "LSPC-O", "variant": "epsilon=0.1", "config": {"epsilon": 0.1}}
    _write(cell, "thr10-seed0-abc.json", swept)
    _write(cell, "thr10-seed1-abc.json", {**swept, "seed": 1, "normalized_cost": "high"})
    assert main(["report", "--results", str(tmp_path / "sweep"), "--sweep", "epsilon",
                 "--plot", str(tmp_path / "sweep.png")]) == 0
    out, err = capsys.readouterr()
    assert "left out 1 damaged record(s)" in err and "thr10-seed1-abc.json" in err
    (row,) = [line for line in out.splitlines() if "LSPC-O" in line]
    assert row.split()[-1] == "1"  # n: the damaged one is not averaged in


def test_an_interrupted_collection_says_its_segments_are_kept(data_dirs, monkeypatch, capsys):
    import bench.cli as cli
    import tasks.collect

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks.collect, "collect_task", interrupted)
    assert cli.main(["collect", "--tasks", "BallRun", "--profile", "smoke", "--jobs", "1"]) == 130
    err = capsys.readouterr().err
    assert "segments are kept" in err and "records" not in err and "Traceback" not in err


def test_status_tells_the_pace_and_the_time_left_of_a_running_job(tmp_path):
    from types import SimpleNamespace

    from bench.status import pace

    job = SimpleNamespace(run_dir=lambda: tmp_path)
    assert pace(job) == "starting"  # no progress file yet
    progress = {"step": 25_000, "steps": 100_000, "checkpoint_step": 25_000}
    (tmp_path / "progress.json").write_text(json.dumps({**progress, "updated": 1000.0}))
    assert pace(job) == "step 25,000/100,000"  # a file of an older run: no start recorded
    # resumed at 10,000 steps 1,500 s ago: 10 steps/s, 75,000 steps left = 2 h 5 min
    started = {"session_step": 10_000, "session_started": 0.0}
    (tmp_path / "progress.json").write_text(json.dumps(
        {**progress, **started, "updated": 1500.0}))
    assert pace(job) == "step 25,000/100,000, 10 steps/s, 2 h 5 min left"
    (tmp_path / "progress.json").write_text(json.dumps(
        {**progress, "step": 99_400, **started, "updated": 8940.0}))
    assert pace(job) == "step 99,400/100,000, 10 steps/s, 1 min left"
    (tmp_path / "progress.json").write_text(json.dumps(
        {**progress, "step": 10_000, **started, "updated": 5.0}))
    assert pace(job) == "step 10,000/100,000"  # not moved since it started: no pace yet


def test_status_says_what_the_jobs_left_cost_at_the_speeds_seen(local_ballrun, tmp_path, capsys):
    import re

    from bench.plan import load_plans, plan_jobs, save_plan
    from bench.status import seconds_left, time_left
    from tasks.registry import get_task

    results = tmp_path / "results"
    assert run(results, "--methods", "BC-All") == 0
    capsys.readouterr()
    assert main(["status", "--results", str(results)]) == 0
    assert "left:" not in capsys.readouterr().out  # all done
    (done,) = load_plans(results)
    records = [json.loads(path.read_text())
               for path in done.run_dir().parent.glob("thr*-seed0-*.json")]
    assert len(records) == 3  # one a threshold
    rate = np.median([r["steps"] / r["train_seconds"] for r in records])
    evaluation = np.median([r["eval_seconds"] for r in records])
    # two more seeds planned and not run (as a stopped `bench run` leaves them), one of them
    # a third through its training
    todo = plan_jobs([get_task("BallRun")], ["BC-All"], [1, 2], "smoke", results, "local")
    save_plan(todo, results)
    todo[0].run_dir().mkdir(parents=True)
    (todo[0].run_dir() / "progress.json").write_text(json.dumps(
        {"step": todo[0].steps // 3, "steps": todo[0].steps}))
    seconds = (todo[0].steps - todo[0].steps // 3 + todo[1].steps) / rate + 2 * 3 * evaluation
    assert seconds_left([done, *todo], results) == (pytest.approx(seconds), 2, 0)
    assert main(["status", "--results", str(results)]) == 0
    assert re.search(r"^left: about \d+ core-minutes for 2 job\(s\), at the speeds seen",
                     capsys.readouterr().out, re.MULTILINE)
    # a method nothing here has timed is counted apart, not guessed
    (cpq,) = plan_jobs([get_task("BallRun")], ["CPQ"], [0], "smoke", results, "local")[:1]
    assert time_left([cpq, todo[1]], results).endswith(
        "for 1 job(s), at the speeds seen (records, else the speed cache of `bench speed` and "
        "dry runs); 1 more job(s) of methods whose speed nothing here has seen")


# ---------------------------------------------------------------- bf16 without bf16 arithmetic

@pytest.mark.parametrize("slowdown, refused", [(51.0, True), (0.4, False)])
def test_bf16_is_refused_where_the_processor_emulates_it(slowdown, refused, local_ballrun,
                                                         tmp_path, capsys, monkeypatch):
    """An AVX2-only processor runs bf16 matmuls 40-100x slower than fp32: training there is
    refused before anything is written, with the way out; one with bf16 arithmetic trains."""
    import bench.speed

    monkeypatch.delenv("BENCH_ALLOW_SLOW_BF16", raising=False)
    monkeypatch.setattr(bench.speed, "bf16_matmul_slowdown", lambda: slowdown)
    results = tmp_path / "results"
    code = run(results, "--methods", "BC-All", "--precision", "bf16", "--seeds", "0")
    if refused:
        assert code == 2 and not results.exists()
        err = capsys.readouterr().err
        assert "no bfloat16 arithmetic" in err and "51x" in err and "--precision fp32" in err
        assert "Traceback" not in err
        monkeypatch.setenv("BENCH_ALLOW_SLOW_BF16", "1")  # the way round it, said in the line
        assert run(results, "--methods", "BC-All", "--precision", "bf16", "--seeds", "0") == 0
    else:
        assert code == 0
    trained = [json.loads(path.read_text()) for path in records_in(results)]
    assert trained and {record.get("precision") for record in trained} == {"bf16"}
    # fp32 never asks
    monkeypatch.setattr(bench.speed, "bf16_matmul_slowdown", lambda: 1 / 0)
    assert run(results, "--methods", "BC-All", "--seeds", "0") == 0
    assert len(records_in(results)) == 2 * len(trained)

