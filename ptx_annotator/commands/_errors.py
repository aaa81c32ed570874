"""One readable line for the operating-system errors a command can meet (path, cause, what to do)."""

from __future__ import annotations

import errno


def os_error_message(exc: OSError) -> str:
    """``exc`` in words: which file, what went wrong, and what to do about it."""
    path = getattr(exc, "filename", None)
    where = f"'{path}'" if path else "a file"
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        return (f"No space left on the disk while writing {where}: free some space or write elsewhere "
                "(--out / --store). Files are written atomically, so nothing was half-written.")
    if code == errno.EROFS:
        return f"{where} lies on a read-only file system: write elsewhere with --store DIR or --out PATH."
    if code == errno.EDQUOT:
        return f"Disk quota exceeded while writing {where}: free some space or write elsewhere."
    if isinstance(exc, FileExistsError):
        return f"{where} already exists: choose another output path, or move the existing one away first."
    if isinstance(exc, IsADirectoryError):
        return f"{where} is a folder where a file is needed: give a file name (inside that folder, if you like)."
    if isinstance(exc, NotADirectoryError):
        return f"{where} (or a folder above it) is a file where a folder is needed: check the path."
    if isinstance(exc, FileNotFoundError):
        return f"{where} does not exist: check the path."
    if isinstance(exc, PermissionError):
        return f"No permission to use {where}: choose a place you may read and write, or fix its permissions."
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason} ({where}): check the path and the disk."


def overflow_message(exc: OverflowError) -> str:
    return f"A number given is too large for what it sets ({exc}): check the arguments' ranges in --help."
