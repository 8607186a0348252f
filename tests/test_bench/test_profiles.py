"""The run profiles: every built-in method has a budget for each, the study profile trains on
the study collection with curves, and a method without a budget says so."""

from __future__ import annotations


import pytest

from algorithms import BUILT_IN, get_method
from algorithms.base import ConfigError
from bench.plan import plan_jobs
from bench.profiles import PROFILES
from tasks.registry import get_task


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_built_in_method_has_a_budget_for_every_profile(name):
    _, cls = get_method(name)
    steps = {profile: cls.steps_for(profile, "CarRun") for profile in PROFILES}
    assert all(n > 0 for n in steps.values())
    assert steps["quick"] < steps["study"] <= steps["paper"]


def test_a_method_without_a_budget_for_a_profile_gets_one_clear_error():
    _, cls = get_method("BC-All")
    short = type("ShortBC", (cls,), {"profile_steps": {"smoke": 5, "quick": 10}})
    with pytest.raises(ConfigError, match="no training budget for the 'study' profile.*"
                                          "add 'study' to its profile_steps"):
        short.steps_for("study", "CarRun")


def test_the_study_profile_trains_lspc_100k_steps_on_the_study_data_with_curves(
        data_dirs, tmp_path):
    _, local = data_dirs
    missing = []
    jobs = plan_jobs([get_task("CarRun")], ["LSPC", "BC-Safe"], [0, 1, 2], "study",
                     tmp_path / "results", "local", missing_data=missing)
    # no collection here: the study file is what it looked for
    assert len(missing) == 1 and "CarRun-local-study.hdf5" in str(missing[0][1])
    lspc = [job for job in jobs if job.method == "LSPC"]
    assert len(lspc) == 3 and all(job.steps == 100_000 for job in lspc)
    assert all(job.eval_every == 10_000 and job.eval_episodes == 20 for job in jobs)
    assert len([job for job in jobs if job.method == "BC-Safe"]) == 9  # a job per threshold
    assert PROFILES["study"].seeds == (0, 1, 2)
    # the study profile's budgets differ from quick's: separate jobs, never mixed up
    quick = plan_jobs([get_task("CarRun")], ["LSPC"], [0], "quick", tmp_path / "results",
                      "local", missing_data=[])
    assert quick[0].job_hash != lspc[0].job_hash and quick[0].steps == 3000
