import h5py
import numpy as np
import pytest

from tasks.datasets import (DatasetError, arrays_sha256, file_sha256, load_dataset, local_path,
                            official_path, read_dsrl_file, split_trajectories, write_dsrl_file)
from tasks.registry import get_task

SPEC = get_task("BallRun")  # observations 7, actions 2


def dsrl_like(n=250, episode=100, obs_dim=7, act_dim=2, column=True):
    """Arrays shaped as the official files store them: (N, 1) columns, float64, bool flags."""
    rng = np.random.default_rng(1)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[episode - 1::episode] = True
    terminals = np.zeros(n, dtype=bool)
    terminals[-1] = True
    shape = (n, 1) if column else (n,)
    return {"observations": rng.normal(size=(n, obs_dim)),
            "next_observations": rng.normal(size=(n, obs_dim)),
            "actions": rng.uniform(-1, 1, size=(n, act_dim)),
            "rewards": rng.normal(size=shape), "costs": rng.integers(0, 2, size=shape),
            "terminals": terminals.reshape(shape), "timeouts": timeouts.reshape(shape)}


def write_raw(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)


def test_loads_the_official_layout_from_DSRL_DATASET_DIR(data_dirs):
    arrays = dsrl_like()
    write_raw(official_path(SPEC), arrays)
    data = load_dataset(SPEC, "auto", "quick")
    assert data.source == "dsrl" and data.path == official_path(SPEC)
    assert data.arrays["rewards"].shape == (250,) and data.arrays["rewards"].dtype == np.float32
    assert data.arrays["observations"].shape == (250, 7)
    np.testing.assert_allclose(data.arrays["costs"], arrays["costs"][:, 0])
    assert len(data.sha256) == 64


def test_official_file_wins_over_local_and_local_is_found_alone(data_dirs):
    write_dsrl_file(local_path(SPEC, "quick"), dsrl_like(column=False), {"source": "local"})
    local = load_dataset(SPEC, "auto", "quick")
    assert local.source == "local" and local.attrs["source"] == "local"
    write_raw(official_path(SPEC), dsrl_like())
    assert load_dataset(SPEC, "auto", "quick").source == "dsrl"
    assert load_dataset(SPEC, "local", "quick").source == "local"


def test_missing_file_says_where_it_looked_and_both_ways_out(data_dirs):
    official, local = data_dirs
    with pytest.raises(DatasetError) as err:
        load_dataset(SPEC, "auto", "quick")
    message = str(err.value)
    assert str(official / SPEC.dataset_file) in message
    assert str(local / "BallRun-local-quick.hdf5") in message
    assert "python -m bench collect --task BallRun" in message
    assert "DSRL_DATASET_DIR" in message


def test_corrupt_file_names_the_file(data_dirs):
    path = official_path(SPEC)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DatasetError, match="not a readable HDF5 file") as err:
        load_dataset(SPEC)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.pop("costs"), "missing key"),
    (lambda a: a.update(observations=np.zeros((250, 9))), r"observations has shape \(250, 9\)"),
    (lambda a: a.update(actions=np.zeros((250, 3))), r"expected \(250, 2\)"),
    (lambda a: a.update(rewards=np.zeros((249, 1))), "249 rows"),
    (lambda a: a["rewards"].__setitem__((7, 0), np.nan), "NaN/inf.*row 7"),
    (lambda a: a["observations"].__setitem__((3, 1), np.inf), "observations holds 1 NaN/inf"),
])
def test_malformed_files_are_rejected_with_the_problem(tmp_path, mutate, match):
    arrays = dsrl_like()
    mutate(arrays)
    path = tmp_path / "bad.hdf5"
    write_raw(path, arrays)
    with pytest.raises(DatasetError, match=match) as err:
        read_dsrl_file(path, SPEC)
    assert str(path) in str(err.value)


