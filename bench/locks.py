"""One lock per job, so that `bench run` processes sharing a results folder (on one machine, or
on several over a shared file system) never run the same job twice.

The lock is an advisory `flock` on a file beside the job's artifacts. The kernel drops it when
its owner dies, however it dies (kill -9, OOM, power loss on a remote file system's client):
a dead owner never blocks anyone, and no stale-lock heuristics are needed. The file itself
stays and holds who took it last (host, pid, start time), for `bench status`.

File systems: flock works on local disks and on NFSv4 (Linux maps it to byte-range locks);
on a file system without locks, opening raises and the job fails with that message rather
than running unguarded.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path


class JobLock:
    """`with JobLock(path) as held:` held is False when another live process has the job."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                            "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner, 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(path: Path) -> bool:
    """Whether a live process holds the lock at `path` now (a probe that takes nothing)."""
    path = Path(path)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def owner(path: Path) -> dict:
    """Who took the lock last ({} if never or unreadable)."""
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
