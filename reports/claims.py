"""The paper's claims, checked on whatever tasks and methods a results folder (or CSV) holds.

Claims are data (reports/paper_claims.json, or a file of one's own): each names a kind of test
and its methods, and is evaluated twice, on our numbers and on the paper's numbers restricted
to the same tasks, so every verdict stands beside the paper's own. A claim holds (true),
fails (false) or cannot be evaluated on what is present (null, saying what is missing).

Both sides are the frame `bench report` renders: the mean over thresholds and seeds per
(suite, task, method), and per suite an Average row, taken from an input CSV where it has one,
else the mean over the suite's tasks for a method that has all of them. On the paper's side
the printed Average rows are used when ours covers every task of the suite; otherwise the
paper's Average is recomputed over the same tasks as ours.

Kinds (fields beside `id`, `claim`, `kind`):
- safe_on_tasks (method): on the tasks where we have the method, it is safe (cost < 1) on at
  least as many tasks as in the paper.
- reward_above_in_averages (method, other): in every suite Average row with both, the method's
  reward is above the other's.
- best_safe_in_averages (method, suites): in the Average row of each listed suite present, the
  method is blue by the paper's rule (reports/highlight.py) among the methods present.
- safe_and_below_in_averages (method, other): in every suite Average row with both, the method
  is safe and its reward is below the other's.
- unsafe_in_averages (method): in every suite Average row with the method, its cost >= 1.
- unsafe_more_often (method, other): over the tasks with both, the method is unsafe on more
  tasks than the other.

A claim may carry `paper_methods`, {our method: the paper's}: on the paper's side, the paper's
numbers of the named method stand (as a copy) for ours. So the paper's claims can be put to a
variant the paper has no column for, with the paper's method as the yardstick:
reports/lspc_code_claims.json puts C1 to C4 to LSPC-code (the authors' code's choices, recorded
as LSPC-S-code and LSPC-O-code) against the paper's LSPC-S and LSPC-O. Its C4-code is meant
with `--methods` leaving out our LSPC-S and LSPC-O, so the code's LSPC-O stands against the
baselines as the paper's did, not against the text's LSPC-O.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reports.aggregate import AVERAGE, ReportError, with_averages
from reports.highlight import SAFE_BELOW, highlight
from tasks.registry import suite_tasks

PAPER_CLAIMS = Path(__file__).with_name("paper_claims.json")
KINDS = ("safe_on_tasks", "reward_above_in_averages", "best_safe_in_averages",
         "safe_and_below_in_averages", "unsafe_in_averages", "unsafe_more_often")
SUITE_NAMES = {"bullet": "Bullet", "safetygym": "Safety-Gymnasium", "metadrive": "MetaDrive"}


def load_claims(path: Path | None = None) -> list[dict]:
    """The claims of a JSON file (default: the paper's), each checked for what it needs."""
    path = Path(path) if path is not None else PAPER_CLAIMS
    try:
        claims = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ReportError(f"{path}: not a readable claims file ({err})") from None
    if not isinstance(claims, list):
        raise ReportError(f"{path}: a claims file is a JSON list of claims")
    for i, claim in enumerate(claims):
        where = f"{path}: claim {i + 1}"
        if not isinstance(claim, dict) or not {"id", "claim", "kind", "method"} <= set(claim):
            raise ReportError(f"{where}: needs id, claim, kind and method")
        if claim["kind"] not in KINDS:
            raise ReportError(f"{where}: unknown kind {claim['kind']!r}; one of "
                              f"{', '.join(KINDS)}")
        if claim["kind"] in ("reward_above_in_averages", "safe_and_below_in_averages",
                             "unsafe_more_often") and "other" not in claim:
            raise ReportError(f"{where}: kind {claim['kind']} needs `other`")
        stand_ins = claim.get("paper_methods", {})
        if not (isinstance(stand_ins, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in stand_ins.items())):
            raise ReportError(f"{where}: paper_methods maps our method names to the paper's, "
                              f'e.g. {{"LSPC-S-code": "LSPC-S"}}')
    return claims


# ------------------------------------------------------------------------------- the sides


def _tasks(long: pd.DataFrame) -> pd.DataFrame:
    return long[long.task != AVERAGE]


def _averages(long: pd.DataFrame) -> pd.DataFrame:
    return long[long.task == AVERAGE]


def _value(frame: pd.DataFrame, suite: str, method: str, column: str) -> float | None:
    rows = frame[(frame.suite == suite) & (frame.method == method)]
    if rows.empty or pd.isna(rows[column].iloc[0]):
        return None
    return float(rows[column].iloc[0])


def paper_on_same_tasks(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers on the tasks we have, with Average rows as the module says."""
    parts = []
    for suite, part in _tasks(ours).groupby("suite"):
        tasks = set(part.task)
        rows = paper[(paper.suite == suite) & paper.task.isin(tasks)]
        everything = {spec.name for spec in suite_tasks(suite)}
        if tasks >= everything:
            rows = pd.concat([rows, paper[(paper.suite == suite) & (paper.task == AVERAGE)]])
        else:
            rows = with_averages(rows)
        parts.append(rows)
    if not parts:  # ours holds Average rows only (an input CSV of averages)
        suites = set(_averages(ours).suite)
        return paper[paper.suite.isin(suites) & (paper.task == AVERAGE)]
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------- the verdicts


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _safe_on_tasks(side: pd.DataFrame, claim: dict, tasks: set | None):
    rows = _tasks(side)
    rows = rows[(rows.method == claim["method"]) & rows.cost.notna()]
    if tasks is not None:
        rows = rows[rows.task.isin(tasks)]
    if rows.empty:
        return None, f"no {claim['method']} on any task", None
    safe = int((rows.cost < SAFE_BELOW).sum())
    return safe, f"safe on {safe} of {len(rows)} tasks", set(rows.task)


def _in_averages(side: pd.DataFrame, methods: list[str], suites: list[str] | None = None):
    """{suite: {method: (reward, cost)}} of the Average rows holding every one of `methods`."""
    out = {}
    for suite, part in _averages(side).groupby("suite"):
        if suites is not None and suite not in suites:
            continue
        row = {m: (_value(part, suite, m, "reward"), _value(part, suite, m, "cost"))
               for m in part.method}
        if all(m in row and None not in row[m] for m in methods):
            out[suite] = row
    return out


def _verdict_in_averages(side: pd.DataFrame, claim: dict):
    kind, method, other = claim["kind"], claim["method"], claim.get("other")
    methods = [method] + ([other] if other else [])
    rows = _in_averages(side, methods, claim.get("suites"))
    if not rows:
        return None, f"no suite Average row with {' and '.join(methods)}"
    verdicts, words = [], []
    for suite, row in sorted(rows.items()):
        reward, cost = row[method]
        name = SUITE_NAMES.get(suite, suite)
        if kind == "reward_above_in_averages":
            verdicts.append(reward > row[other][0])
            words.append(f"{name} {_fmt(reward)} vs {_fmt(row[other][0])}")
        elif kind == "safe_and_below_in_averages":
            verdicts.append(cost < SAFE_BELOW and reward < row[other][0])
            words.append(f"{name} cost {_fmt(cost)}, reward {_fmt(reward)} vs "
                         f"{_fmt(row[other][0])}")
        elif kind == "unsafe_in_averages":
            verdicts.append(cost >= SAFE_BELOW)
            words.append(f"{name} cost {_fmt(cost)}")
        else:  # best_safe_in_averages
            cells = highlight(row)
            verdicts.append(cells[method].blue)
            best = max((c.reward, m) for m, c in cells.items() if c.bold) if any(
                c.bold for c in cells.values()) else (None, "nobody safe")
            words.append(f"{name}: {'blue' if cells[method].blue else 'not blue'} "
                         f"({_fmt(reward)} / {_fmt(cost)}; best safe {best[1]})")
    return all(verdicts), "; ".join(words)


def _unsafe_more_often(side: pd.DataFrame, claim: dict, tasks: set | None):
    rows = _tasks(side)
    a = rows[rows.method == claim["method"]].set_index(["suite", "task"]).cost.dropna()
    b = rows[rows.method == claim["other"]].set_index(["suite", "task"]).cost.dropna()
    both = a.index.intersection(b.index)
    if tasks is not None:
        both = both[[task in tasks for _, task in both]]
    if len(both) == 0:
        return None, f"no task with both {claim['method']} and {claim['other']}", None
    unsafe_a = int((a[both] >= SAFE_BELOW).sum())
    unsafe_b = int((b[both] >= SAFE_BELOW).sum())
    return (unsafe_a > unsafe_b,
            f"unsafe on {unsafe_a} vs {unsafe_b} of {len(both)} tasks",
            {task for _, task in both})


def _with_stand_ins(paper: pd.DataFrame, stand_ins: dict[str, str]) -> pd.DataFrame:
    """The paper's frame plus, for each {ours: paper's} pair, a copy of the paper's method's
    rows named as ours."""
    copies = [paper[paper.method == theirs].assign(method=mine)
              for mine, theirs in stand_ins.items()]
    return pd.concat([paper, *copies], ignore_index=True) if copies else paper


def check_claims(ours: pd.DataFrame, paper: pd.DataFrame, claims: list[dict]) -> list[dict]:
    """Each claim on our long frame (with Average rows) and on the paper's on the same tasks:
    a list of {id, claim, holds, ours, paper, paper_holds}."""
    same_tasks = paper_on_same_tasks(ours, paper)
    out = []
    for claim in claims:
        kind = claim["kind"]
        paper_same = _with_stand_ins(same_tasks, claim.get("paper_methods", {}))
        if kind == "safe_on_tasks":
            count, ours_text, tasks = _safe_on_tasks(ours, claim, None)
            paper_count, paper_text, _ = _safe_on_tasks(paper_same, claim, tasks)
            holds = None if count is None or paper_count is None else count >= paper_count
            paper_holds = None  # the paper is the yardstick here
        elif kind == "unsafe_more_often":
            holds, ours_text, tasks = _unsafe_more_often(ours, claim, None)
            paper_holds, paper_text, _ = (_unsafe_more_often(paper_same, claim, tasks)
                                          if tasks else (None, "-", None))
        else:
            holds, ours_text = _verdict_in_averages(ours, claim)
            paper_holds, paper_text = _verdict_in_averages(paper_same, claim)
        out.append({"id": claim["id"], "claim": claim["claim"], "kind": kind,
                    "holds": holds, "ours": ours_text, "paper": paper_text,
                    "paper_holds": paper_holds})
    return out


def render_claims(rows: list[dict], fmt: str = "text") -> str:
    """The ledger as text (a table), Markdown or JSON."""
    if fmt == "json":
        return json.dumps(rows, indent=1)
    from tabulate import tabulate

    mark = {True: "holds", False: "FAILS", None: "n/a"}
    table = [(r["id"], r["claim"], mark[r["holds"]], r["ours"], r["paper"]) for r in rows]
    headers = ["", "claim", "verdict", "ours", "paper, same tasks"]
    return tabulate(table, headers=headers, tablefmt="github" if fmt == "markdown" else "simple")


def claims_ledger(ours: pd.DataFrame, paper_csv: Path, claims_path: Path | None = None,
                  fmt: str = "text") -> str:
    from reports.aggregate import read_published

    rows = check_claims(ours, read_published(Path(paper_csv)), load_claims(claims_path))
    return render_claims(rows, fmt)



def ours_frame(results: Path | None = None, input_csv: Path | None = None,
               suites: list[str] | None = None, methods: list[str] | None = None,
               profile: str | None = None) -> pd.DataFrame:
    """Our long frame, with Average rows, as `bench report` aggregates it: from the records of
    a results folder, or from a CSV of numbers (its Average rows kept as printed)."""
    from reports.aggregate import aggregate, read_published, records_frame, single_precision

    if input_csv is not None:
        long = read_published(Path(input_csv))
        if suites:
            long = long[long.suite.isin(suites)]
        if methods:
            long = long[long.method.str.lower().isin([m.lower() for m in methods])]
        return with_averages(long)
    frame = records_frame(Path(results))
    if profile:
        frame = frame[frame.profile == profile]
    if suites:
        frame = frame[frame.suite.isin(suites)]
    frame = single_precision(frame)
    if methods:
        frame = frame[frame.method.str.lower().isin([m.lower() for m in methods])]
    if frame.empty:
        raise ReportError(f"no records under {results} for the claims"
                          + (f" (profile {profile})" if profile else ""))
    return with_averages(aggregate(frame))
