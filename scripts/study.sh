#!/usr/bin/env bash
# The converging study of docs/reproduction.md: LSPC, LSPC-code, BC-All and BC-Safe on the
# Bullet tasks whose `study` collection meets the DSRL-like targets (docs/data/README.md),
# 3 seeds, 3 thresholds, 20 episodes, budgets of the `study` profile (bench/profiles.py and
# each method's profile_steps), curves every 10k steps.
#
#   bash scripts/study.sh RESULTS [fp32|bf16]         # train (resumes: rerun the same command)
#   bash scripts/study.sh RESULTS [fp32|bf16] --save  # copy the finished records and curves to
#       docs/study/results (no training): commit them, and a later machine resumes from them
#   bash scripts/study.sh RESULTS [fp32|bf16] --docs  # train, save, then write
#       docs/study/report.md, claims.json and curves.png from docs/study/results alone
#
# Training first copies docs/study/results into RESULTS (never over a file there): a job
# whose records a machine before this one committed is not trained again. That holds only
# on data with the same transitions (jobs are named by the data's arrays hash), i.e. the
# `study` collection made again on a new machine (collection is seeded; docs/data's
# arrays_sha256 says whether it came out the same).
#
# Needs BENCH_LOCAL_DATA_DIR holding <Task>-local-study.hdf5 (bench collect --profile study).
# Seed 0 of every job runs first, so that the curves that choose the budgets come early.
# The study's transitions are named in docs/study/data.json: training refuses, exit 2, a data
# file whose transitions differ (collection repeats on one kind of processor, not on every
# kind; docs/data/README.md). STUDY_DIR=docs/study/second-collection trains and saves the
# study of the second collection's transitions instead.
# Environment: STUDY_TASKS (default BallRun,CarRun,DroneRun,CarCircle), STUDY_METHODS,
# STUDY_SEEDS (default "0 1,2": the groups run one after the other), JOBS (default 2),
# PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:?usage: bash scripts/study.sh RESULTS [fp32|bf16] [--save|--docs]}"
precision="${2:-fp32}"
mode="${3:-}"
case "$mode" in ""|--save|--docs) ;; *) echo "study.sh: unknown mode $mode; use --save or --docs" >&2; exit 2;; esac
tasks="${STUDY_TASKS:-BallRun,CarRun,DroneRun,CarCircle}"
methods="${STUDY_METHODS:-LSPC,LSPC-code,BC-All,BC-Safe}"
python="${PYTHON:-.venv/bin/python}"
export DSRL_SUPPRESS_IMPORT_ERROR=1

# the study's folder: its transitions (data.json), its records (results/), its documents
study_dir="${STUDY_DIR:-docs/study}"
out="$study_dir/results"
if [ ! -f "$study_dir/data.json" ]; then
  echo "study.sh: $study_dir/data.json is missing: it names the transitions the study trains on" >&2
  exit 2
fi

if [ "$mode" != --save ]; then
  # only on the study's transitions (docs/study/data.json), and committed records only onto
  # the data they were made on: a report would average records of two datasets
  "$python" - "$out" "$tasks" "$study_dir/data.json" <<'PY' || exit 2
import json, sys
from pathlib import Path

from tasks.datasets import file_arrays_sha256, local_path
from tasks.registry import get_task

found = {}
def transitions(task):
    if task not in found:
        path = local_path(get_task(task), "study")
        found[task] = (path, file_arrays_sha256(path) if path.exists() else None)
    return found[task]

study = json.loads(Path(sys.argv[3]).read_text())["arrays_sha256"]
for task in sys.argv[2].split(","):
    path, sha = transitions(task)
    if sha is not None and task in study and sha != study[task]:
        machine = {}
        card = path.with_name(path.name + ".card.json")
        if card.exists():
            machine = json.loads(card.read_text()).get("timing", {}).get("machine", {})
        other = [str(named.parent) for named in sorted(Path("docs/study").rglob("data.json"))
                 if json.loads(named.read_text())["arrays_sha256"].get(task) == sha]
        sys.exit(f"study.sh: {path} holds other transitions ({sha[:12]}) than the study's "
                 f"({study[task][:12]}, {sys.argv[3]}): this machine "
                 f"({machine.get('cpu', 'its processor is not on the card')}) collected "
                 "them otherwise (docs/data/README.md); train where the collection gives the "
                 "study's transitions, or on a study whose data.json names these ("
                 + (f"they are {other[0]}'s: STUDY_DIR={other[0]}" if other else "STUDY_DIR")
                 + ")")
for record in sorted(Path(sys.argv[1]).rglob("thr*-seed*.json")) if Path(sys.argv[1]).is_dir() else []:
    r = json.loads(record.read_text())
    path, sha = transitions(r["task"])
    if sha not in (None, r.get("dataset_arrays_sha256")):
        sys.exit(f"study.sh: {record} was made on other data than {path} (transitions "
                 f"{str(r.get('dataset_arrays_sha256'))[:12]}, the file's {sha[:12]}); "
                 "collect at the commit docs/data's card names, or move the records aside "
                 "to begin another study")
PY
  if [ -d "$out" ]; then
    mkdir -p "$results"
    cp -rn "$out/." "$results/"
  fi
  for seeds in ${STUDY_SEEDS:-0 1,2}; do
    "$python" -m bench run --tasks "$tasks" --methods "$methods" --seeds "$seeds" \
      --profile study --precision "$precision" --results "$results" --jobs "${JOBS:-2}"
  done
  "$python" -m bench report --results "$results" --profile study --compare paper --claims
fi

if [ -n "$mode" ]; then
  # the records (JSON) and each run's curve (CSV): what the document's tables, ledger and
  # figures are made from; never checkpoints
  mkdir -p "$out"
  # a run's curve only where a record of its job exists (a run of an abandoned job, other
  # data or another precision, is nobody's result)
  (cd "$results" && find . -path ./.plans -prune -o \( -name '*.json' ! -name '*.error.json' \
      ! -name 'progress.json' -o -name 'curve.csv' \) -type f -print) |
    while read -r file; do
      if [ "$(basename "$file")" = curve.csv ]; then
        run=$(basename "$(dirname "$file")"); job=${run#run-seed*-}; job=${job%%-thr*}
        task_dir=$(dirname "$(dirname "$(dirname "$file")")")
        [ -n "$(find "$results/$task_dir" -name "thr*-seed*-$job.json" -print -quit)" ] || continue
      fi
      mkdir -p "$out/$(dirname "$file")"
      cp "$results/$file" "$out/$file"
    done
  echo "copied: $out holds $(find "$out" -type f | wc -l) files"
fi

if [ "$mode" = --docs ]; then
  # what docs/reproduction.md shows, made from the copies alone (as a reader would)
  IFS=, read -r -a names <<< "$tasks"
  "$python" -m bench report --results "$out" --profile study --compare paper --claims \
    > "$study_dir/report.md"
  "$python" -m bench claims --results "$out" --format json > "$study_dir/claims.json"
  "$python" -m bench plot --kind curves --task "$tasks" --results "$out" \
    --out "$study_dir/curves" >/dev/null
  rm -f "$study_dir/curves.pdf"
  echo "written: $study_dir/report.md, claims.json, curves.png and curves.md (${#names[@]} tasks)"
fi
