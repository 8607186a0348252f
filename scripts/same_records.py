"""Do two results folders hold the same records, clocks, worker and commit aside?

    python scripts/same_records.py BEFORE AFTER

For a change meant to leave results alone (issue 21: the fp32 path after --precision): run the
same `bench run` selection with the harness before and after the change, one results folder
each, then compare. Records are matched by their path (method, task, threshold, seed, job
hash: a changed hash is a missing record); every field but the volatile ones must be equal,
numbers bit for bit. Exits 0 when they are the same, 1 with the differences listed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.records import comparable_records

def differences(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    lines = [f"only in the first: {name}" for name in sorted(set(before) - set(after))]
    lines += [f"only in the second: {name}" for name in sorted(set(after) - set(before))]
    for name in sorted(set(before) & set(after)):
        a, b = before[name], after[name]
        for key in sorted(set(a) | set(b)):
            if a.get(key, "<absent>") != b.get(key, "<absent>"):
                lines.append(f"{name}: {key}: {str(a.get(key, '<absent>'))[:80]} != "
                             f"{str(b.get(key, '<absent>'))[:80]}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    before, after = (comparable_records(Path(folder)) for folder in argv)
    if not before:
        print(f"no records under {argv[0]}", file=sys.stderr)
        return 2
    lines = differences(before, after)
    for line in lines:
        print(line)
    print(f"{len(before)} and {len(after)} records: "
          + ("the same" if not lines else f"{len(lines)} differences"))
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
