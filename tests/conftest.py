import os

import numpy as np
import pytest

from tasks.datasets import local_path, write_dsrl_file
from tasks.registry import get_task

os.environ.setdefault("DSRL_SUPPRESS_IMPORT_ERROR", "1")
# one torch thread per job in the runs tests make (in process and in subprocesses)
os.environ.setdefault("BENCH_THREADS_PER_JOB", "1")


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """Official and local data folders of a test's own, so nothing of the user's is touched."""
    official, local = tmp_path / "dsrl", tmp_path / "local"
    monkeypatch.setenv("DSRL_DATASET_DIR", str(official))
    monkeypatch.setenv("BENCH_LOCAL_DATA_DIR", str(local))
    return official, local


def rollout_arrays(spec, episodes: int, seed: int = 0) -> dict:
    """DSRL-layout arrays from real simulator rollouts of a noisy forward-biased policy."""
    from tasks.envs import make_env

    env = make_env(spec)
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "costs",
                           "terminals", "timeouts")}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        bias, scale = rng.uniform(-0.5, 1.0), rng.uniform(0.1, 1.0)
        done = False
        while not done:
            action = np.clip(rng.normal(bias, scale, spec.act_dim), -1, 1).astype(np.float32)
            next_obs, reward, term, trunc, info = env.step(action)
            for key, value in zip(out, (obs, next_obs, action, reward, info["cost"], term, trunc)):
                out[key].append(value)
            obs, done = next_obs, term or trunc
    env.close()
    return {k: np.asarray(v) for k, v in out.items()}


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="torch device the device-aware tests train on (cpu, cuda): "
                          "`pytest tests/test_methods.py --device cuda` on a GPU machine")


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
