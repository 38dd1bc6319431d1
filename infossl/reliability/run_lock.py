"""One writer per run directory: two ``train.py`` started with one ``--name`` cannot both write.

The lock is ``fcntl.flock`` on a small file beside the run directory
(``<run-root>/.<name>.lock``), taken *before* the run directory is created or resumed, so the
whole "new or resume?" decision happens under it. The kernel drops a flock when its file is
closed, which happens at any process exit, SIGKILL included: a crashed run never leaves a stale
lock behind (the advantage over an ``O_CREAT|O_EXCL`` marker file). The file stays on disk
holding the holder's pid/host for the error message; its existence means nothing.

train.py takes it in the launching process for every run it creates, resumes or forks into,
and holds it until the run ends. flock works on local disks and NFSv4 (where Linux maps it onto
POSIX locks); on NFSv3 mounted with ``nolock`` it is a no-op, so two jobs on different hosts
would not be stopped there.
Only the launching process (global rank 0) takes it: the fd is not inherited by Lightning's
DDP child processes (Python opens files close-on-exec).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from infossl.rundir import RunDirError


class RunLockedError(RunDirError):
    """Another live process holds the run directory; the message is one line (exit 2)."""


class RunDirLock:
    """Exclusive, non-blocking lock on ``run_dir``; ``with RunDirLock(d): ...`` or
    ``acquire()`` / ``release()``.

    Held until ``release()`` or the end of the process, even if the object itself is dropped
    (deliberately no ``__del__``); ``acquire`` raises ``RunLockedError`` (one line) when another
    live process holds it.

    Args:
        run_dir: the run directory; the lock file is ``.<name>.lock`` beside it.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir.parent / f".{self.run_dir.name}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunDirLock:
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.run_dir} is in use by another run ({holder}); wait for "
                "it to finish or choose another --name"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only fd of this open file drops the flock

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
