"""The claims ledger (reports/claims.py): every claim holds on the paper's own table, and each
flips exactly when a perturbation of that table should flip it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from reports.aggregate import ReportError, read_published, with_averages
from reports.claims import PAPER_CLAIMS, check_claims, load_claims
from reports.tables import PAPER_CSV

PAPER = read_published(PAPER_CSV)
CODE_CLAIMS = PAPER_CLAIMS.with_name("lspc_code_claims.json")


def verdicts(table):
    return {row["id"]: row["holds"] for row in check_claims(with_averages(table), PAPER,
                                                             load_claims())}


def perturbed(changes):
    table = PAPER.copy()
    for (suite, task, method), values in changes.items():
        rows = (table.suite == suite) & (table.task == task) & (table.method == method)
        assert rows.sum() == 1, (suite, task, method)
        for column, value in values.items():
            table.loc[rows, column] = value
    return table


ALL_HOLD = {f"C{i}": True for i in range(1, 8)}


def test_every_claim_holds_on_the_papers_table():
    assert verdicts(PAPER) == ALL_HOLD


@pytest.mark.parametrize("claim, changes", [
    # LSPC-S unsafe on one more task than in the paper
    ("C1", {("bullet", "BallRun", "LSPC-S"): {"cost": 1.2}}),
    ("C2", {("safetygym", "CarGoal1", "LSPC-O"): {"cost": 1.5}}),
    # LSPC-S above LSPC-O in one suite's Average row
    ("C3", {("safetygym", "Average", "LSPC-S"): {"reward": 0.45}}),
    # another safe method takes the Bullet Average row's blue
    ("C4", {("bullet", "Average", "BC-Safe"): {"reward": 0.70, "cost": 0.5}}),
    # FISOR no longer below LSPC-O (Safety-Gymnasium, where C4 does not look)
    ("C5", {("safetygym", "Average", "FISOR"): {"reward": 0.5}}),
    ("C5", {("bullet", "Average", "FISOR"): {"cost": 1.1}}),
    ("C6", {("safetygym", "Average", "BC-All"): {"cost": 0.9}}),
])
def test_each_claim_flips_exactly_when_it_should(claim, changes):
    assert verdicts(perturbed(changes)) == {**ALL_HOLD, claim: False}


def test_cdt_no_more_often_unsafe_than_lspc_o():
    cdt = PAPER[(PAPER.method == "CDT") & (PAPER.task != "Average") & (PAPER.cost >= 1)]
    changes = {(r.suite, r.task, "CDT"): {"cost": 0.5} for r in cdt.itertuples()}
    assert verdicts(perturbed(changes)) == {**ALL_HOLD, "C7": False}
    # exactly as often is not more often: one task where LSPC-O too is unsafe
    one = {**changes, (cdt.iloc[0].suite, cdt.iloc[0].task, "CDT"): {"cost": 1.5},
           (cdt.iloc[0].suite, cdt.iloc[0].task, "LSPC-O"): {"cost": 1.5}}
    assert verdicts(perturbed(one))["C7"] is False


def test_claims_on_a_subset_compare_with_the_paper_on_the_same_tasks():
    bullet = PAPER[(PAPER.suite == "bullet") & PAPER.task.isin(["CarRun", "BallRun"])]
    rows = {r["id"]: r for r in check_claims(with_averages(bullet), PAPER, load_claims())}
    assert rows["C1"]["ours"] == rows["C1"]["paper"] == "safe on 2 of 2 tasks"
    # the Average row is the mean over the two tasks on both sides, not the paper's printed one
    lspc_o = PAPER[(PAPER.suite == "bullet") & PAPER.task.isin(["CarRun", "BallRun"])
                   & (PAPER.method == "LSPC-O")].reward.mean()
    assert f"{lspc_o:.2f}" in rows["C3"]["ours"] and rows["C3"]["ours"] == rows["C3"]["paper"]
    assert all(r["holds"] is not None for r in rows.values())


def test_missing_methods_give_null_saying_what_is_missing():
    table = PAPER[~PAPER.method.isin(["FISOR", "LSPC-S"])]
    rows = {r["id"]: r for r in check_claims(with_averages(table), PAPER, load_claims())}
    assert rows["C1"]["holds"] is None and "no LSPC-S" in rows["C1"]["ours"]
    assert rows["C5"]["holds"] is None and "FISOR" in rows["C5"]["ours"]
    assert rows["C2"]["holds"] is True


def test_bench_claims_json_report_claims_and_claims_of_ones_own(tmp_path, capsys):
    assert main(["claims", "--input", str(PAPER_CSV), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [f"C{i}" for i in range(1, 8)]
    for row in rows:
        assert {"id", "claim", "holds", "ours", "paper"} <= set(row) and row["holds"] is True
    assert main(["report", "--input", str(PAPER_CSV), "--suite", "bullet", "--claims"]) == 0
    out = capsys.readouterr().out
    assert "The paper's claims" in out and "| C7 |" in out
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps([{"id": "M1", "claim": "BC-Safe is unsafe",
                                 "kind": "unsafe_in_averages", "method": "BC-Safe"}]))
    assert main(["claims", "--input", str(PAPER_CSV), "--claims", str(mine),
                 "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == "M1" and row["holds"] is False  # the paper's BC-Safe is safe
    mine.write_text(json.dumps([{"id": "M2", "claim": "x", "kind": "nonsense", "method": "A"}]))
    assert main(["claims", "--input", str(PAPER_CSV), "--claims", str(mine)]) == 2
    assert "unknown kind 'nonsense'" in capsys.readouterr().err
    assert main(["claims"]) == 2


def test_claims_from_records(tmp_path, capsys):
    def record(task, method, seed, reward, cost):
        path = tmp_path / "bullet" / task / method / f"thr10-seed{seed}-abc.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "schema": 1, "status": "ok", "method": method, "task": task, "suite": "bullet",
            "seed": seed, "threshold": 10.0, "normalized_reward": reward,
            "normalized_cost": cost, "profile": "quick", "steps": 10, "data_source": "local"}))

    for seed in (0, 1):
        record("CarRun", "LSPC-S", seed, 0.1, 0.5)
        record("CarRun", "LSPC-O", seed, 0.3, 1.5)  # unsafe: C2 fails
        record("BallRun", "LSPC-S", seed, 0.2, 0.2)
        record("BallRun", "LSPC-O", seed, 0.4, 0.8)
    assert main(["claims", "--results", str(tmp_path), "--format", "json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["C1"]["holds"] is True and rows["C2"]["holds"] is False
    assert rows["C2"]["ours"] == "safe on 1 of 2 tasks"
    assert rows["C2"]["paper"] == "safe on 2 of 2 tasks"
    assert rows["C3"]["holds"] is True  # Bullet Average over the two tasks: 0.35 vs 0.15
    assert rows["C6"]["holds"] is None  # no BC-All


def test_claims_put_to_the_authors_code_use_the_papers_lspc_as_yardstick(tmp_path):
    """reports/lspc_code_claims.json: LSPC-code's policies against the paper's LSPC numbers."""
    code = load_claims(CODE_CLAIMS)
    assert [c["id"] for c in code] == ["C1-code", "C2-code", "C3-code", "C4-code"]
    bullet = PAPER[(PAPER.suite == "bullet") & PAPER.task.isin(["CarRun", "BallRun"])]
    as_code = bullet[bullet.method.isin(["LSPC-S", "LSPC-O"])].assign(
        method=lambda f: f.method + "-code")
    ours = with_averages(pd.concat([bullet, as_code], ignore_index=True))
    rows = {r["id"]: r for r in check_claims(ours, PAPER, code)}
    # the code's numbers equal to the paper's LSPC: the verdicts are the paper's own, C4 too
    # (on these two tasks CDT, not LSPC-O, is blue among all the paper's methods)
    assert [rows[k]["holds"] for k in ("C1-code", "C2-code", "C3-code")] == [True] * 3
    assert rows["C4-code"]["holds"] is rows["C4-code"]["paper_holds"] is False
    assert rows["C4-code"]["ours"] == rows["C4-code"]["paper"]
    assert rows["C1-code"]["paper"] == rows["C1-code"]["ours"] == "safe on 2 of 2 tasks"
    assert rows["C3-code"]["ours"] == rows["C3-code"]["paper"]
    # the code's LSPC-S unsafe on one task: C1-code fails, the paper's side unchanged
    unsafe = ours.copy()
    unsafe.loc[(unsafe.method == "LSPC-S-code") & (unsafe.task == "BallRun"), "cost"] = 3.0
    rows = {r["id"]: r for r in check_claims(unsafe, PAPER, code)}
    assert rows["C1-code"]["holds"] is False
    assert rows["C1-code"]["ours"] == "safe on 1 of 2 tasks"
    assert rows["C1-code"]["paper"] == "safe on 2 of 2 tasks"
    # without the stand-in the paper's side has no LSPC-S-code, so nothing to hold it to
    bare = [{k: v for k, v in code[0].items() if k != "paper_methods"}]
    (row,) = check_claims(ours, PAPER, bare)
    assert row["holds"] is None and row["paper"] == "no LSPC-S-code on any task"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**code[0], "paper_methods": ["LSPC-S"]}]))
    with pytest.raises(ReportError, match="paper_methods maps our method names"):
        load_claims(bad)
