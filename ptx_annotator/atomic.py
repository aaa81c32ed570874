"""Crash-safe file writes (temp file in the same folder, fsync, rename, fsync the folder), and a file's hash."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


@contextmanager
def atomic_path(target, suffix: str = ""):
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    ``suffix`` is the temporary name's ending (writers such as nibabel choose the format by it).
    Whatever writes to the yielded path must close it; this context fsyncs it, renames it over
    ``target`` and fsyncs the folder. On error the temporary file is removed and ``target`` is
    left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(target.parent)


def write_bytes_atomic(target, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_json_atomic(target, payload) -> None:
    write_bytes_atomic(target, (json.dumps(payload, indent=1, sort_keys=False) + "\n").encode())


def _fsync_file(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB blocks (checkpoints, committed masks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
