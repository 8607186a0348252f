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
from functools import lru_cache
from pathlib import Path

from bench import __version__
from tasks.files import write_text_atomic
from tasks.provenance import harness_commit, package_versions

SCHEMA = 1


def config_hash(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def job_tag(variant: str | None, precision: str | None) -> str:
    """What sets a job apart beside its method, as reports name it: its --set values and a
    precision other than fp32 ("epsilon=1, bf16"; "" for neither)."""
    return ", ".join(part for part in (variant or "", precision or "") if part and part != "fp32")


def precision_of(record: dict) -> str:
    """The precision a record was trained in: records from before precision was recorded
    name none, and were all fp32."""
    return record.get("precision") or "fp32"


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
    """A JSON file written whole or not at all (tasks.files); records are never overwritten."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; records are never overwritten")
    text = json.dumps(payload, indent=1, sort_keys=True, default=_jsonable)
    return write_text_atomic(path, text)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


#: what every record must hold to be counted, and the type each must have
REQUIRED_FIELDS = {"method": str, "task": str, "suite": str, "seed": int, "threshold": float,
                   "normalized_reward": float, "normalized_cost": float}


class RecordScan(list):
    """The valid records of a folder (a list), with the damaged ones beside: `damaged` is a
    list of (path, what is wrong)."""

    def __init__(self, records=(), damaged=()):
        super().__init__(records)
        self.damaged = list(damaged)


def check_record(record, path: Path | None = None) -> str | None:
    """What is wrong with a parsed record (None: nothing). An error record is not a record."""
    if not isinstance(record, dict):
        return f"its top level is a JSON {type(record).__name__}, not an object"
    if record.get("schema") != SCHEMA:
        return f"schema {record.get('schema')!r}, expected {SCHEMA}"
    if record.get("status") != "ok":
        return f"status {record.get('status')!r}, expected 'ok'"
    for field, kind in REQUIRED_FIELDS.items():
        if field not in record:
            return f"no {field!r}"
        value = record[field]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{field!r} is {value!r}, not a number"
            if value != value or value in (float("inf"), float("-inf")):
                return f"{field!r} is {value!r}"
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{field!r} is {value!r}, not a whole number"
        elif kind is str and (not isinstance(value, str) or not value):
            return f"{field!r} is {value!r}, not a name"
    if path is not None:  # the key in the file name must be the key inside
        expected = f"thr{record['threshold']:g}-seed{record['seed']}-"
        if not Path(path).name.startswith(expected):
            return (f"says threshold {record['threshold']:g} and seed {record['seed']}, but "
                    f"its file name does not")
    return None


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """(record, None) for a valid record; (None, what is wrong) for a damaged one."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except OSError as err:
        return None, f"unreadable ({err.strerror or err})"
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, f"not valid JSON ({err})"
    problem = check_record(record, path)
    return (None, problem) if problem else (record, None)


def is_error_record(path: Path) -> bool:
    return Path(path).name.endswith(".error.json")


def record_paths(results: Path, transfer_from: str | None = None) -> list[Path]:
    """The record files of a results folder: the main ones, or with `transfer_from` the
    zero-shot transfer records of that source task (results/transfer/<source>/)."""
    root = Path(results)
    if transfer_from is not None:
        paths = sorted((root / "transfer" / transfer_from).rglob("thr*-seed*.json"))
    else:
        paths = [p for p in sorted(root.rglob("thr*-seed*.json"))
                 if p.relative_to(root).parts[0] != "transfer"]
    return [p for p in paths if not is_error_record(p)]


def load_records(results: Path, transfer_from: str | None = None) -> RecordScan:
    """Every valid record under `results` (error records and temp files are not records), each
    with its `_path`; the damaged ones are named in the result's `damaged`, never read in."""
    records, damaged = [], []
    for path in record_paths(results, transfer_from):
        record, problem = read_record(path)
        if problem:
            damaged.append((path, problem))
            continue
        record["_path"] = str(path)
        records.append(record)
    return RecordScan(records, damaged)


def damaged_note(damaged: list) -> str:
    """One paragraph naming the damaged records a reader left out."""
    if not damaged:
        return ""
    lines = [f"left out {len(damaged)} damaged record(s) (`bench run` moves them aside to "
             "<name>.damaged and redoes their jobs):"]
    lines += [f"  {path}: {problem}" for path, problem in damaged]
    return "\n".join(lines)


def set_aside(path: Path) -> Path:
    """Move a damaged record to `<name>.damaged` (never over an earlier one); it is kept."""
    path = Path(path)
    target = path.with_name(path.name + ".damaged")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged.{n}")
        n += 1
    os.replace(path, target)
    return target


@lru_cache(maxsize=1)
def provenance() -> dict:
    """Versions and code revision that produced a record."""
    sha, dirty = harness_commit()
    versions = package_versions(("torch", "numpy"))
    return {"bench_version": __version__, "git_sha": sha, "git_dirty": dirty,
            "python": platform.python_version(), "torch": versions["torch"],
            "numpy": versions["numpy"], "host_platform": platform.platform()}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


#: what differs between two runs of one job: clocks, who ran it, the harness's commit, where a
#: run resumed
VOLATILE_FIELDS = frozenset({"created", "train_seconds", "eval_seconds", "wall_seconds",
                             "provenance", "resumed_from_step", "worker"})


def comparable_records(results: Path) -> dict[str, dict]:
    """Every record under `results` (error records aside) by its path, without the volatile
    fields: two runs of the same jobs must give equal dicts, numbers bit for bit."""
    out = {}
    for path in sorted(Path(results).rglob("thr*-seed*.json")):
        if is_error_record(path):
            continue
        record = json.loads(path.read_text())
        out[str(path.relative_to(results))] = {k: v for k, v in record.items()
                                               if k not in VOLATILE_FIELDS}
    return out
