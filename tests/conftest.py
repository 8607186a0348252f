import os

import pytest

from helpers import rollout_arrays
from tasks.datasets import local_path, write_dsrl_file
from tasks.registry import get_task

os.environ.setdefault("DSRL_SUPPRESS_IMPORT_ERROR", "1")
# one torch thread per job in the runs tests make (in process and in subprocesses)
os.environ.setdefault("BENCH_THREADS_PER_JOB", "1")
# the bf16 tests train a few steps: on a processor without bfloat16 arithmetic that is slow,
# not wrong, and `bench run` would refuse it (test_robustness tests the refusal)
os.environ.setdefault("BENCH_ALLOW_SLOW_BF16", "1")


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """Official and local data folders of a test's own, so nothing of the user's is touched."""
    official, local = tmp_path / "dsrl", tmp_path / "local"
    monkeypatch.setenv("DSRL_DATASET_DIR", str(official))
    monkeypatch.setenv("BENCH_LOCAL_DATA_DIR", str(local))
    return official, local


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="torch device the device-aware tests train on (cpu, cuda): "
                          "`pytest tests/test_algorithms/test_methods.py --device cuda` on a GPU "
                          "machine")


@pytest.fixture(scope="session")
def device(request):
    """The torch device of the tests that take it: cpu in CI, cuda on a GPU machine. TF32 is
    off there, so fp32 results can be held against the CPU's."""
    import torch

    name = request.config.getoption("--device")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise pytest.UsageError(f"--device {name}: torch sees no CUDA device here")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return name


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # two intra-op threads on a busy 2-core machine are up to 50x slower than one
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def local_ballrun(data_dirs):
    arrays = rollout_arrays(get_task("BallRun"), episodes=30, seed=0)
    path = write_dsrl_file(local_path(get_task("BallRun"), "smoke"), arrays,
                           {"source": "local", "seed": 0})
    return path, arrays


@pytest.fixture(autouse=True)
def _own_speed_cache(tmp_path, monkeypatch):
    # bench speed and dry runs remember speeds per host; tests keep theirs to themselves
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "speed-cache"))
