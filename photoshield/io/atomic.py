"""Atomic file output that never overwrites the input: a temporary file beside the target, fsync, rename.

``atomic_write`` leaves either the old file or the complete new one, never a partial file, keeps the
permissions of the file it replaces and cleans up its temporary file on any failure. ``same_file``
tells whether an output path is the input file, so callers can refuse to overwrite it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import suppress
from pathlib import Path

from ..errors import ImageError


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (the same inode if both exist, else the same resolved path)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _file_mode(path: Path) -> int:
    """Permissions for the new file: those of the file it replaces, else 0o666 minus the umask."""
    with suppress(OSError):
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it: never a partial file."""
    if path.is_dir():
        raise ImageError(path, "is a directory; give a file name for the output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ImageError(path, f"cannot create the output file ({e.strerror or e})") from e
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException as e:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ImageError(path, f"cannot write the file ({e.strerror or e})") from e
        raise
    with suppress(OSError, AttributeError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
