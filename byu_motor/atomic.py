"""Atomic file writes: a temp file in the target's folder renamed over it, so a kill never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    """The process umask. Setting it is the only portable way to read it, so it is read once, at import,
    before any thread of ours writes (another thread creating a file in between would get umask 0)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates its file with mode 0600; the renamed file gets the mode any new file would (0644 under
# the usual umask 022), so outputs are readable by the group and others like files written with open()
_FILE_MODE = 0o666 & ~_read_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], text: bool = False) -> Path:
    """Call ``write(fh)`` on a temp file next to ``path``, fsync it, then ``os.replace`` it onto ``path``.

    Args:
        path: destination; its folder is created if needed.
        write: writes the content to the open file handle.
        text: open the temp file in text mode (``newline=""``) instead of binary.

    Returns:
        ``path`` as a ``Path`` with the mode of a newly created file (0644 under umask 022). On any exception
        the temp file is removed and the old ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "w" if text else "wb", **({"newline": ""} if text else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
