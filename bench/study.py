"""What a study may train on: its transitions and its precision, named in its data.json.

A study (docs/study, docs/study/portable, docs/study/second-collection) is one dataset per
task and one precision: its report averages over seeds, so a seed trained on other
transitions or in another precision would be averaged in silently (the report would name a bf16 method apart
from its fp32 one, and the claims would see two methods). Collection repeats bit for bit on
one kind of processor, not on every kind (docs/data/README.md), and bf16 trains only where
the processor has bfloat16 arithmetic, so which study a machine can add to is a property of
the machine; `scripts/study.sh` asks this module before it trains, and refuses (exit 2)
with the reason and the study the machine could go on with.

    python -m bench.study check STUDY_DIR TASKS PRECISION RESULTS
    python -m bench.study saved RESULTS PRECISION
    python -m bench.study precision STUDY_DIR

`check` prints nothing and exits 0 where training may go on, else one line and exit 2;
`saved` lists what `study.sh --save` copies into the study: the records of its precision and
their runs' curves, never checkpoints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.records import precision_of
from tasks.datasets import file_arrays_sha256, local_path
from tasks.registry import get_task


def study_facts(study_dir: Path) -> dict:
    """The study's data.json: `arrays_sha256` per task and `precision` (fp32 where absent,
    as a record without one is)."""
    facts = json.loads((study_dir / "data.json").read_text())
    facts.setdefault("precision", "fp32")
    return facts


def _studies_root(study_dir: Path) -> Path:
    # the folder every study lives under (docs/study and its sub-studies)
    return study_dir if study_dir.name == "study" else study_dir.parent


def refusal(study_dir: Path, tasks: list[str], precision: str, results: Path) -> str | None:
    """Why training these tasks in this precision would not add to the study, or None.

    Checked: the study's precision; each task's local `study` file holds the study's
    transitions (a task without a file yet is left to `bench run`, which says so); every
    record in RESULTS (what a machine before this one trained) was made on the study's
    transitions of its task (on the local file where the study names none)."""
    if not (study_dir / "data.json").is_file():
        return (f"{study_dir}/data.json is missing: it names the transitions and the precision "
                "the study trains on")
    facts = study_facts(study_dir)
    if precision != facts["precision"]:
        return (f"{study_dir} trains in {facts['precision']} ({study_dir}/data.json), not in "
                f"{precision}: a seed in another precision would be another method in its "
                f"report; run it with {facts['precision']}, or begin a study of its own")
    hashes: dict[str, tuple[Path, str | None]] = {}

    def transitions(task: str) -> tuple[Path, str | None]:
        if task not in hashes:
            path = local_path(get_task(task), "study")
            hashes[task] = (path, file_arrays_sha256(path) if path.exists() else None)
        return hashes[task]

    for task in tasks:
        path, sha = transitions(task)
        wanted = facts["arrays_sha256"].get(task)
        if sha is None or wanted is None or sha == wanted:
            continue
        card = path.with_name(path.name + ".card.json")
        machine = (json.loads(card.read_text()).get("timing", {}).get("machine", {})
                   if card.exists() else {})
        root = _studies_root(study_dir)
        others = [named.parent for named in sorted(root.rglob("data.json"))
                  if named.parent != study_dir
                  and json.loads(named.read_text())["arrays_sha256"].get(task) == sha]
        where = (f"they are {others[0]}'s: STUDY_DIR={others[0]}, in "
                 f"{study_facts(others[0])['precision']}" if others else
                 "no study here names them: begin one with a data.json of its own")
        return (f"{path} holds other transitions ({sha[:12]}) than the study's ({wanted[:12]}, "
                f"{study_dir}/data.json): this machine "
                f"({machine.get('cpu', 'its processor is not on the card')}) collected them "
                f"otherwise (docs/data/README.md); train where the collection gives the "
                f"study's transitions, or on the study that names these ({where})")
    # a record belongs to the study when it was made on the study's transitions of its task;
    # the local file stands in only for a task the study names none for. So a machine whose
    # collection gives the study's transitions on some tasks only (the portable kernels on
    # an AVX-512 processor: docs/data/README.md) trains those, beside the others' records
    for record_path in sorted(results.rglob("thr*-seed*.json")) if results.is_dir() else []:
        record = json.loads(record_path.read_text())
        made_on = record.get("dataset_arrays_sha256")
        wanted = facts["arrays_sha256"].get(record["task"])
        if wanted is not None:
            if made_on != wanted:
                return (f"{record_path} was made on other transitions "
                        f"({str(made_on)[:12]}) than the study's ({wanted[:12]}, "
                        f"{study_dir}/data.json): move it aside, or begin a study of its own")
            continue
        path, sha = transitions(record["task"])
        if sha not in (None, made_on):
            return (f"{record_path} was made on other data than {path} (transitions "
                    f"{str(made_on)[:12]}, the file's {sha[:12]}); "
                    "collect at the commit docs/data's card names, or move the records aside "
                    "to begin another study")
    return None


def saved_files(results: Path, precision: str) -> list[Path]:
    """The files of RESULTS a study keeps (paths relative to it): every record (a job's
    evaluation at one threshold) trained in `precision`, and the curve of each run that has
    such a record. A run without one (a job abandoned, or of other data or precision) is
    nobody's result; plans, progress, errors and checkpoints stay behind."""
    kept: list[Path] = []
    runs: set[tuple[Path, str, str]] = set()  # (method folder, seed, job hash)
    for path in sorted(results.rglob("thr*-seed*.json")):
        if path.name.endswith(".error.json") or ".plans" in path.parts:
            continue
        record = json.loads(path.read_text())
        if precision_of(record) != precision:
            continue
        kept.append(path.relative_to(results))
        seed_part, job = path.stem.split("-", 1)[1].split("-", 1)
        runs.add((path.parent.parent, seed_part, job))
    for curve in sorted(results.rglob("run-seed*/curve.csv")):
        seed_part, rest = curve.parent.name[len("run-"):].split("-", 1)
        job = rest.split("-thr", 1)[0]
        if (curve.parent.parent.parent, seed_part, job) in runs:
            kept.append(curve.relative_to(results))
    return kept


def main(argv: list[str]) -> int:
    if argv[:1] == ["precision"]:
        print(study_facts(Path(argv[1]))["precision"])
        return 0
    if argv[:1] == ["saved"]:
        results, precision = argv[1:]
        for path in saved_files(Path(results), precision):
            print(path)
        return 0
    if argv[:1] != ["check"]:
        print("usage: python -m bench.study check STUDY_DIR TASKS PRECISION RESULTS | "
              "saved RESULTS PRECISION | precision STUDY_DIR", file=sys.stderr)
        return 2
    study_dir, tasks, precision, results = argv[1:]
    reason = refusal(Path(study_dir), tasks.split(","), precision, Path(results))
    if reason:
        print(f"study.sh: {reason}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
