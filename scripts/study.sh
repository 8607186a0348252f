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
#       docs/study/report.md, claims.json, code_claims.json and curves.png from docs/study/results alone
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
# kind; docs/data/README.md), and so does a precision other than the study's (data.json's
# `precision`; bench/study.py). STUDY_DIR names another study: docs/study/portable (fp32, on
# data collected with --kernels portable, which any x86-64 machine can make) or
# docs/study/second-collection (bf16, the second collection's transitions).
# Environment: STUDY_TASKS (default BallRun,CarRun,DroneRun,CarCircle), STUDY_METHODS,
# STUDY_SEEDS (default "0 1,2": the groups run one after the other), JOBS (default 2),
# PYTHON (default .venv/bin/python). Each `bench run` gives its jobs the machine's cores
# divided by JOBS, unaware of a second study.sh beside it (e.g. STUDY_METHODS=BC-All,BC-Safe
# next to the LSPC stream): set BENCH_THREADS_PER_JOB=1 in both, or the threads outnumber
# the cores and every job crawls (docs/reproduction.md, "What is left").
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:?usage: bash scripts/study.sh RESULTS [fp32|bf16] [--save|--docs]}"
precision="${2:-fp32}"
mode="${3:-}"
case "$mode" in ""|--save|--docs) ;; *) echo "study.sh: unknown mode $mode; use --save or --docs" >&2; exit 2;; esac
tasks="${STUDY_TASKS:-BallRun,CarRun,DroneRun,CarCircle}"
methods="${STUDY_METHODS:-LSPC,LSPC-code,BC-All,BC-Safe}"
python="${PYTHON:-.venv/bin/python}"
code_claims_methods=BC-All,BC-Safe,LSPC-S-code,LSPC-O-code
export DSRL_SUPPRESS_IMPORT_ERROR=1

# the study's folder: its transitions (data.json), its records (results/), its documents
study_dir="${STUDY_DIR:-docs/study}"
out="$study_dir/results"
if [ "$mode" != --save ]; then
  # only on the study's transitions and in its precision (its data.json), and committed
  # records only onto the data they were made on: a report would average two datasets
  "$python" -m bench.study check "$study_dir" "$tasks" "$precision" "$out" || exit 2
  if [ -d "$out" ]; then
    mkdir -p "$results"
    cp -rn "$out/." "$results/"
  fi
  for seeds in ${STUDY_SEEDS:-0 1,2}; do
    "$python" -m bench run --tasks "$tasks" --methods "$methods" --seeds "$seeds" \
      --profile study --precision "$precision" --results "$results" --jobs "${JOBS:-2}"
  done
  "$python" -m bench report --results "$results" --profile study --compare paper --claims
  # the same claims put to the authors' code, the paper's LSPC as yardstick (reports/claims.py)
  "$python" -m bench claims --results "$results" --claims reports/lspc_code_claims.json \
    --methods "$code_claims_methods"
fi

if [ -n "$mode" ]; then
  # the records (JSON) of the study's precision and their runs' curves (CSV): what the
  # document's tables, ledger and figures are made from; never checkpoints (bench/study.py)
  study_precision=$("$python" -m bench.study precision "$study_dir")
  if [ "$precision" != "$study_precision" ]; then
    echo "study.sh: $study_dir trains in $study_precision ($study_dir/data.json), not in $precision: save with $study_precision" >&2
    exit 2
  fi
  mkdir -p "$out"
  "$python" -m bench.study saved "$results" "$precision" | while read -r file; do
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
  "$python" -m bench claims --results "$out" --claims reports/lspc_code_claims.json \
    --methods "$code_claims_methods" --format json > "$study_dir/code_claims.json"
  "$python" -m bench plot --kind curves --task "$tasks" --results "$out" \
    --out "$study_dir/curves" >/dev/null
  rm -f "$study_dir/curves.pdf"
  echo "written: $study_dir/report.md, claims.json, code_claims.json, curves.png and curves.md (${#names[@]} tasks)"
fi
