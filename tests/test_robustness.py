"""The harness under damaged files, kills and bad input: nothing lost, nothing misread."""

from __future__ import annotations

import json
import os
import stat


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
    assert "done" in capsys.readouterr().out
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


def test_records_and_plans_follow_the_umask(local_ballrun, tmp_path):
    old = os.umask(0o022)
    try:
        results = tmp_path / "results"
        assert run(results, "--methods", "BC-All") == 0
    finally:
        os.umask(old)
    files = records_in(results) + sorted((results / ".plans").glob("*.json"))
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
