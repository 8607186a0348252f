"""Records: one immutable JSON file per evaluated (method, task, threshold, seed, config hash).

Records are the contract between `bench run` and `bench report`. They are written through a
temp file and os.replace, at a path made from their key, and never overwritten.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

SCHEMA = 1


def config_hash(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def slug(name: str) -> str:
    return name.replace("/", "-").replace(" ", "_")


def record_path(results: Path, suite: str, task: str, method: str, threshold: float, seed: int,
                job_hash: str) -> Path:
    return (Path(results) / suite / task / slug(method)
            / f"thr{threshold:g}-seed{seed}-{job_hash}.json")


def artifact_dir(results: Path, suite: str, task: str, method: str, seed: int,
                 job_hash: str) -> Path:
    """Where the training curve and checkpoint of one training run live (beside its records)."""
    return Path(results) / suite / task / slug(method) / f"run-seed{seed}-{job_hash}"


def write_json_atomic(path: Path, payload: dict, overwrite: bool = False) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; records are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, sort_keys=True, default=_jsonable)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def load_records(results: Path, transfer_from: str | None = None) -> list[dict]:
    """Every finished record under `results` (error records and temp files are skipped): the
    main ones, or with `transfer_from` the zero-shot transfer records of that source task
    (kept under results/transfer/<source>/, never mixed into the main tables)."""
    records = []
    root = Path(results)
    if transfer_from is not None:
        paths = sorted((root / "transfer" / transfer_from).rglob("thr*-seed*.json"))
    else:
        paths = [p for p in sorted(root.rglob("thr*-seed*.json"))
                 if p.relative_to(root).parts[0] != "transfer"]
    for path in paths:
        try:
            with open(path) as handle:
                record = json.load(handle)
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("schema") == SCHEMA and record.get("status") == "ok":
            record["_path"] = str(path)
            records.append(record)
    return records


@lru_cache(maxsize=1)
def provenance() -> dict:
    """Versions and code revision that produced a record."""
    import numpy
    import torch

    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=repo, capture_output=True, text=True,
                                    timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    from bench import __version__

    return {"bench_version": __version__, "git_sha": sha, "git_dirty": dirty,
            "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "host_platform": platform.platform()}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
