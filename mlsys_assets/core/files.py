"""Atomic file writes: a reader (or a process started after a crash) sees the old file or the new one, never half of
one, and concurrent writers of the same file never share a temporary file.

The content goes to a temporary file of a unique name in the target's folder (so the rename stays on one file
system), is fsync'ed, and is renamed over the target; the folder is fsync'ed too, so the rename survives a power cut.
On any failure the temporary file is removed and the target keeps what it held. Standard library only: the
server and the code location's load path import this.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Replace `path` with what `write` writes to the temporary path it is given (creating the folder if needed);
    returns `path`. With concurrent writers the last rename wins, each file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(path))
        with open(tmp, "rb+") as written:  # what `write` wrote is on disk before the rename makes it the file
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(content))


def _mode_for(path: Path) -> int:
    """The target's permissions, else those of a new file under the umask (mkstemp makes its file 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without setting it (os.umask sets it: a race with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot open or sync a folder: the rename is still atomic
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
