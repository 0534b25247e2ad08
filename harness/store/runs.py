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
                                    and the manifest lists them all
                  manifest.json     every other file's size and SHA-256, and which files make up
                                    each evaluation; written last, atomically, whenever files are
                                    added (`harness.store.manifest`)
    runs/.claims/<run_id>           the lease of a process computing the run (`harness.store.leases`)
    runs/.failed/<run_id>.json      the error of a run that raised (`harness.store.failures`)

A run folder is built under a temporary name and renamed into place in one step, so a run killed
at any moment leaves either a complete folder or none. Finished runs are never recomputed unless
asked (`force`).

Every read of a stored file checks the bytes read against the manifest (`read_bytes`), and
`damage` checks a run's files without reading them for use: a run file (`RUN_FILES`) or a manifest
that is missing, truncated or changed makes the run damaged (`harness.sweep.run.run_state`), an
evaluation's file makes that evaluation pending. A run folder without a manifest (stored before
manifests existed, or with its manifest lost) is damaged: the next sweep, or `python -m harness
verify --repair`, trains it again, bit-identically on CPU with equal threads. Trusting such a
folder on first sight would vouch for whatever damage it already has. What is damaged is returned
as data (`harness.store.damage.Damage`); a damaged file read raises `DamageError`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import torch

from harness.config import RunConfig, from_dict
from harness.errors import StoreError
from harness.files import TMP_SUFFIX, write_synced
from harness.store import manifest as mf
from harness.store.damage import (
    Damage,
    DamageError,
    damaged_checkpoint_text,
    unreadable_config_text,
    unreadable_table_text,
)
from harness.store.failures import Failures
from harness.store.leases import Leases, pid_alive
from harness.store.manifest import MANIFEST, RUN_FILES, fsync_dir
from harness.store.provenance import training_code


def default_root() -> Path:
    """$HARNESS_STORE, else runs/ in the current directory."""
    root = os.environ.get("HARNESS_STORE", "runs")
    if not root.strip():
        raise StoreError("HARNESS_STORE is empty: set it to a folder for the run store, or unset it for runs/")
    return Path(root)


