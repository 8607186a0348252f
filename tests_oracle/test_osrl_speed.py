"""`bench speed` times osrl-lib's step of a baseline beside ours, in one run (here, where the
oracle env has osrl-lib installed)."""

import json

import pytest

from bench.cli import main

pytest.importorskip("osrl.algorithms")


def test_speed_times_osrl_beside_ours_in_one_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))  # not the user's speed cache
    assert main(["speed", "--method", "BC-Safe", "--steps", "2", "--rounds", "1",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # the same network and batch: the same FLOPs, so the ratio is a pure speed ratio
    assert result["osrl_gflop_per_step"] == pytest.approx(result["gflop_per_step"])
    assert result["speedup_vs_osrl"] == pytest.approx(
        result["steps_per_s"] / result["osrl_steps_per_s"])
