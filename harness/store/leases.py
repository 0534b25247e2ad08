"""Leases: the per-run locks that let sweeps resume and run side by side on one store.

A process computing or changing a run holds its lease: a file `.claims/<run_id>` naming its owner,
"host pid boot_id start_time" (`_me`). A lease is written whole (a temporary file hard-linked onto its
name), so exactly one process wins it and a lease file is complete or absent. A lease of this host
whose process is gone (no such pid, or the pid is now another process: another boot or another start
time) is stale, and debris (an empty or garbled file) is no lease; both are taken over under an
exclusive lock (flock) on `.claims/.lock`. A lease of another host is never taken over: whether its
process runs cannot be told from here.

The folder keeps the name older harnesses gave it (`.claims/`, from before these locks were called
leases, a word the scientific claims now own alone): an older harness and this one sharing a store
still never compute one run at once.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from harness.files import FILE_MODE, create_tmp, tmp_prefix

LEASES = ".claims"  # the folder of a store's leases (its name predates the word: see the module docstring)


class Leases:
    """The leases of the store at `root`: `take` one, `holds`, `release`, and `owners` of those held now."""

    def __init__(self, root: Path):
        self.folder = Path(root) / LEASES

    def path(self, run_id: str) -> Path:
        """The lease file of a run."""
        return self.folder / run_id

    def take(self, run_id: str) -> bool:
        """Take the run for this process: a lease file under .claims/ naming its owner ("host pid
        boot_id start_time", `_me`). False when a live process holds it. A lease left by a process
        of this host that is gone (no such pid, or the pid is now another process: another boot or
        another start time, `_stale`), and debris (an empty or garbled lease file, as an older
        harness left when killed or out of disk space while writing one), are taken over under the
        leases lock.

        The lease is written whole: its text goes to a temporary file first, which is then
        hard-linked onto the lease's name. The link fails when that name exists, so exactly one
        process wins, and a lease file is either complete or absent."""
        self.folder.mkdir(exist_ok=True)
        path = self.path(run_id)
        me = _me()
        for _ in range(3):
            try:
                if _publish(path, me):
                    return True
            except FileExistsError:
                pass
            if self._remove_if(path, lambda owner: _stale(owner, path) or owner == me):
                continue
            return False
        return False

    def holds(self, run_id: str) -> bool:
        """Whether this process holds the run's lease."""
        return _read_owner(self.path(run_id)) == _me()

    def release(self, run_id: str) -> None:
        """Drop this process's lease on a run; a lease another process holds is left alone."""
        path = self.path(run_id)
        if _read_owner(path) == _me():
            path.unlink(missing_ok=True)

    def owners(self) -> dict[str, str]:
        """{run_id: owner ("host pid boot_id start_time"; `owner_words` for messages)} of leases held
        now. Leases of processes of this host that are gone (`_stale`), and debris, are removed on
        the way; a lease file this user cannot read is listed as "unreadable"."""
        out = {}
        for p in self.folder.iterdir() if self.folder.is_dir() else []:
            if p.name.startswith("."):
                continue
            owner = _read_owner(p)
            if owner is None:
                continue
            if owner is not _UNREADABLE and (_owner_fields(owner) is None or _stale(owner, p)):
                if self._remove_if(p, lambda owner, p=p: _stale(owner, p)):
                    continue
                owner = _read_owner(p)  # taken by a live process meanwhile
                if owner is None:
                    continue
            out[p.name] = "unreadable" if owner is _UNREADABLE else owner
        return out

    def _remove_if(self, path: Path, condition: Callable[[str], bool]) -> bool:
        """Remove a lease file when it is debris (empty or garbled) or `condition(owner)` holds,
        reading and removing it under the leases lock: without the lock, two processes that both
        read a dead owner could each remove the lease the other has just taken. True when the file
        is gone (removed, or released)."""
        with _LeasesLock(path.parent):
            owner = _read_owner(path)
            if owner is None:
                return True
            if owner is _UNREADABLE:
                return False  # whose it is cannot be told: never taken over
            if _owner_fields(owner) is not None and not condition(owner):
                return False
            _pause_for_tests("takeover")
            path.unlink(missing_ok=True)
            return True


def owner_words(owner: str) -> str:
    """A lease's owner for messages: "host pid" (the boot id and start time are for the store)."""
    fields = _owner_fields(owner)
    return owner if fields is None else f"{fields.host} {fields.pid}"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class _LeasesLock:
    """An exclusive lock (flock) on .claims/.lock: take-over of a dead process's lease reads and
    removes it as one step. flock is not guaranteed on network file systems."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"

    def __enter__(self) -> _LeasesLock:
        import fcntl

        try:  # FILE_MODE less the umask, so that other users sharing the store can lock it too
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, FILE_MODE)
        except PermissionError:  # another user's lock file: flock needs only a descriptor
            self.fd = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _pause_for_tests(point: str) -> None:
    """Testing hook: with HARNESS_TEST_PAUSE=DIR, a process reaching `point` writes
    DIR/<point>-<pid> and waits until DIR/go exists (to hold two processes at a critical point)."""
    folder = os.environ.get("HARNESS_TEST_PAUSE")
    if not folder:
        return
    import time

    Path(folder, f"{point}-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _me() -> str:
    """This process, as a lease file names its owner: "host pid boot_id start_time". The boot id
    and the process's start time (clock ticks since boot) tell this process from a later one that
    reuses its pid, after a restart or a pid wrap."""
    return f"{socket.gethostname()} {os.getpid()} {_boot_id()} {_start_time(os.getpid()) or '-'}"


def _boot_id() -> str:
    """This boot's id (/proc/sys/kernel/random/boot_id), '-' where the system has none."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"
    return text if text and not any(c.isspace() for c in text) else "-"


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None when it
    cannot be read (no such process, no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[-1].split()
        return fields[19].decode()  # the fields after the command name start at field 3
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _stale(owner: str, path: Path | None = None) -> bool:
    """A lease whose process is known to be gone: one of this host whose pid is not running, or is
    running another process. That is the case when the lease records another boot or another start
    time; a lease of an older harness ("host pid") records neither, and its process is another one
    when it started after the lease was written. A lease of another host is never stale: whether
    its process runs cannot be told from here. (A garbled owner is debris, not stale: see
    `_owner_fields`.)"""
    fields = _owner_fields(owner)
    if fields is None or fields.host != socket.gethostname():
        return False
    if not pid_alive(fields.pid):
        return True
    if fields.boot is None:  # an older harness's lease: only its file's age can tell
        return path is not None and _started_after(fields.pid, path)
    if fields.boot != "-" and fields.boot != _boot_id():
        return True
    now = _start_time(fields.pid)
    return fields.start != "-" and now is not None and now != fields.start


def _started_after(pid: int, path: Path) -> bool:
    """Whether process `pid` started after `path` was last written (so it cannot have written it):
    its start time (ticks since boot) over the clock's ticks per second, plus the boot time."""
    ticks = _start_time(pid)
    try:
        btime = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        written = path.stat().st_mtime
    except (OSError, StopIteration, ValueError, IndexError):
        return False
    if ticks is None:
        return False
    return btime + int(ticks) / os.sysconf("SC_CLK_TCK") > written + 1  # a second's slack: btime is rounded to seconds


class _Owner(NamedTuple):
    host: str
    pid: int
    boot: str | None  # None: a lease of an older harness, which recorded host and pid only
    start: str | None


def _owner_fields(owner: str) -> _Owner | None:
    """(host, pid, boot, start) of a lease's text: "host pid boot_id start_time", or "host pid" as
    older harnesses wrote it (boot and start None); None for debris (empty or garbled: leases are
    written whole, so a lease being written is never seen half-way)."""
    parts = owner.split()
    if len(parts) not in (2, 4) or not (parts[1].isascii() and parts[1].isdigit()) or int(parts[1]) <= 0:
        return None
    if len(parts) == 4 and not (parts[3] == "-" or (parts[3].isascii() and parts[3].isdigit())):
        return None
    boot, start = (parts[2], parts[3]) if len(parts) == 4 else (None, None)
    return _Owner(parts[0], int(parts[1]), boot, start)


_UNREADABLE = object()  # what _read_owner returns for a lease file that exists but cannot be read


def _read_owner(path: Path) -> str | None | object:
    """A lease file's text (non-UTF-8 bytes replaced, so such debris parses as garbled); None when
    there is no lease; _UNREADABLE when the file cannot be read (permissions, a folder)."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return _UNREADABLE


def _publish(path: Path, owner: str) -> bool:
    """Create the lease `path` holding `owner`, complete: the text is written to a temporary file
    (mode 0o666 less the umask) that is then hard-linked onto `path`. FileExistsError when a lease
    is there. True when the lease is ours.

    Where the file system has no hard links, the lease is created with O_EXCL and written, then
    read back under the leases lock: debris is removed only under that lock, so a lease taken for
    debris in the moment between its creation and its write is noticed (False), never held twice."""
    fd, tmp = create_tmp(path.parent, tmp_prefix(path.name))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(owner.encode())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
    try:
        os.write(fd, owner.encode())
    finally:
        os.close(fd)
    with _LeasesLock(path.parent):
        return _read_owner(path) == owner
