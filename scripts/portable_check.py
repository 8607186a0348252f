"""Do portable kernels give the same transitions on this processor as on the ones before it?

    python scripts/portable_check.py [--profile smoke|study] [--tasks BallRun,DroneRun] [--record]

Collects the tasks with `bench collect --kernels portable` into a temporary folder (or reads
the portable collections already in the folder --data names) and holds their arrays hashes against docs/data/portable.json, which lists per
profile and task the hash and the processors that made it. Prints one line per task: "same"
(made on another processor before: the evidence portability holds), "differs" (exit 1), or
"new". --record adds this processor (and the new tasks) to the file: to a task's `made_on`
where same, to its `differs_on` (with the hash made here) where not. Collection repeats bit
for bit on one processor in any case, so only another kind of processor adds evidence.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LEDGER = ROOT / "docs" / "data" / "portable.json"


def collect(tasks: list[str], profile: str, folder: Path) -> None:
    env = dict(os.environ, BENCH_LOCAL_DATA_DIR=str(folder), DSRL_SUPPRESS_IMPORT_ERROR="1")
    subprocess.run([sys.executable, "-m", "bench", "collect", "--tasks", ",".join(tasks),
                    "--profile", profile, "--kernels", "portable",
                    "--jobs", str(min(len(tasks) * 2, os.cpu_count() or 1))],
                   cwd=ROOT, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", choices=["smoke", "quick", "study"])
    parser.add_argument("--tasks", default="BallRun")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--data", help="a folder holding the portable collections already "
                                       "(default: collect them into a temporary one)")
    args = parser.parse_args()

    from tasks.collect.cards import machine
    from tasks.datasets import file_arrays_sha256, local_path
    from tasks.registry import get_task

    tasks = [get_task(name).name for name in args.tasks.split(",")]
    ledger = json.loads(LEDGER.read_text()) if LEDGER.exists() else {
        "about": "Arrays hashes of `bench collect --kernels portable` per profile and task "
                 "(seed 0), with the processors that made each (made_on) and those where "
                 "the collector of the commit named gave other transitions (differs_on) "
                 "(scripts/portable_check.py)",
        "hashes": {}}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.data) if args.data else Path(scratch)
        missing = [task for task in tasks
                   if not (folder / local_path(get_task(task), args.profile).name).exists()]
        if missing:
            collect(missing, args.profile, folder)
        here = None
        differs = False
        for task in tasks:
            path = folder / local_path(get_task(task), args.profile).name
            card = json.loads(path.with_name(path.name + ".card.json").read_text())
            made_on = card["timing"]["machine"]
            if made_on.get("kernels") != "portable":
                print(f"{task}: {path} was collected with native kernels; give --data a "
                      "folder of portable collections, or leave it out", file=sys.stderr)
                return 2
            isa = made_on.get("isa") or machine()["isa"]  # cards before the field: made here
            here = f"{made_on['cpu']} ({', '.join(isa) or 'no AVX2'})"
            sha = file_arrays_sha256(path)
            entry = ledger["hashes"].setdefault(args.profile, {}).get(task)
            if entry is None:
                print(f"{task} ({args.profile}): new, {sha[:16]} on {here}")
                ledger["hashes"][args.profile][task] = {
                    "arrays_sha256": sha, "collector_commit": card.get("harness_commit"),
                    "made_on": [here]}
            elif entry["arrays_sha256"] == sha:
                print(f"{task} ({args.profile}): same, {sha[:16]}, as on "
                      f"{', '.join(entry['made_on'])}; here: {here}")
                if here not in entry["made_on"]:
                    entry["made_on"].append(here)
            else:
                differs = True
                print(f"{task} ({args.profile}): DIFFERS here ({here}): {sha[:16]}, against "
                      f"{entry['arrays_sha256'][:16]} on {', '.join(entry['made_on'])}")
                # evidence too: where portability fails, and with what
                entry.setdefault("differs_on", {})[here] = {
                    "arrays_sha256": sha, "collector_commit": card.get("harness_commit")}
    if args.record:
        LEDGER.write_text(json.dumps(ledger, indent=1) + "\n")
        print(f"recorded in {LEDGER.relative_to(ROOT)}")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
