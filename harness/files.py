"""Crash-safe file writes: a reader sees the old file, the new one, or none, never a partial one."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def tmp_prefix(name: str) -> str:
    """Temporary files name their writer (host and pid), so debris of a killed writer can be told
    from a file another process is writing right now (`RunStore` removes the former)."""
    return f".{name}.{socket.gethostname()}-{os.getpid()}-"


def write_synced(path: Path | str, data: bytes) -> None:
    """Write bytes to `path` and fsync them, so a rename that publishes the file comes after its data."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path | str, data: bytes) -> None:
    """Write bytes to `path` through a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix(path.name), suffix=TMP_SUFFIX)
    try:
        os.close(fd)
        write_synced(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
