"""Whole experiments made of the pieces below them: the MetaDrive transfer matrix's (paper
Fig. 12) training on the source and zero-shot evaluation on every target. Rendering the
matrix is the reports layer's (reports.transfer.write_matrix)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.plan import Job, save_plan
from bench.schedule import run_jobs
from bench.transfer import run_transfers, save_transfer_plan


@dataclass(frozen=True, kw_only=True)
class TransferRun:
    """What a transfer experiment did."""

    trained: list[Job]
    """the source agents with all their records (evaluated on the targets)"""
    training_failures: list[dict]
    """outcomes of source jobs that failed, in this run or an earlier one"""
    evaluations: list[dict]
    """one outcome per (agent, target) evaluated now"""

    @property
    def evaluation_failures(self) -> list[dict]:
        return [o for o in self.evaluations if o["status"] == "error"]


def transfer_experiment(jobs: list[Job], targets: list[str], results: Path, n_jobs: int = 0,
                        progress: bool = True) -> TransferRun:
    """Train the source agents that have no records yet (bench run's jobs: an agent trained
    by `bench run` is used as it is), then evaluate each zero-shot on every target whose
    records are missing. The plans go beside the records, for `bench status`."""
    save_plan(jobs, results)
    save_transfer_plan(jobs, targets, results)
    outcomes = run_jobs(jobs, n_jobs=n_jobs, progress=progress)
    trained = [job for job in jobs if not job.missing()]
    failed = [o for o in outcomes if o["status"] in ("error", "failed earlier")]
    evaluations = run_transfers(trained, targets, n_jobs=n_jobs, progress=progress)
    return TransferRun(trained=trained, training_failures=failed, evaluations=evaluations)
