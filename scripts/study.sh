#!/usr/bin/env bash
# The converging study of docs/reproduction.md: LSPC, LSPC-code, BC-All and BC-Safe on the
# Bullet tasks whose `study` collection meets the DSRL-like targets (docs/data/README.md),
# 3 seeds, 3 thresholds, 20 episodes, budgets of the `study` profile (bench/profiles.py and
# each method's profile_steps), curves every 10k steps.
#
#   bash scripts/study.sh RESULTS [fp32|bf16]        # train (resumes: rerun the same command)
#   bash scripts/study.sh RESULTS [fp32|bf16] --docs # then copy records and curves to
#       docs/study/results and write docs/study/report.md, claims.json and curves.png from them
#
# Needs BENCH_LOCAL_DATA_DIR holding <Task>-local-study.hdf5 (bench collect --profile study).
# Seed 0 of every job runs first, so that the curves that choose the budgets come early.
# Environment: STUDY_TASKS (default BallRun,CarRun,DroneRun,CarCircle), STUDY_METHODS,
# JOBS (default 2), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
results="${1:?usage: bash scripts/study.sh RESULTS [fp32|bf16] [--docs]}"
precision="${2:-fp32}"
tasks="${STUDY_TASKS:-BallRun,CarRun,DroneRun,CarCircle}"
methods="${STUDY_METHODS:-LSPC,LSPC-code,BC-All,BC-Safe}"
python="${PYTHON:-.venv/bin/python}"
export DSRL_SUPPRESS_IMPORT_ERROR=1

for seeds in 0 1,2; do
  "$python" -m bench run --tasks "$tasks" --methods "$methods" --seeds "$seeds" \
    --profile study --precision "$precision" --results "$results" --jobs "${JOBS:-2}"
done
"$python" -m bench report --results "$results" --profile study --compare paper --claims

if [ "${3:-}" = "--docs" ]; then
  # the records (JSON) and each run's curve (CSV): what the document's tables, ledger and
  # figures are made from; never checkpoints
  out=docs/study/results
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
  echo "copied $(find "$out" -type f | wc -l) files to $out"
  # what docs/reproduction.md shows, made from the copies alone (as a reader would)
  IFS=, read -r -a names <<< "$tasks"
  "$python" -m bench report --results "$out" --profile study --compare paper --claims \
    > docs/study/report.md
  "$python" -m bench claims --results "$out" --format json > docs/study/claims.json
  "$python" -m bench plot --kind curves --task "$tasks" --results "$out" \
    --out docs/study/curves >/dev/null
  rm -f docs/study/curves.pdf
  echo "written: docs/study/report.md, claims.json, curves.png and curves.md (${#names[@]} tasks)"
fi
