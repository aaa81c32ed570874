"""The writer lock of one annotator's folder: one process at a time may write its mask.

Cross-platform through :mod:`filelock` (``flock`` on POSIX, ``msvcrt`` on Windows); the lock
is released by the operating system when the holding process dies, so a crash never leaves a
study locked. Who holds it (pid, host, since when) is written beside it for the refusal message.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from ptx_annotator.errors import AnnotationLockedError
from ptx_annotator.review.states import utc_now

LOCK_NAME = ".lock"
HOLDER_NAME = ".lock-holder.json"


class WriterLock:
    """An exclusive lock on one annotator's folder, held until :meth:`release` or process exit."""

    def __init__(self, folder: Path, annotator: str):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.annotator = annotator
        self._lock: FileLock | None = None

    def acquire(self) -> "WriterLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, timeout=0, thread_local=False, preserve_lock_file=True)
        try:
            lock.acquire()
        except Timeout:
            raise AnnotationLockedError(
                f"The mask of annotator '{self.annotator}' is open for writing by another session "
                f"({read_holder(self.folder)}). Close that session, or open this one under another annotator name."
            ) from None
        try:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
            (self.folder / HOLDER_NAME).write_text(json.dumps(info))
        except OSError:
            pass  # the holder note only improves a refusal message; the lock itself is held
        self._lock = lock
        return self

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def __enter__(self) -> "WriterLock":
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_holder(folder: Path) -> str:
    """Who holds the lock of ``folder``, in words (for messages)."""
    try:
        info = json.loads((Path(folder) / HOLDER_NAME).read_text() or "{}")
        return f"process {info.get('pid')} on {info.get('host')} since {info.get('since')}"
    except (OSError, ValueError, AttributeError):
        return "unknown process"
