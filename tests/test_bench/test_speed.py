"""`bench speed`: what it reports is real (FLOPs counted, steps timed), and bad input is clean.

Speed targets themselves live in benchmarks/ (pytest-benchmark), not here."""

import json

import pytest
import torch

from bench.cli import main


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_speed_json_counts_the_step_of_the_method(capsys):
    assert main(["speed", "--method", "bc-all", "--steps", "2", "--rounds", "1",
                 "--no-reference", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "BC-All" and result["batch_size"] == 512  # OSRL's batch
    # AntRun shapes, 33 -> 256 -> 256 -> 8, batch 512: forward 2*512*(33*256+256*256+256*8),
    # backward twice that less the input gradient of the first layer
    forward = 2 * 512 * (33 * 256 + 256 * 256 + 256 * 8)
    expected = 3 * forward - 2 * 512 * 33 * 256
    assert result["gflop_per_step"] * 1e9 == pytest.approx(expected, rel=1e-6)
    assert result["steps_per_s"] > 0 and "osrl_steps_per_s" not in result


def test_speed_of_an_unknown_method_is_one_clear_message(capsys):
    assert main(["speed", "--method", "BCQ-Lagg"]) != 0
    err = capsys.readouterr().err
    assert "unknown method 'BCQ-Lagg'" in err and "BCQ-Lag" in err and "Traceback" not in err


def test_speed_in_bf16_times_the_fp32_step_and_the_reference_in_the_same_run(capsys):
    assert main(["speed", "--method", "LSPC", "--steps", "1", "--rounds", "1", "--batch",
                 "64", "--precision", "bf16", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["precision"] == "bf16" and result["batch_size"] == 64
    for key in ("steps_per_s", "fp32_steps_per_s", "reference_steps_per_s",
                "speedup_vs_fp32", "speedup_vs_reference", "fp32_speedup_vs_reference",
                "bf16_matmul_peak_gflop_per_s", "matmul_peak_gflop_per_s"):
        assert result[key] > 0, key
    assert result["speedup_vs_fp32"] == pytest.approx(
        result["steps_per_s"] / result["fp32_steps_per_s"])
    # the same update in both precisions: the same matmuls, the same FLOPs counted
    assert result["gflop_per_step"] == pytest.approx(result["fp32_gflop_per_step"])


def test_speed_of_several_methods_in_bf16_is_one_table_with_the_ratios(capsys):
    assert main(["speed", "--method", "BC-All,COptiDICE", "--steps", "1", "--rounds", "1",
                 "--batch", "32", "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("bf16 steps/s", "fp32 steps/s", "fp32 reference steps/s", "bf16 / fp32",
                   "bf16 / reference", "fp32 / reference"):
        assert column in header
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["BC-All", "COptiDICE"]
