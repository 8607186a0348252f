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