class RunStore:
    """The store at `root`: its run folders (commit, add and forget files, read them checked against
    their manifests), and beside them `leases` (who computes which run now) and `failures`."""

    def __init__(self, root: str | Path | None = None):
        self.root = _open_root(root)
        self.leases = Leases(self.root)
        self.failures = Failures(self.root)
        self.damaged: dict[str, str] = {}  # run id: what is wrong, for runs found damaged while reading
        self.leases.owners()  # removes the leases of processes of this host that are gone
        _clean_debris(self.root, [self.leases.folder, self.failures.folder])

    def check_writable(self) -> None:
        """Fail before any computation when the store cannot take new files (read-only, full)."""
        _probe_writable(self.root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_complete(self, run_id: str) -> bool:
        """Whether the run's folder was committed (folders appear only whole, renamed into place);
        whether its files are still whole is `damage`'s question."""
        return self.path(run_id).is_dir()

    def run_ids(self) -> list[str]:
        """Every committed run folder, damaged ones included (a run whose run.parquet was lost is
        still listed, so that it is reported and repaired rather than forgotten)."""
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and p.is_dir())

    # -- writing: folders appear whole, files are added under the manifest's order --------------------

    def commit(self, run_id: str, write: Callable[[Path], None], force: bool = False) -> Path:
        """Call `write(folder)` on a fresh temporary folder, then move it into place atomically.
        Unless `write` wrote the folder's manifest itself (`commit_files` does, with its evaluations),
        every file it wrote is recorded in one, written last.

        Without `force`, a run that another process finished first is kept and this one dropped.
        """
        with _fresh_folder(self.root, run_id) as tmp:
            with _store_write_errors(self.root, run_id):
                write(tmp)
            if not (tmp / MANIFEST).exists():
                write_synced(tmp / MANIFEST, _manifest_of(_written(tmp)))
            fsync_dir(tmp)
            return _move_into_place(tmp, self.path(run_id), force)

    def commit_files(self, run_id: str, files: dict[str, bytes], force: bool = False) -> Path:
        """A new run folder holding `files` ({name: bytes}: the run files, then each evaluation's
        tables followed by its settings file) and their manifest, written last, moved into place
        atomically. The manifest hashes the bytes given, not what the disk returns."""

        def write(folder: Path) -> None:
            for name, data in files.items():
                write_synced(folder / name, data)  # on disk before the folder is renamed into place
            write_synced(folder / MANIFEST, _manifest_of(files, mf.evaluation_groups(files)))

        return self.commit(run_id, write, force=force)

    def add_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Add evaluations' files to a finished run as one unit (`files`: each evaluation's tables,
        then its settings file), in the manifest's order (`harness.store.manifest.add_evaluations`).
        Killed or out of disk space in between, the manifest lists none of the new files, which every
        reader treats as a pending evaluation, never as finished tables under old settings. Callers
        hold the run's lease; a run whose manifest is damaged is refused (it must be retrained)."""
        with _store_write_errors(self.root, run_id):
            mf.add_evaluations(self.path(run_id), self.manifest(run_id), files)

    def drop_evaluation(self, run_id: str, kind: str) -> list[str]:
        """Forget one evaluation of a run (its tables and settings file), so that the next sweep
        computes it again: the manifest stops listing it first, then its files are removed. Returns
        the files removed. Callers hold the run's lease."""
        names = self.manifest(run_id)["evaluations"].get(kind, [])
        mf.forget(self.path(run_id), self.manifest(run_id), names)
        return names

    def drop_file(self, run_id: str, name: str) -> None:
        """Forget one file that belongs to no evaluation (a table added by `write_table`)."""
        mf.forget(self.path(run_id), self.manifest(run_id), [name])

    def remove_run(self, run_id: str) -> None:
        """Remove a run folder (moved aside in one step, then deleted), so that the next sweep that
        lists the run trains it. Callers hold the run's lease."""
        trash = _aside(self.root, ".trash", run_id)
        os.replace(self.path(run_id), trash)
        fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)

    def write_table(self, run_id: str, name: str, df: pd.DataFrame) -> Path:
        """Add or replace one table of a finished run, atomically, and record it in the manifest
        (as a table of no evaluation: an evaluation that listed it is forgotten)."""
        mf.add_table(self.path(run_id), self.manifest(run_id), f"{name}.parquet", table_bytes(df))
        return self.path(run_id) / f"{name}.parquet"

    # -- the manifest: what every read is checked against ---------------------------------------------

    def manifest(self, run_id: str) -> dict:
        """The run's manifest: {"files": {name: {"size", "sha256"}}, "evaluations": {kind: [file
        names, the settings file last]}}; a DamageError naming the run and the repair when it is
        missing or damaged (which makes the whole run damaged)."""
        manifest, what = mf.load_manifest(self.path(run_id))
        if manifest is None:
            raise DamageError(self.damage_record(run_id, {MANIFEST: what}))
        return manifest

    def damage(self, run_id: str, names: Iterable[str] | None = None) -> dict[str, str]:
        """{file: what is wrong} for `names` of the run's folder (default: the run files and every
        file its manifest lists), each hashed from disk and checked against the manifest; {MANIFEST:
        what} alone when the manifest itself is missing or damaged. Empty when all are whole.

        A whole config.json must also name this folder's run: a folder restored or copied under
        another run's name holds files that match their own manifest but are another run's."""
        manifest, what = mf.load_manifest(self.path(run_id))
        if manifest is None:
            return {MANIFEST: what}
        return mf.folder_damage(self.path(run_id), run_id, manifest, names)

    def damage_record(self, run_id: str, files: dict[str, str], manifest: dict | None = None) -> Damage:
        """`files` ({file: what is wrong}, from `damage`) as a `Damage`, with the evaluation each
        damaged file belongs to as the run's manifest (read here unless given) records it."""
        if manifest is None and not set(files) <= {*RUN_FILES, MANIFEST}:
            manifest, _ = mf.load_manifest(self.path(run_id))
        return Damage(self.root, run_id, dict(files), mf.evaluation_kinds(manifest, files))

    def read_bytes(self, run_id: str, name: str) -> bytes:
        """One file of a run, checked against the run's manifest (size, then the SHA-256 of the
        bytes read); a DamageError naming the run, the file, what is wrong and the repair when it is
        missing, truncated, changed or not recorded, or when the manifest is damaged."""
        manifest = self.manifest(run_id)
        data, problem = mf.read_checked(self.path(run_id) / name, manifest["files"].get(name))
        if problem:
            raise DamageError(self.damage_record(run_id, {name: problem}, manifest))
        return data

    # -- reading ------------------------------------------------------------------------------------

    def load_config(self, run_id: str) -> RunConfig:
        path = self.path(run_id) / "config.json"
        try:
            return from_dict(json.loads(self.read_bytes(run_id, path.name))["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: not UTF-8, not JSON, or a ConfigError
            raise StoreError(unreadable_config_text(run_id, self.path(run_id), path.name, type(exc).__name__)) from None

    def load_state(self, run_id: str, device: str | torch.device = "cpu") -> dict:
        return load_checkpoint(self.read_bytes(run_id, "checkpoint.pt"), run_id, self.path(run_id), device)

    def load_history(self, run_id: str) -> pd.DataFrame:
        return self._read(run_id, "history")

    def load_row(self, run_id: str) -> dict:
        return self._read(run_id, "run").iloc[0].to_dict()

    def _read(self, run_id: str, name: str) -> pd.DataFrame:
        """One table of one run, checked against the manifest; a damaged file names the run, the
        file and how to repair it."""
        return load_table(self.read_bytes(run_id, f"{name}.parquet"), run_id, self.path(run_id), name)

    def read_table(self, name: str, run_ids: list[str] | None = None) -> pd.DataFrame:
        """Concatenate one table over runs (all complete runs by default), each run's file checked
        against its manifest; runs whose manifest does not list the table are skipped (a file on
        disk that the manifest does not list yet is an evaluation being added by another process,
        or left by one that was killed: not there yet, never damage). A run whose listed file is
        damaged (missing, truncated, changed) is skipped too, named in `self.damaged` and in a
        warning on stderr, so one bad file does not hide the rest of the store; callers that must
        not work on partial data check `run_state` first (the table collector does)."""
        frames = []
        for rid in run_ids if run_ids is not None else self.run_ids():
            if not self.path(rid).is_dir():
                continue
            manifest, _ = mf.load_manifest(self.path(rid))
            if manifest is not None and f"{name}.parquet" not in manifest["files"]:
                continue  # a damaged manifest is reported below
            try:
                frames.append(self._read(rid, name))
            except StoreError as exc:
                if rid not in self.damaged:
                    print(f"warning: {exc}", file=sys.stderr)
                self.damaged[rid] = str(exc)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def runs_table(self, experiment: str | None = None) -> pd.DataFrame:
        df = self.read_table("run")
        return df if experiment is None or df.empty else df[df["experiment"] == experiment].reset_index(drop=True)

    def stale(self) -> list[str]:
        """Runs whose recorded training code differs from this harness's (or was not recorded)."""
        now = training_code()
        out = []
        for rid in self.run_ids():
            try:
                recorded = json.loads(self.read_bytes(rid, "provenance.json")).get("training_code")
            except (StoreError, ValueError, AttributeError):  # damaged: not known to be fresh
                recorded = None
            if recorded != now:
                out.append(rid)
        return out


def _open_root(root: str | Path | None) -> Path:
    """The store's folder (`root`, else `default_root`), created when missing; a StoreError saying
    what to choose when it is empty, a file, or cannot be created."""
    if root is not None and str(root).strip() == "":
        raise StoreError("--store is empty: name a folder for the run store (default: $HARNESS_STORE or runs/)")
    path = Path(root) if root is not None else default_root()
    if path.exists() and not path.is_dir():
        raise StoreError(f"the run store {path} is a file, not a folder: name a folder with --store")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the run store {path}: {exc.strerror}; choose a writable folder with --store"
        ) from None
    return path


def _probe_writable(root: Path) -> None:
    """Write and remove a 4 KiB probe file: a StoreError when the store cannot take it (read-only, full)."""
    probe = root / f".probe-{socket.gethostname()}-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise StoreError(
            f"the run store {root} is not writable ({exc.strerror}); free space or choose another folder with --store"
        ) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:  # a read-only store refuses even this; the error above says what is wrong
            pass