def test_writer_roundtrip_keeps_dsrl_dtypes(tmp_path):
    path = write_dsrl_file(tmp_path / "x.hdf5", dsrl_like(column=False), {"seed": 3})
    with h5py.File(path) as handle:
        assert handle["terminals"].dtype == np.bool_
        assert handle["observations"].dtype == np.float32
        assert handle.attrs["seed"] == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_the_arrays_hash_names_the_data_whatever_card_the_file_carries(tmp_path):
    arrays = dsrl_like(column=False)
    one = write_dsrl_file(tmp_path / "one.hdf5", arrays, {"card": '{"harness_commit": "a"}'})
    two = write_dsrl_file(tmp_path / "two.hdf5", arrays, {"card": '{"harness_commit": "b"}'})
    assert file_sha256(one) != file_sha256(two)  # the card is in the file
    read_one, read_two = (read_dsrl_file(path, SPEC)[0] for path in (one, two))
    assert arrays_sha256(read_one) == arrays_sha256(read_two)
    changed = {**read_two, "rewards": read_two["rewards"].copy()}
    changed["rewards"][0] += 1.0
    assert arrays_sha256(changed) != arrays_sha256(read_one)  # one reward apart
    # a dtype is part of the data: the same numbers as float64 are another dataset
    wider = {**read_one, "costs": read_one["costs"].astype(np.float64)}
    assert read_one["costs"].dtype != np.float64 and arrays_sha256(wider) != arrays_sha256(
        read_one)


def test_trajectories_split_at_terminals_and_timeouts():
    arrays = {"rewards": np.arange(6, dtype=np.float32), "costs": np.array([1, 0, 1, 1, 0, 2.0]),
              "terminals": np.array([0, 1, 0, 0, 0, 0.0]),
              "timeouts": np.array([0, 0, 0, 1, 0, 0.0])}
    trajectories = split_trajectories(arrays)
    assert trajectories.starts.tolist() == [0, 2, 4]
    assert trajectories.ends.tolist() == [2, 4, 6]
    assert trajectories.reward_returns.tolist() == [1, 5, 9]
    assert trajectories.cost_returns.tolist() == [1, 2, 2]
    assert trajectories.mask(np.array([False, True, False]), 6).tolist() == [
        False, False, True, True, False, False]


def test_download_from_a_mirror_validates_before_taking_the_official_name(data_dirs, tmp_path):
    from tasks.datasets import download_official

    mirror = tmp_path / "mirror"
    write_raw(mirror / SPEC.dataset_file, dsrl_like(obs_dim=9))  # wrong task shape
    with pytest.raises(DatasetError, match="observations has shape"):
        download_official(SPEC, mirror.as_uri())
    assert not official_path(SPEC).exists()
    write_raw(mirror / SPEC.dataset_file, dsrl_like())
    assert download_official(SPEC, mirror.as_uri()) == official_path(SPEC)
    assert load_dataset(SPEC).source == "dsrl"
    assert not list(official_path(SPEC).parent.glob("*.download"))


def test_the_arrays_hash_of_a_file_is_read_once_then_cached_by_its_sha256(tmp_path,
                                                                          monkeypatch):
    """Planning reads a data file for its sha256; the transitions' hash of those bytes comes
    from the cache after the first time, and a damaged cache entry is computed again."""
    import tasks.datasets as datasets

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = write_dsrl_file(tmp_path / "one.hdf5", dsrl_like(column=False), {})
    reads = []
    real_read = datasets.read_dsrl_file
    monkeypatch.setattr(datasets, "read_dsrl_file",
                        lambda *a, **k: reads.append(a[0]) or real_read(*a, **k))
    file_sha = file_sha256(path)
    expected = arrays_sha256(real_read(path)[0])
    assert datasets.file_arrays_sha256(path, file_sha) == expected and len(reads) == 1
    assert datasets.file_arrays_sha256(path, file_sha) == expected and len(reads) == 1
    entry = tmp_path / "cache" / "arrays-sha256" / file_sha
    entry.write_text("not a hash\n")
    assert datasets.file_arrays_sha256(path, file_sha) == expected and len(reads) == 2
    assert entry.read_text().strip() == expected  # mended
    assert datasets.file_arrays_sha256(path) == expected and len(reads) == 3  # no sha: reads
