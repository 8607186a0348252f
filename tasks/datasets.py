"""Offline datasets in DSRL's HDF5 layout: finding, validating, loading and writing them.

Two sources, never mixed up:
- "dsrl": the official file, under its official name in DSRL_DATASET_DIR (default
  ~/.dsrl/datasets, as the dsrl package).
- "local": a file this harness collected from the real simulator (`python -m bench collect`),
  in BENCH_LOCAL_DATA_DIR (default ~/.dsrl/local), named `<Task>-local-<profile>.hdf5`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.files import cache_dir, write_atomic, write_text_atomic
from tasks.registry import TaskSpec

KEYS = ("observations", "next_observations", "actions", "rewards", "costs", "terminals",
        "timeouts")
SOURCES = ("auto", "dsrl", "local")


class DatasetError(RuntimeError):
    """A dataset is missing, unreadable or malformed; the message names the file and the fix."""


def official_dir() -> Path:
    return Path(os.environ.get("DSRL_DATASET_DIR", os.path.expanduser("~/.dsrl/datasets")))


def local_dir() -> Path:
    return Path(os.environ.get("BENCH_LOCAL_DATA_DIR", os.path.expanduser("~/.dsrl/local")))


def official_path(spec: TaskSpec) -> Path:
    return official_dir() / spec.dataset_file


def local_path(spec: TaskSpec, profile: str) -> Path:
    return local_dir() / f"{spec.name}-local-{profile}.hdf5"


@dataclass
class Dataset:
    """A validated dataset: float32 arrays keyed as DSRL, plus where it came from."""

    arrays: dict[str, np.ndarray]
    path: Path
    source: str  # "dsrl" or "local"
    sha256: str
    attrs: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.arrays["rewards"])

    def provenance(self) -> dict:
        return {"data_source": self.source, "dataset_file": self.path.name,
                "dataset_sha256": self.sha256, "dataset_attrs": self.attrs}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """A hash of the transitions alone (each of KEYS: its name, dtype, shape and bytes), not of
    the file: a local file's card names the harness commit that wrote it, so the same data
    written at two commits has two file hashes and one arrays hash."""
    digest = hashlib.sha256()
    for key in KEYS:
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{value.dtype.str}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def file_arrays_sha256(path: Path, file_sha: str | None = None) -> str:
    """arrays_sha256 of the transitions a DSRL-layout file holds. Given the file's sha256
    (which names its bytes, hence its transitions), the answer of an earlier call is read
    from a cache (one small file per data file, under $BENCH_CACHE_DIR, default
    ~/.cache/bench): planning a run reads each data file once, not twice (a MetaDrive file
    is gigabytes). Without it, or with no usable cache, the transitions are read and hashed."""
    cached = _arrays_cache(file_sha) if file_sha else None
    if cached is not None:
        try:
            value = cached.read_text().strip()
            if _is_sha256(value):
                return value
        except OSError:
            pass
    arrays, _ = read_dsrl_file(path)
    value = arrays_sha256(arrays)
    if cached is not None:
        try:
            write_text_atomic(cached, value + "\n")
        except OSError:
            pass  # a read-only home: no cache, the same answer
    return value


def _arrays_cache(file_sha: str) -> Path | None:
    return cache_dir() / "arrays-sha256" / file_sha if _is_sha256(file_sha) else None


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def resolve_path(spec: TaskSpec, source: str = "auto", profile: str = "quick") -> tuple[Path, str]:
    """Where the task's data is, and which source it is; a clear DatasetError if it is nowhere,
    or if a locally collected file sits under the official name (every reader, planner and
    record would then call it official DSRL data)."""
    if source not in SOURCES:
        raise DatasetError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)}")
    official, local = official_path(spec), local_path(spec, profile)
    if source in ("auto", "dsrl") and official.exists():
        _refuse_local_under_official_name(official, spec, profile)
        return official, "dsrl"
    if source in ("auto", "local") and local.exists():
        return local, "local"
    looked = {"auto": [official, local], "dsrl": [official], "local": [local]}[source]
    raise DatasetError(
        f"no dataset for {spec.name}: looked for {' and '.join(str(p) for p in looked)}. "
        f"Either place the official DSRL file {spec.dataset_file} in {official_dir()} "
        f"(set DSRL_DATASET_DIR to use another folder; it is at {spec.dataset_url}), "
        f"or collect one from the simulator: "
        f"`python -m bench collect --task {spec.name} --profile {profile}`.")


def _refuse_local_under_official_name(path: Path, spec: TaskSpec, profile: str) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {key: _plain(value) for key, value in f.attrs.items()}
    except OSError:
        return  # not readable: read_dsrl_file names that when the file is read
    if attrs.get("source") == "local":
        raise DatasetError(
            f"{path} has the official file's name but its attributes say it was collected "
            f"locally ({attrs.get('collector', 'bench collect')}); move it to "
            f"{local_path(spec, str(attrs.get('profile', profile)))} so that nothing reports it "
            "as official DSRL data")


def load_dataset(spec: TaskSpec, source: str = "auto", profile: str = "quick") -> Dataset:
    path, kind = resolve_path(spec, source, profile)
    arrays, attrs = read_dsrl_file(path, spec)
    return Dataset(arrays, path, kind, file_sha256(path), attrs)


def read_dsrl_file(path: Path, spec: TaskSpec | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read and validate one DSRL-layout file; shapes are checked against the task's spaces."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in KEYS if key not in handle]
            if missing:
                raise DatasetError(
                    f"{path}: missing key(s) {', '.join(missing)}; a DSRL file holds "
                    f"{', '.join(KEYS)}. Replace the file (official download or `bench collect`).")
            arrays = {key: handle[key][()] for key in KEYS}
            attrs = {key: _plain(value) for key, value in handle.attrs.items()}
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise DatasetError(
            f"{path}: not a readable HDF5 file ({err}). Delete it, then download the official "
            "file again or run `python -m bench collect`.") from err
    return validate_arrays(arrays, spec, where=str(path)), attrs


def _plain(value):
    """An HDF5 attribute as plain JSON-able Python (inf becomes "inf": strict JSON has none)."""
    if isinstance(value, bytes):
        value = value.decode()
    elif isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def validate_arrays(arrays: dict[str, np.ndarray], spec: TaskSpec | None,
                    where: str = "dataset") -> dict[str, np.ndarray]:
    """Squeeze (N, 1) columns, cast to float32, and reject wrong shapes, dtypes and NaN/inf."""
    out = {}
    size = len(arrays["observations"])
    if size == 0:
        raise DatasetError(f"{where}: the dataset is empty")
    for key in KEYS:
        value = np.asarray(arrays[key])
        if value.dtype.kind not in "fiub":
            raise DatasetError(f"{where}: {key} has dtype {value.dtype}, expected numbers")
        if key in ("rewards", "costs", "terminals", "timeouts") and value.shape == (size, 1):
            value = value[:, 0]
        if len(value) != size:
            raise DatasetError(f"{where}: {key} has {len(value)} rows, observations have {size}")
        out[key] = value.astype(np.float32)
    expected = {"rewards": (size,), "costs": (size,), "terminals": (size,), "timeouts": (size,)}
    if spec is not None:
        expected.update(observations=(size, spec.obs_dim), next_observations=(size, spec.obs_dim),
                        actions=(size, spec.act_dim))
    for key, shape in expected.items():
        if out[key].shape != shape:
            raise DatasetError(
                f"{where}: {key} has shape {out[key].shape}, expected {shape}"
                + (f" for {spec.name}" if spec else "") + "; the file belongs to another task "
                "or simulator version")
    for key in ("observations", "next_observations", "actions", "rewards", "costs"):
        bad = ~np.isfinite(out[key])
        if bad.any():
            rows = np.unique(np.nonzero(bad)[0])
            raise DatasetError(
                f"{where}: {key} holds {int(bad.sum())} NaN/inf value(s) (first at row "
                f"{int(rows[0])}); the file is corrupt, replace it")
    return out


def write_dsrl_file(path: Path, arrays: dict[str, np.ndarray], attrs: dict) -> Path:
    """Write a DSRL-layout file atomically (temp file, then rename), gzip as DSRL does."""
    import h5py

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as handle:
            for key in KEYS:
                value = np.asarray(arrays[key])
                dtype = np.bool_ if key in ("terminals", "timeouts") else np.float32
                handle.create_dataset(key, data=value.astype(dtype), compression="gzip")
            for key, value in attrs.items():
                handle.attrs[key] = value

    return write_atomic(Path(path), write)


@dataclass(frozen=True)
class Trajectories:
    """Where each trajectory starts and ends in a flat dataset, with its returns."""

    starts: np.ndarray
    ends: np.ndarray  # exclusive
    reward_returns: np.ndarray
    cost_returns: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def mask(self, keep: np.ndarray, size: int) -> np.ndarray:
        """Transition mask of the trajectories selected by `keep`."""
        out = np.zeros(size, dtype=bool)
        for start, end in zip(self.starts[keep], self.ends[keep]):
            out[start:end] = True
        return out


def done_mask(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Where a trajectory ends: terminal or timeout (DSRL's pre-processing; a batch of tensors
    has algorithms.nets.done_flags)."""
    return (arrays["terminals"] > 0) | (arrays["timeouts"] > 0)


