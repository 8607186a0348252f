#!/usr/bin/env bash
# Write docs/data/ from a folder of local datasets: the `bench datasets` JSON of a suite (file
# names only, no machine paths; the rows of tasks the folder lacks are kept), its sheet of
# reward-cost scatters (the folder's tasks), one scatter per task.
# Usage: bash scripts/docs_data.sh DATA_DIR [PROFILE] [SUITE]   (default: study bullet)
set -euo pipefail
cd "$(dirname "$0")/.."
data="$1"; profile="${2:-study}"; suite="${3:-bullet}"
py="${PYTHON:-.venv/bin/python}"
out=docs/data
mkdir -p "$out"
BENCH_LOCAL_DATA_DIR="$data" "$py" -m bench datasets \
  --suite "$suite" --format json | "$py" -c '
import json, sys
from pathlib import Path
rows = [r for r in json.load(sys.stdin) if r["source"] == "local" and r["profile"] == sys.argv[1]]
for row in rows:
    row["file"] = Path(row.pop("path")).name
# the tasks this folder lacks keep their rows (a machine may hold only some of the files)
target = Path(sys.argv[2])
kept = json.loads(target.read_text()) if target.exists() else []
new = {row["task"]: row for row in rows}
merged = [new.pop(row["task"], row) for row in kept] + list(new.values())
target.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")' "$profile" "$out/$suite-$profile.json"
BENCH_LOCAL_DATA_DIR="$data" "$py" -m bench plot --kind datasets \
  --suite "$suite" --profile "$profile" --data local --out "$out/$suite-$profile"
rm -f "$out/$suite-$profile.pdf"
for png in "$data"/*-local-"$profile".png; do
  [ -e "$png" ] && cp "$png" "$out/"
done
echo "written: $out/$suite-$profile.json, $out/$suite-$profile.png and the per-task scatters"
