"""Disk problems said plainly: a full disk, a read-only or unwritable MLSYS_HOME.

DuckDB, SQLite, SQLAlchemy and the OS each report these in their own words, deep inside a library
(`TransactionContext Error: Failed to commit`, `attempt to write a readonly database`, `[Errno 28]`).
`storage_problem` recognises them in an exception or its causes; `StorageError` names the path, what
is wrong with it and what to do, and is what a run, a step or the command line shows instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FULL = "no space left on the device"
READ_ONLY = "on a read-only file system"
DENIED = "not writable by this user"

_ERRNOS = {errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EROFS: READ_ONLY, errno.EACCES: DENIED,
           errno.EPERM: DENIED}
# How DuckDB and SQLite word the same three problems (they raise their own exception types, without errno).
_MESSAGES = (
    ("no space left on device", FULL), ("database or disk is full", FULL), ("disk quota exceeded", FULL),
    ("read-only file system", READ_ONLY), ("attempt to write a readonly database", READ_ONLY),
    ("permission denied", DENIED),
)
_ADVICE = {
    FULL: "free some space there, or point MLSYS_HOME (or the variable for this path) at a larger disk",
    READ_ONLY: "point MLSYS_HOME (or the variable for this path) at a writable folder",
    DENIED: "give this user write access to it, or point MLSYS_HOME (or the variable for this path) elsewhere",
}


class StorageError(RuntimeError):
    """A path the system must write to cannot be written; the message says which, why and what to do."""

    def __init__(self, path: str | os.PathLike, problem: str, detail: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        free = free_mb(path)
        where = f"{self.path} is {problem}" if problem != FULL else f"{problem} for {self.path}"
        space = f" ({_mb(free)} free)" if free is not None and problem == FULL else ""
        super().__init__(f"{where}{space}: {_ADVICE.get(problem, 'check the disk')}"
                         + (f" [{detail}]" if detail else ""))


def storage_problem(exc: BaseException | None) -> str | None:
    """FULL, READ_ONLY or DENIED if `exc` (or an exception it was raised from) is that disk problem, else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageError):
            return exc.problem
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            if _ERRNOS[exc.errno] != DENIED or exc.filename:  # a socket's EACCES (a low port) is not a disk's
                return _ERRNOS[exc.errno]
            return None
        text = str(exc).lower()
        for words, problem in _MESSAGES:
            if words in text:
                return problem
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__  # `orig`: SQLAlchemy's DBAPI error
    return None


def as_storage_error(exc: BaseException, path: str | os.PathLike) -> StorageError | None:
    """The plain-words error for `exc` about `path`, or None when `exc` is not a disk problem."""
    if isinstance(exc, StorageError):
        return exc
    problem = storage_problem(exc)
    return StorageError(path, problem, detail=_first_line(exc)) if problem else None


@contextmanager
def plain_storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a disk problem inside the block as a StorageError about the file the OS error names, else about
    `path`; the library's own error stays attached as its cause. Other errors pass through untouched."""
    try:
        yield
    except Exception as exc:
        error = as_storage_error(exc, getattr(exc, "filename", None) or path)
        if error is None or error is exc:
            raise
        raise error from exc


def free_mb(path: str | os.PathLike) -> float | None:
    """Free space on the disk holding `path` (or its nearest existing parent), in MB."""
    try:
        return shutil.disk_usage(_existing(path)).free / 2**20
    except OSError:
        return None


def check_disk(path: str | os.PathLike, min_free_mb: float, setting: str = "MLSYS_MIN_FREE_MB") -> None:
    """Raise StorageError if the disk holding `path` is mounted read-only or has less than `min_free_mb` free: one
    statvfs call, cheap enough before every write (proving a folder writable, `ensure_writable`, costs an fsync)."""
    try:
        stat = os.statvfs(_existing(path))
    except OSError:
        return
    if stat.f_flag & os.ST_RDONLY:
        raise StorageError(path, READ_ONLY)
    if stat.f_bavail * stat.f_frsize / 2**20 < min_free_mb:
        raise StorageError(path, FULL, detail=f"less than the {_mb(min_free_mb)} required ({setting})")


def _existing(path: str | os.PathLike) -> Path:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def ensure_writable(folder: str | os.PathLike, min_free_mb: float = 0.0) -> Path:
    """Create `folder` if needed and prove it can be written (a small file written, synced and removed), with at
    least `min_free_mb` free; raise StorageError otherwise. Called before work starts, so a bad MLSYS_HOME is one
    clear sentence instead of a failure in the middle of a run."""
    folder = Path(folder)
    probe = folder / f".mlsys-write-probe-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        error = as_storage_error(exc, folder)  # about the folder, not the probe file the OS error names
        if error is None:
            raise
        raise error from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    check_disk(folder, min_free_mb)
    return folder


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _mb(value: float) -> str:
    return f"{value:,.1f} MB" if value < 10 else f"{value:,.0f} MB"