def split_trajectories(arrays: dict[str, np.ndarray]) -> Trajectories:
    """Trajectories end at terminals or timeouts, as DSRL's pre-processing splits them."""
    done = done_mask(arrays)
    ends = np.nonzero(done)[0] + 1
    size = len(done)
    if len(ends) == 0 or ends[-1] != size:
        ends = np.append(ends, size)  # a trailing unfinished trajectory still counts
    starts = np.concatenate([[0], ends[:-1]])
    reward_cumsum = np.concatenate([[0.0], np.cumsum(arrays["rewards"], dtype=np.float64)])
    cost_cumsum = np.concatenate([[0.0], np.cumsum(arrays["costs"], dtype=np.float64)])
    return Trajectories(starts, ends, reward_cumsum[ends] - reward_cumsum[starts],
                        cost_cumsum[ends] - cost_cumsum[starts])


def to_go(values: np.ndarray, trajectories: Trajectories) -> np.ndarray:
    """Undiscounted sum from each step to the end of its trajectory (returns-to-go), float64."""
    total = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    owner = np.repeat(np.arange(len(trajectories)), trajectories.ends - trajectories.starts)
    return total[trajectories.ends[owner]] - total[:-1]


def download_official(spec: TaskSpec, mirror: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch the official file into DSRL_DATASET_DIR (from `mirror`/<file> or its public URL).

    The file is validated before it takes its official name, so a broken download never
    passes for the official data.
    """
    import urllib.error
    import urllib.request

    target = official_path(spec)
    if target.exists():
        return target
    url = f"{mirror.rstrip('/')}/{spec.dataset_file}" if mirror else spec.dataset_url

    def fetch(tmp: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
        except (urllib.error.URLError, OSError) as err:
            raise DatasetError(
                f"could not download {url} ({err}). Without network, place the file in "
                f"{official_dir()} by hand, or collect local data: "
                f"`python -m bench collect --task {spec.name}`.") from err
        read_dsrl_file(tmp, spec)  # validated before it takes the official name

    return write_atomic(target, fetch)
