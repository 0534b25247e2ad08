"""Crash-safe file writes: a reader sees the old file, the new one, or none, never a partial one."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"
FILE_MODE = 0o666  # what open(path, "w") asks for; the kernel then applies the umask or the folder's default ACL


def tmp_prefix(name: str) -> str:
    """Temporary files name their writer (host and pid), so debris of a killed writer can be told
    from a file another process is writing right now (`RunStore` removes the former)."""
    return f".{name}.{socket.gethostname()}-{os.getpid()}-"


def write_synced(path: Path | str, data: bytes) -> None:
    """Write bytes to `path` and fsync them, so a rename that publishes the file comes after its data."""
    with open(path, "wb") as f:
        _write_and_sync(f, data)


def _write_and_sync(f: BinaryIO, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def create_tmp(folder: Path, prefix: str, suffix: str = TMP_SUFFIX) -> tuple[int, Path]:
    """A new, empty temporary file `folder/{prefix}{random}{suffix}`, opened for writing: (descriptor, path).

    Not `tempfile.mkstemp`, which creates mode 0600 and so would publish files no other user can
    read. Asking for FILE_MODE lets the kernel apply the umask, or a default ACL of the folder, as
    for any file opened with open(path, "w"); reading the umask ourselves would need os.umask,
    which changes it for every thread of the process for a moment. O_EXCL and a random part make
    the name ours alone, as mkstemp does."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"  # hex: no '-', which RunStore splits names on
        try:
            return os.open(tmp, flags, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {prefix}*{suffix} in {folder}")


def atomic_write(path: Path | str, data: bytes) -> None:
    """Write bytes to `path` through a temporary file in the same folder, fsync, then rename. The
    file gets the mode that open(path, "w") would give it (0o666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_tmp(path.parent, tmp_prefix(path.name))
    try:
        with os.fdopen(fd, "wb") as f:
            _write_and_sync(f, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