def load_checkpoint(state: bytes, run_id: str, folder: Path | str = "", device: str | torch.device = "cpu") -> dict:
    """A run's state dict from checkpoint bytes, loaded with weights_only=True; a damaged file is
    reported by run, with how to retrain it (never with torch's hint to load it unsafely)."""
    try:
        return torch.load(io.BytesIO(state), map_location=device, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError by damage
        raise StoreError(damaged_checkpoint_text(run_id, folder, type(exc).__name__)) from None


def load_table(data: bytes, run_id: str, folder: Path, name: str) -> pd.DataFrame:
    """A run's table `name` from its parquet bytes; one recorded whole but unreadable (written by
    another pyarrow?) is reported by run, with how to retrain it."""
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises ArrowInvalid and others
        raise StoreError(unreadable_table_text(run_id, folder, name, type(exc).__name__)) from None


def _written(folder: Path) -> dict[str, bytes]:
    """{name: bytes} of the files in a new run folder, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _manifest_of(files: dict[str, bytes], evaluations: dict[str, list[str]] | None = None) -> bytes:
    """The manifest of a new run folder holding `files`."""
    return mf.manifest_bytes({name: mf.file_entry(data) for name, data in files.items()}, evaluations or {})


def _aside(root: Path, kind: str, run_id: str) -> Path:
    """A folder name beside the runs, ".tmp" or ".trash", naming its writer (host and pid) so that
    `_clean_debris` can tell a dead writer's folder from a live one's."""
    return root / f"{kind}-{run_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def _fresh_folder(root: Path, run_id: str):
    """A new temporary folder for a run (`_aside`), removed on the way out unless it was moved into place."""
    tmp = _aside(root, ".tmp", run_id)
    with _store_write_errors(root, run_id):
        tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, final: Path, force: bool) -> Path:
    """Rename a finished temporary run folder to `final`; with `force` an existing run is replaced
    (moved aside first), without it the existing run is kept and `tmp` removed."""
    if final.exists():
        if not force:
            shutil.rmtree(tmp)
            return final
        trash = _aside(final.parent, ".trash", final.name)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def _clean_debris(root: Path, folders: list[Path]) -> None:
    """Remove temporary folders and files left by processes of this host that no longer exist:
    folders beside the runs (`_aside`), and files of writers killed inside add_files (run folders)
    or atomic_write (`folders`: the leases and failure records)."""
    host = socket.gethostname()
    for p in root.glob(".t*-*"):
        parts = p.name.split("-")
        if len(parts) < 5 or parts[0] not in (".tmp", ".trash"):
            continue
        phost, pid = "-".join(parts[2:-2]), parts[-2]
        if phost == host and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
    # temporary folders are skipped: a live writer may rename one away while we look
    runs = [p for p in _entries(root) if not p.name.startswith(".") and p.is_dir()]
    for p in runs + folders:
        for f in _entries(p):
            if not (f.name.startswith(".") and f.name.endswith(TMP_SUFFIX)):
                continue
            writer = f.name[: -len(TMP_SUFFIX)].rsplit("-", 2)
            if (
                len(writer) == 3
                and writer[0].endswith(f".{host}")
                and writer[1].isdigit()
                and not pid_alive(int(writer[1]))
            ):
                f.unlink(missing_ok=True)


def table_bytes(df: pd.DataFrame) -> bytes:
    """A table's bytes as a run folder keeps them (parquet, no index)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _entries(folder: Path) -> list[Path]:
    """A folder's entries; none when it vanished meanwhile (another process renamed or removed it:
    `make -j2` runs two sweeps on one store) or cannot be read (its own checks name it later)."""
    try:
        return [Path(e.path) for e in os.scandir(folder)]
    except OSError:
        return []


@contextlib.contextmanager
def _store_write_errors(root: Path, run_id: str):
    """A full, read-only or forbidden store while a run is written becomes a StoreError (exit 2)
    that says so, instead of a traceback; what was being written is not published."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise StoreError(
            f"the run store {root} could not take run {run_id} ({exc.strerror}); nothing of it was published: free "
            "space, or choose a writable folder with --store, and run again"
        ) from None
