"""The run store: one folder per run, named by the hash of its resolved config.

    runs/<run_id>/config.json       resolved config, run id, format version
                  checkpoint.pt     state dict (loaded with weights_only=True)
                  history.parquet   one row per epoch
                  run.parquet       the run's row of the runs table
                  provenance.json   package versions, git commit, host, device, times, command
                  <table>.parquet   evaluation tables added later (each written atomically)
                  <kind>_settings.json  the settings those tables were computed with: removed
                                    before new tables of its kind are written and written last,
                                    so tables are trusted only when their settings file is there

A run folder is built under a temporary name and renamed into place in one step, so a run killed
at any moment leaves either a complete folder or none. Finished runs are never recomputed unless
asked (`force`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from .config import RunConfig, from_dict
from .errors import StoreError
from .files import TMP_SUFFIX, atomic_write, write_synced

RUN_FILES = ("config.json", "checkpoint.pt", "history.parquet", "run.parquet", "provenance.json")
SETTINGS_SUFFIX = "_settings.json"  # an evaluation's settings file: present only beside complete tables


def default_root() -> Path:
    """$HARNESS_STORE, else runs/ in the current directory."""
    root = os.environ.get("HARNESS_STORE", "runs")
    if not root.strip():
        raise StoreError("HARNESS_STORE is empty: set it to a folder for the run store, or unset it for runs/")
    return Path(root)


class RunStore:
    def __init__(self, root: str | Path | None = None):
        if root is not None and str(root).strip() == "":
            raise StoreError("--store is empty: name a folder for the run store (default: $HARNESS_STORE or runs/)")
        self.root = Path(root) if root is not None else default_root()
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the run store {self.root} is a file, not a folder: name a folder with --store")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the run store {self.root}: {exc.strerror}; choose a writable folder with --store") from None
        self.damaged: dict[str, str] = {}  # run id: what is wrong, for runs found damaged while reading
        self._clean_stale()

    def check_writable(self) -> None:
        """Fail before any computation when the store cannot take new files (read-only, full)."""
        probe = self.root / f".probe-{socket.gethostname()}-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise StoreError(f"the run store {self.root} is not writable ({exc.strerror}); free space or choose another folder with --store") from None
        finally:
            probe.unlink(missing_ok=True)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_complete(self, run_id: str) -> bool:
        return (self.path(run_id) / "run.parquet").is_file()

    def run_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / "run.parquet").is_file())

    def commit(self, run_id: str, write: Callable[[Path], None], force: bool = False) -> Path:
        """Call `write(folder)` on a fresh temporary folder, then move it into place atomically.

        Without `force`, a run that another process finished first is kept and this one dropped.
        """
        tmp = self.root / f".tmp-{run_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        tmp.mkdir()
        try:
            write(tmp)
            _fsync_dir(tmp)
            final = self.path(run_id)
            if final.exists():
                if not force:
                    shutil.rmtree(tmp)
                    return final
                trash = self.root / f".trash-{run_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
                os.replace(final, trash)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
            _fsync_dir(self.root)
            return final
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def commit_files(self, run_id: str, files: dict[str, bytes], force: bool = False) -> Path:
        """A new run folder holding `files` ({name: bytes}), moved into place atomically."""

        def write(folder: Path) -> None:
            for name, data in files.items():
                write_synced(folder / name, data)  # on disk before the folder is renamed into place

        return self.commit(run_id, write, force=force)

    def add_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Add an evaluation's files to a finished run as one unit: its settings files
        (`*_settings.json`, which come last in `files`) are removed first, then every file is
        written atomically in the given order. Killed or out of disk space in between, the run has
        tables without settings, which every reader treats as a pending evaluation, never as
        finished tables under old settings. Callers hold the run's claim."""
        folder = self.path(run_id)
        for name in files:
            if name.endswith(SETTINGS_SUFFIX):
                (folder / name).unlink(missing_ok=True)
        _fsync_dir(folder)
        for name, data in files.items():
            atomic_write(folder / name, data)

    # -- claims and failures: what lets sweeps resume and run side by side ---------------------------

    def claim(self, run_id: str) -> bool:
        """Take the run for this process (an exclusive file under .claims/). False when a live
        process holds it; a claim left by a dead process of this host is taken over."""
        folder = self.root / ".claims"
        folder.mkdir(exist_ok=True)
        path = folder / run_id
        me = _me()
        for _ in range(3):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._remove_claim_if(path, lambda owner: _stale_claim(owner) or owner == me):
                    continue
                return False
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return True
        return False

    def _remove_claim_if(self, path: Path, condition: Callable[[str], bool]) -> bool:
        """Remove a claim file when `condition(owner)` holds, reading and removing it under the
        claims lock: without the lock, two processes that both read a dead owner could each remove
        the claim the other has just taken. True when the file is gone (removed, or released)."""
        with _ClaimsLock(path.parent):
            try:
                owner = path.read_text()
            except FileNotFoundError:
                return True
            except OSError:
                return False
            if not condition(owner):
                return False
            _pause_for_tests("takeover")
            path.unlink(missing_ok=True)
            return True

    def holds(self, run_id: str) -> bool:
        """Whether this process holds the run's claim."""
        try:
            return (self.root / ".claims" / run_id).read_text() == _me()
        except OSError:
            return False

    def release(self, run_id: str) -> None:
        """Drop this process's claim on a run; a claim another process holds is left alone."""
        path = self.root / ".claims" / run_id
        try:
            if path.read_text() == _me():
                path.unlink(missing_ok=True)
        except OSError:
            pass

    def claimed(self) -> dict[str, str]:
        """{run_id: "host pid"} of claims held now (claims of dead processes of this host are
        removed on the way)."""
        folder = self.root / ".claims"
        out = {}
        for p in folder.iterdir() if folder.is_dir() else []:
            if p.name.startswith("."):
                continue
            try:
                owner = p.read_text()
            except OSError:
                continue
            if _stale_claim(owner):
                self._remove_claim_if(p, _stale_claim)
            else:
                out[p.name] = owner
        return out

    def record_failure(self, run_id: str, config: dict, error: str) -> None:
        """Remember that a run raised (it is retried only on request)."""
        blob = json.dumps({"run_id": run_id, "config": config, "error": error}, indent=2)
        atomic_write(self.root / ".failed" / f"{run_id}.json", blob.encode())

    def failure(self, run_id: str) -> str | None:
        path = self.root / ".failed" / f"{run_id}.json"
        return json.loads(path.read_text())["error"] if path.is_file() else None

    def clear_failure(self, run_id: str) -> None:
        (self.root / ".failed" / f"{run_id}.json").unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------------------

    def load_config(self, run_id: str) -> RunConfig:
        d = json.loads((self.path(run_id) / "config.json").read_text())
        return from_dict(d["config"])

    def load_state(self, run_id: str, device: str | torch.device = "cpu") -> dict:
        return load_checkpoint((self.path(run_id) / "checkpoint.pt").read_bytes(), run_id, self.path(run_id), device)

    def load_history(self, run_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.path(run_id) / "history.parquet")

    def load_row(self, run_id: str) -> dict:
        return self._read(run_id, "run").iloc[0].to_dict()

    def _read(self, run_id: str, name: str) -> pd.DataFrame:
        """One table of one run; a damaged file names the run and how to replace it."""
        path = self.path(run_id) / f"{name}.parquet"
        try:
            return pd.read_parquet(path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # pyarrow raises ArrowInvalid (and others) for truncated files
            raise StoreError(f"run {run_id}: {path.name} is damaged ({type(exc).__name__}); "
                             f"retrain the run with --force, or delete {self.path(run_id)} and run the sweep again") from None

    def write_table(self, run_id: str, name: str, df: pd.DataFrame) -> Path:
        """Add or replace one table of a finished run, atomically."""
        path = self.path(run_id) / f"{name}.parquet"
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write(path, buf.getvalue())
        return path

    def read_table(self, name: str, run_ids: list[str] | None = None) -> pd.DataFrame:
        """Concatenate one table over runs (all complete runs by default); runs without it are
        skipped. A run whose file is damaged is skipped too, named in `self.damaged` and in a
        warning on stderr, so one bad file does not hide the rest of the store."""
        frames = []
        for rid in run_ids if run_ids is not None else self.run_ids():
            if (self.path(rid) / f"{name}.parquet").is_file():
                try:
                    frames.append(self._read(rid, name))
                except StoreError as exc:
                    if rid not in self.damaged:
                        print(f"warning: {exc}", file=sys.stderr)
                    self.damaged[rid] = str(exc)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def stale(self) -> list[str]:
        """Runs whose recorded training code differs from this harness's (or was not recorded)."""
        now = training_code()
        out = []
        for rid in self.run_ids():
            try:
                recorded = json.loads((self.path(rid) / "provenance.json").read_text()).get("training_code")
            except (OSError, ValueError):
                recorded = None
            if recorded != now:
                out.append(rid)
        return out

    def runs_table(self, experiment: str | None = None) -> pd.DataFrame:
        df = self.read_table("run")
        if experiment is not None and not df.empty:
            df = df[df["experiment"] == experiment].reset_index(drop=True)
        return df

    def _clean_stale(self) -> None:
        """Remove temporary folders and claims left by processes of this host that no longer exist."""
        self.claimed()
        host = socket.gethostname()
        for p in self.root.glob(".t*-*"):
            parts = p.name.split("-")
            if len(parts) < 5 or parts[0] not in (".tmp", ".trash"):
                continue
            phost, pid = "-".join(parts[2:-2]), parts[-2]
            if phost == host and pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(f"*/.*{TMP_SUFFIX}"):  # files of writers killed inside add_files
            writer = p.name[: -len(TMP_SUFFIX)].rsplit("-", 2)
            if len(writer) == 3 and writer[0].endswith(f".{host}") and writer[1].isdigit() and not _pid_alive(int(writer[1])):
                p.unlink(missing_ok=True)


def load_checkpoint(state: bytes, run_id: str, folder: Path | str = "", device: str | torch.device = "cpu") -> dict:
    """A run's state dict from checkpoint bytes, loaded with weights_only=True; a damaged file is
    reported by run, with how to retrain it (never with torch's hint to load it unsafely)."""
    try:
        return torch.load(io.BytesIO(state), map_location=device, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError by damage
        raise StoreError(
            f"the checkpoint of run {run_id} is damaged ({type(exc).__name__}); retrain the run with --force "
            f"(`python -m harness run EXPERIMENT_FILE --force`, or `train ... --force` with its settings), "
            f"or delete {folder or 'its folder'} and run the sweep again"
        ) from None


TRAINING_CODE = ("config.py", "data.py", "models.py", "training.py")  # what decides a trained network


def training_code() -> str:
    """16 hex digits of the SHA-256 of the harness's training code, recorded with every run, so that
    `runs --stale` can list runs trained by code that has changed since (FORMAT_VERSION, part of
    the identity, is bumped by hand when a change means old runs must be retrained)."""
    h = hashlib.sha256()
    for name in TRAINING_CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def provenance(device: str) -> dict:
    import numpy
    import scipy

    from . import __version__

    return {
        "harness": __version__,
        "training_code": training_code(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "argv": sys.argv,
    }


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _ClaimsLock:
    """An exclusive lock (flock) on .claims/.lock: take-over of a dead process's claim reads and
    removes it as one step. flock is not guaranteed on network file systems."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"

    def __enter__(self) -> "_ClaimsLock":
        import fcntl

        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
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
    """This process, as a claim file names its owner."""
    return f"{socket.gethostname()} {os.getpid()}"


def _stale_claim(owner: str) -> bool:
    """A claim ("host pid") whose process is known to be gone: same host, no such process."""
    try:
        host, pid = owner.split()
        return host == socket.gethostname() and not _pid_alive(int(pid))
    except ValueError:
        return False  # being written by its owner right now


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
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
