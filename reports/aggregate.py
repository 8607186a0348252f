"""From records (or published numbers) to one long frame: suite, task, method, reward, cost.

Means are over thresholds and seeds, as the paper. The spread, when asked for, is over seeds
(each seed first averaged over the thresholds): the standard deviation, or the half-width of
a 95% bootstrap interval of the mean (2000 resamples, fixed random state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.records import job_tag, load_records, precision_of
from tasks.registry import TASKS

LONG = ["suite", "task", "method", "reward", "cost", "reward_spread", "cost_spread", "n"]
SUITE_ORDER = ["metadrive", "safetygym", "bullet"]  # as the paper's Table 1
AVERAGE = "Average"


class ReportError(ValueError):
    """Nothing to report, or inputs that do not fit together; the message says why."""


def method_label(record: dict, with_precision: bool = True) -> str:
    """A method's column name: a config made with --set values says so ("LSPC-O [epsilon=1]"),
    and so does a precision other than fp32 ("LSPC-O [bf16]", "LSPC-O [epsilon=1, bf16]")
    unless `with_precision` is off (single_precision)."""
    tags = job_tag(record.get("variant"), precision_of(record) if with_precision else None)
    return f"{record['method']} [{tags}]" if tags else record["method"]


def single_precision(frame: pd.DataFrame) -> pd.DataFrame:
    """Records of one precision only, whichever, name their methods plainly ("LSPC-O", not
    "LSPC-O [bf16]"), so that a study made in bf16 meets the paper's columns and claims; the
    report's notes say the precision (tables.provenance_notes). Records of several precisions
    keep them apart by name."""
    if frame.empty or "precision" not in frame or frame.precision.nunique() != 1:
        return frame
    return frame.assign(method=[
        method_label({"method": method, "variant": variant}, with_precision=False)
        for method, variant in zip(frame.base_method, frame.variant)])


def records_frame(results: Path) -> pd.DataFrame:
    """One row per record, with what the report needs to aggregate and to cite."""
    columns = ["suite", "task", "method", "threshold", "seed", "profile", "steps",
               "data_source", "normalized_reward", "normalized_cost", "config_hash", "created",
               "bench_version", "git_sha", "precision", "variant", "base_method"]
    rows = []
    scan = load_records(results)
    for r in scan:
        rows.append({**{k: r[k] for k in columns if k in r}, "method": method_label(r),
                     "precision": precision_of(r), "variant": r.get("variant") or "",
                     "base_method": r["method"],
                     "bench_version": r.get("provenance", {}).get("bench_version"),
                     "git_sha": r.get("provenance", {}).get("git_sha")})
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["damaged"] = [(str(path), problem) for path, problem in scan.damaged]
    return frame


def _bootstrap_half_width(values: np.ndarray, rng: np.random.Generator,
                          resamples: int = 2000) -> float:
    if len(values) < 2:
        return float("nan")
    means = rng.choice(values, size=(resamples, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float((high - low) / 2)


def aggregate(frame: pd.DataFrame, spread: str | None = None,
              by_threshold: bool = False) -> pd.DataFrame:
    """Long frame of means per (suite, task, method[, threshold]) with an optional spread."""
    keys = ["suite", "task", "method"] + (["threshold"] if by_threshold else [])
    per_seed = frame.groupby(keys + ["seed"])[["normalized_reward", "normalized_cost"]].mean()
    rng = np.random.default_rng(0)
    rows = []
    for key, group in per_seed.groupby(level=keys):
        rewards = group["normalized_reward"].to_numpy()
        costs = group["normalized_cost"].to_numpy()
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(reward=rewards.mean(), cost=costs.mean(), n=len(rewards))
        if spread == "std":
            row.update(reward_spread=rewards.std(ddof=1) if len(rewards) > 1 else np.nan,
                       cost_spread=costs.std(ddof=1) if len(costs) > 1 else np.nan)
        elif spread == "ci":
            row.update(reward_spread=_bootstrap_half_width(rewards, rng),
                       cost_spread=_bootstrap_half_width(costs, rng))
        else:
            row.update(reward_spread=np.nan, cost_spread=np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=LONG + (["threshold"] if by_threshold else []))


def read_published(path: Path) -> pd.DataFrame:
    """A CSV of published numbers (columns suite, task, method, reward, cost); Average rows
    in it are kept as printed, not recomputed."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not a readable CSV ({str(err).splitlines()[0]}); expected "
                          "columns suite, task, method, reward, cost") from None
    missing = {"suite", "task", "method", "reward", "cost"} - set(frame.columns)
    if missing:
        raise ReportError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected "
                         "suite, task, method, reward, cost")
    if frame.empty:
        raise ReportError(f"{path}: no rows of numbers")
    for column in ("reward", "cost"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column][values.isna() & frame[column].notna()]
        if len(bad):
            row = int(bad.index[0]) + 2  # the header is line 1
            raise ReportError(f"{path}: line {row}: {column} {bad.iloc[0]!r} is not a number")
        frame[column] = values
    from tasks.registry import SUITES, UnknownNameError, get_task

    for i, row in frame.iterrows():  # a typo in a task or suite would be rendered and averaged
        where = f"{path}: line {int(i) + 2}"
        if row.suite not in SUITES:
            raise ReportError(f"{where}: unknown suite {row.suite!r}; use one of "
                              f"{', '.join(SUITES)}")
        if row.task != AVERAGE:
            try:
                spec = get_task(str(row.task))
            except UnknownNameError as err:
                raise ReportError(f"{where}: {err}") from None
            if spec.suite != row.suite:
                raise ReportError(f"{where}: {row.task} is a {spec.suite} task, not {row.suite}")
    frame = frame.assign(reward_spread=np.nan, cost_spread=np.nan, n=np.nan)
    return frame[LONG]


def with_averages(long: pd.DataFrame) -> pd.DataFrame:
    """Add each suite's Average row per method where the frame has none: the mean over the
    suite's tasks, only for a method that has every one of them (else missing, a dash)."""
    parts = [long]
    for suite, part in long.groupby("suite"):
        if (part.task == AVERAGE).any():
            continue
        tasks = set(part.task)
        for method, runs in part.groupby("method"):
            complete = set(runs.task) == tasks and runs[["reward", "cost"]].notna().all().all()
            parts.append(pd.DataFrame([{
                "suite": suite, "task": AVERAGE, "method": method,
                "reward": runs.reward.mean() if complete else np.nan,
                "cost": runs.cost.mean() if complete else np.nan,
                "reward_spread": np.nan, "cost_spread": np.nan, "n": np.nan}]))
    return pd.concat(parts, ignore_index=True)


def task_order(suite: str, tasks) -> list[str]:
    known = [name for name, spec in TASKS.items() if spec.suite == suite and name in set(tasks)]
    others = sorted(set(tasks) - set(known) - {AVERAGE})
    return known + others + ([AVERAGE] if AVERAGE in set(tasks) else [])


def task_label(task: str) -> str:
    return TASKS[task].paper_name if task in TASKS else task
