"""Writing a file so that no reader ever sees half of it: the one atomic writer of the harness.

The content goes to a temporary file in the target's own folder (so the rename stays on one
file system), then takes the target's name with os.replace: a reader finds the old file, the
new one, or none, never a torn one, and a process killed mid-write leaves only its temporary
file, which is removed when it can be. The file gets the mode a plain open() would give under
the process umask (mkstemp alone makes it private, and a colleague sharing the folder could
not read it), unless a mode is given.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """Where bench keeps what it can compute again (measured speeds, data files' hashes):
    $BENCH_CACHE_DIR, default ~/.cache/bench."""
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "bench")


def umask_mode() -> int:
    """The mode a plain open() would give a new file under the process umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask would, for a moment, in every thread)
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], None], mode: int | None = None,
                 overwrite: bool = True) -> Path:
    """Call `write(temporary path)`, then move the result to `path` in one step."""
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists; it is never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, umask_mode() if mode is None else mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text_atomic(path: Path, text: str, mode: int | None = None,
                      overwrite: bool = True) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text), mode, overwrite)
