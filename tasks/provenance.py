"""Where a result came from: the harness's version and commit, and the versions of the
packages that computed it. The one helper every writer of records, datasets and cards uses
(it lives in tasks/, the bottom layer, so that tasks can use it too)."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def harness_version() -> str:
    """The harness's version from its package metadata ("unknown" when not installed)."""
    try:
        return metadata.version("lspc-bench")
    except metadata.PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def harness_commit() -> tuple[str | None, bool | None]:
    """(commit, whether tracked files differ from it) of the checkout this code runs from;
    (None, None) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=REPO, capture_output=True, text=True,
                                    timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
    return sha, (dirty if sha else None)


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each distribution ("missing" where it is not installed)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found
