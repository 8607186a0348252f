"""Speed benchmarks (pytest-benchmark): `tox -e bench` or `pytest benchmarks`.

The fused LSPC step and the straightforward one (algorithms/lspc_reference.py) are timed in
the same session on the same synthetic AntRun-shaped batches at the paper's batch size; the
ratio is printed in the benchmark table (compare the two rows' means).
"""

import dataclasses

import pytest
import torch

from algorithms import build_config, get_method
from algorithms.lspc_reference import ReferenceLSPC
from bench.run import BatchSampler
from bench.speed import synthetic_arrays
from tasks.registry import get_task

SPEC = get_task("AntRun")
BATCH = 1024


@pytest.fixture(scope="module")
def sampler():
    return BatchSampler(synthetic_arrays(SPEC), BATCH, 0, "cpu")


def _lspc():
    cls = get_method("LSPC")[1]
    config = dataclasses.replace(build_config(cls, SPEC.name), batch_size=BATCH)
    torch.manual_seed(0)
    return cls(SPEC, config, None, 0), config


@pytest.mark.benchmark(group="lspc-train-step")
def test_lspc_fused_step(benchmark, sampler):
    model, _ = _lspc()
    batch = sampler.sample()
    benchmark.pedantic(model.train_step, args=(batch,), rounds=10, iterations=2,
                       warmup_rounds=2)


@pytest.mark.benchmark(group="lspc-train-step")
def test_lspc_reference_step(benchmark, sampler):
    _, config = _lspc()
    torch.manual_seed(0)
    reference = ReferenceLSPC(SPEC.obs_dim, SPEC.act_dim, config)
    batch = sampler.sample()
    benchmark.pedantic(reference.train_step, args=(batch,), rounds=10, iterations=2,
                       warmup_rounds=2)


def test_speed_ratio_in_one_run():
    """bench.speed interleaves both steps in one process and reports the ratio."""
    from bench.speed import measure

    result = measure("LSPC", SPEC.name, BATCH, steps=5, rounds=3)
    print(f"\nfused {result['steps_per_s']:.1f} steps/s ({result['gflop_per_s']:.0f} GFLOP/s), "
          f"reference {result['reference_steps_per_s']:.1f} steps/s "
          f"({result['reference_gflop_per_s']:.0f} GFLOP/s), "
          f"peak {result['matmul_peak_gflop_per_s']:.0f} GFLOP/s, "
          f"speedup {result['speedup_steps_per_s']:.2f}x")
    assert result["gflop_per_step"] > 0 and result["reference_gflop_per_step"] > 0
