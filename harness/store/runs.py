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
                                    added (`MANIFEST`)

A run folder is built under a temporary name and renamed into place in one step, so a run killed
at any moment leaves either a complete folder or none. Finished runs are never recomputed unless
asked (`force`).

Every read of a stored file checks the bytes read against the manifest (`read_bytes`), and
`damage` checks a run's files without reading them for use: a run file (`RUN_FILES`) or a manifest
that is missing, truncated or changed makes the run damaged (`harness.sweep.run.run_state`), an
evaluation's file makes that evaluation pending. A run folder without a manifest (stored before
manifests existed, or with its manifest lost) is damaged: the next sweep, or `python -m harness
verify --repair`, trains it again, bit-identically on CPU with equal threads. Trusting such a
folder on first sight would vouch for whatever damage it already has.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch

from harness.config import RunConfig, from_dict
from harness.errors import StoreError
from harness.files import FILE_MODE, TMP_SUFFIX, atomic_write, create_tmp, tmp_prefix, write_synced

RUN_FILES = ("config.json", "checkpoint.pt", "history.parquet", "run.parquet", "provenance.json")
SETTINGS_SUFFIX = "_settings.json"  # an evaluation's settings file: present only beside complete tables
MANIFEST = "manifest.json"  # sizes and SHA-256 of the run folder's other files
MANIFEST_VERSION = 1


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
            raise StoreError(
                f"cannot create the run store {self.root}: {exc.strerror}; choose a writable folder with --store"
            ) from None
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
            raise StoreError(
                f"the run store {self.root} is not writable ({exc.strerror}); free space or choose another folder "
                "with --store"
            ) from None
        finally:
            try:
                probe.unlink(missing_ok=True)
            except OSError:  # a read-only store refuses even this; the error above says what is wrong
                pass

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

    def commit(self, run_id: str, write: Callable[[Path], None], force: bool = False) -> Path:
        """Call `write(folder)` on a fresh temporary folder, then move it into place atomically.
        Unless `write` wrote the folder's manifest itself (`commit_files` does, with its evaluations),
        every file it wrote is recorded in one, written last.

        Without `force`, a run that another process finished first is kept and this one dropped.
        """
        tmp = self.root / f".tmp-{run_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        with _store_write_errors(self.root, run_id):
            tmp.mkdir()
        try:
            with _store_write_errors(self.root, run_id):
                write(tmp)
            if not (tmp / MANIFEST).exists():
                written = {
                    p.name: _entry(p.read_bytes())
                    for p in sorted(tmp.iterdir())
                    if p.is_file() and not p.name.startswith(".")
                }
                write_synced(tmp / MANIFEST, _manifest_bytes(written, {}))
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
        """A new run folder holding `files` ({name: bytes}: the run files, then each evaluation's
        tables followed by its settings file) and their manifest, written last, moved into place
        atomically. The manifest hashes the bytes given, not what the disk returns."""

        def write(folder: Path) -> None:
            for name, data in files.items():
                write_synced(folder / name, data)  # on disk before the folder is renamed into place
            entries = {name: _entry(data) for name, data in files.items()}
            write_synced(folder / MANIFEST, _manifest_bytes(entries, evaluation_groups(files)))

        return self.commit(run_id, write, force=force)

    def add_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Add evaluations' files to a finished run as one unit (`files`: each evaluation's tables,
        then its settings file). The manifest is rewritten first without the evaluations being
        replaced, and their settings files and old tables are removed; then every file is written
        atomically in the given order, and the manifest recording them is written last. Killed or
        out of disk space in between, the manifest lists none of the new files, which every reader
        treats as a pending evaluation, never as finished tables under old settings. Callers hold
        the run's claim; a run whose manifest is damaged is refused (it must be retrained)."""
        with _store_write_errors(self.root, run_id):
            self._add_files(run_id, files)

    def _add_files(self, run_id: str, files: dict[str, bytes]) -> None:
        folder = self.path(run_id)
        manifest = self.manifest(run_id)
        groups = evaluation_groups(files)
        replaced = {
            kind for kind, names in manifest["evaluations"].items() if kind in groups or set(names) & set(files)
        }
        stale = {name for kind in replaced for name in manifest["evaluations"][kind]}
        entries = {name: e for name, e in manifest["files"].items() if name not in stale and name not in files}
        kept = {kind: names for kind, names in manifest["evaluations"].items() if kind not in replaced}
        atomic_write(folder / MANIFEST, _manifest_bytes(entries, kept))
        for name in stale | set(files):
            if name.endswith(SETTINGS_SUFFIX) or (name in stale and name not in files):
                (folder / name).unlink(missing_ok=True)
        _fsync_dir(folder)
        for name, data in files.items():
            atomic_write(folder / name, data)
        entries |= {name: _entry(data) for name, data in files.items()}
        atomic_write(folder / MANIFEST, _manifest_bytes(entries, kept | groups))

    def drop_evaluation(self, run_id: str, kind: str) -> list[str]:
        """Forget one evaluation of a run (its tables and settings file), so that the next sweep
        computes it again: the manifest stops listing it first, then its files are removed. Returns
        the files removed. Callers hold the run's claim."""
        names = self.manifest(run_id)["evaluations"].get(kind, [])
        self._forget(run_id, names)
        return names

    def drop_file(self, run_id: str, name: str) -> None:
        """Forget one file that belongs to no evaluation (a table added by `write_table`)."""
        self._forget(run_id, [name])

    def _forget(self, run_id: str, names: list[str]) -> None:
        """The manifest stops listing `names` (and any evaluation made of them) first, then the
        files are removed: killed in between, they are files the manifest does not list."""
        manifest = self.manifest(run_id)
        entries = {n: e for n, e in manifest["files"].items() if n not in names}
        kept = {k: v for k, v in manifest["evaluations"].items() if not set(v) & set(names)}
        atomic_write(self.path(run_id) / MANIFEST, _manifest_bytes(entries, kept))
        for name in names:
            (self.path(run_id) / name).unlink(missing_ok=True)

    def remove_run(self, run_id: str) -> None:
        """Remove a run folder (moved aside in one step, then deleted), so that the next sweep that
        lists the run trains it. Callers hold the run's claim."""
        trash = self.root / f".trash-{run_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        os.replace(self.path(run_id), trash)
        _fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)

    # -- the manifest: what every read is checked against ---------------------------------------------

    def manifest(self, run_id: str) -> dict:
        """The run's manifest: {"files": {name: {"size", "sha256"}}, "evaluations": {kind: [file
        names, the settings file last]}}; a StoreError naming the run and the repair when it is
        missing or damaged (which makes the whole run damaged)."""
        manifest, what = self._load_manifest(run_id)
        if manifest is None:
            raise StoreError(self.damage_message(run_id, {MANIFEST: what}))
        return manifest

    def _load_manifest(self, run_id: str) -> tuple[dict | None, str | None]:
        try:
            data = (self.path(run_id) / MANIFEST).read_bytes()
        except FileNotFoundError:
            return None, "missing: stored before manifests existed, or lost"
        except OSError as exc:
            return None, f"unreadable: {exc.strerror}"
        try:
            return _parse_manifest(data), None
        except ValueError as exc:
            return None, str(exc)

    def damage(self, run_id: str, names: Iterable[str] | None = None) -> dict[str, str]:
        """{file: what is wrong} for `names` of the run's folder (default: the run files and every
        file its manifest lists), each hashed from disk and checked against the manifest; {MANIFEST:
        what} alone when the manifest itself is missing or damaged. Empty when all are whole.

        A whole config.json must also name this folder's run: a folder restored or copied under
        another run's name holds files that match their own manifest but are another run's."""
        manifest, what = self._load_manifest(run_id)
        if manifest is None:
            return {MANIFEST: what}
        out = {}
        for name in names if names is not None else dict.fromkeys([*RUN_FILES, *manifest["files"]]):
            problem = _check_file(self.path(run_id) / name, manifest["files"].get(name))
            if problem is None and name == "config.json":
                problem = _names_other_run(self.path(run_id) / name, run_id)
            if problem:
                out[name] = problem
        return out

    def damage_message(self, run_id: str, damage: dict[str, str], manifest: dict | None = None) -> str:
        """What is wrong with a run's files and how to repair it, for users: the run is retrained
        when a run file or its manifest is damaged, an evaluation is computed again when one of its
        files is."""
        (first, what), *rest = damage.items()
        also = "".join(f", and {name} ({w})" for name, w in rest)
        verify = f"`python -m harness verify --repair --store {shlex.quote(str(self.root))}`"
        if manifest is None and first not in (*RUN_FILES, MANIFEST):
            manifest, _ = self._load_manifest(run_id)
        kind = next((k for k, names in (manifest or {}).get("evaluations", {}).items() if first in names), None)
        if first in RUN_FILES or first == MANIFEST:
            fix = (
                f"; repair: {verify} retrains the run (from its config.json, or from the study under experiments/ "
                "that lists it when "
                "that file is damaged too), as does running its sweep again (or retrain the run with --force)"
            )
        elif kind is not None:
            fix = (
                f", so its {kind} evaluation is pending; repair: {verify} computes it again (with its settings file, "
                "or the settings "
                "of the study that asks for it when that file is damaged), as does running its sweep again"
            )
        else:
            fix = f"; repair: {verify} removes it"
        return f"run {run_id}: {first} is damaged ({what}){also}{fix}"

    def read_bytes(self, run_id: str, name: str) -> bytes:
        """One file of a run, checked against the run's manifest (size, then the SHA-256 of the
        bytes read); a StoreError naming the run, the file, what is wrong and the repair when it is
        missing, truncated, changed or not recorded, or when the manifest is damaged."""
        manifest = self.manifest(run_id)
        try:
            data = (self.path(run_id) / name).read_bytes()
        except FileNotFoundError:
            problem = "missing"
        except OSError as exc:
            problem = f"unreadable: {exc.strerror}"
        else:
            problem = _compare(len(data), lambda: hashlib.sha256(data).hexdigest(), manifest["files"].get(name))
        if problem:
            raise StoreError(self.damage_message(run_id, {name: problem}, manifest))
        return data

    # -- claims and failures: what lets sweeps resume and run side by side ---------------------------

    def claim(self, run_id: str) -> bool:
        """Take the run for this process: a claim file under .claims/ naming its owner ("host pid
        boot_id start_time", `_me`). False when a live process holds it. A claim left by a process
        of this host that is gone (no such pid, or the pid is now another process: another boot or
        another start time, `_stale_claim`), and debris
        (an empty or garbled claim file, as an older harness left when killed or out of disk space
        while writing one), are taken over under the claims lock.

        The claim is written whole: its text goes to a temporary file first, which is then
        hard-linked onto the claim's name. The link fails when that name exists, so exactly one
        process wins, and a claim file is either complete or absent."""
        folder = self.root / ".claims"
        folder.mkdir(exist_ok=True)
        path = folder / run_id
        me = _me()
        for _ in range(3):
            try:
                if _publish_claim(path, me):
                    return True
            except FileExistsError:
                pass
            if self._remove_claim_if(path, lambda owner: _stale_claim(owner, path) or owner == me):
                continue
            return False
        return False

    def _remove_claim_if(self, path: Path, condition: Callable[[str], bool]) -> bool:
        """Remove a claim file when it is debris (empty or garbled) or `condition(owner)` holds,
        reading and removing it under the claims lock: without the lock, two processes that both
        read a dead owner could each remove the claim the other has just taken. True when the file
        is gone (removed, or released)."""
        with _ClaimsLock(path.parent):
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

    def holds(self, run_id: str) -> bool:
        """Whether this process holds the run's claim."""
        return _read_owner(self.root / ".claims" / run_id) == _me()

    def release(self, run_id: str) -> None:
        """Drop this process's claim on a run; a claim another process holds is left alone."""
        path = self.root / ".claims" / run_id
        if _read_owner(path) == _me():
            path.unlink(missing_ok=True)

    def claimed(self) -> dict[str, str]:
        """{run_id: owner ("host pid boot_id start_time"; `owner_words` for messages)} of claims held
        now. Claims of processes of this host that are gone (`_stale_claim`), and
        debris, are removed on the way; a claim file this user cannot read is listed as
        "unreadable"."""
        folder = self.root / ".claims"
        out = {}
        for p in folder.iterdir() if folder.is_dir() else []:
            if p.name.startswith("."):
                continue
            owner = _read_owner(p)
            if owner is None:
                continue
            if owner is not _UNREADABLE and (_owner_fields(owner) is None or _stale_claim(owner, p)):
                if self._remove_claim_if(p, lambda owner, p=p: _stale_claim(owner, p)):
                    continue
                owner = _read_owner(p)  # taken by a live process meanwhile
                if owner is None:
                    continue
            out[p.name] = "unreadable" if owner is _UNREADABLE else owner
        return out

    def record_failure(self, run_id: str, config: dict, error: str) -> None:
        """Remember that a run raised (it is retried only on request)."""
        blob = json.dumps({"run_id": run_id, "config": config, "error": error}, indent=2)
        atomic_write(self.root / ".failed" / f"{run_id}.json", blob.encode())

    def failure(self, run_id: str) -> str | None:
        path = self.root / ".failed" / f"{run_id}.json"
        if not path.is_file():
            return None
        try:
            return str(json.loads(path.read_bytes())["error"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: not UTF-8 or not JSON
            raise StoreError(
                f"run {run_id}: its failure record {path} is damaged ({type(exc).__name__}); delete it "
                f"(`rm {path}`) and the run is tried again"
            ) from None

    def clear_failure(self, run_id: str) -> None:
        (self.root / ".failed" / f"{run_id}.json").unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------------------

    def load_config(self, run_id: str) -> RunConfig:
        path = self.path(run_id) / "config.json"
        try:
            return from_dict(json.loads(self.read_bytes(run_id, path.name))["config"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: not UTF-8, not JSON, or a ConfigError
            raise StoreError(
                f"run {run_id}: {path.name} is damaged or missing ({type(exc).__name__}); retrain the run: "
                f"`python -m harness run EXPERIMENT_FILE --force`, or delete {self.path(run_id)} and run the sweep "
                "again"
            ) from None

    def load_state(self, run_id: str, device: str | torch.device = "cpu") -> dict:
        return load_checkpoint(self.read_bytes(run_id, "checkpoint.pt"), run_id, self.path(run_id), device)

    def load_history(self, run_id: str) -> pd.DataFrame:
        return self._read(run_id, "history")

    def load_row(self, run_id: str) -> dict:
        return self._read(run_id, "run").iloc[0].to_dict()

    def _read(self, run_id: str, name: str) -> pd.DataFrame:
        """One table of one run, checked against the manifest; a damaged file names the run, the
        file and how to repair it."""
        data = self.read_bytes(run_id, f"{name}.parquet")
        try:
            return pd.read_parquet(io.BytesIO(data))
        except (
            Exception
        ) as exc:  # recorded whole but unreadable (written by another pyarrow?): pyarrow raises ArrowInvalid and others
            raise StoreError(
                f"run {run_id}: {name}.parquet cannot be read ({type(exc).__name__}); "
                f"retrain the run with --force, or delete {self.path(run_id)} and run the sweep again"
            ) from None

    def write_table(self, run_id: str, name: str, df: pd.DataFrame) -> Path:
        """Add or replace one table of a finished run, atomically, and record it in the manifest
        (as a table of no evaluation: an evaluation that listed it is forgotten)."""
        path = self.path(run_id) / f"{name}.parquet"
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        manifest = self.manifest(run_id)
        kept = {kind: names for kind, names in manifest["evaluations"].items() if path.name not in names}
        atomic_write(path, buf.getvalue())
        atomic_write(
            self.path(run_id) / MANIFEST, _manifest_bytes(manifest["files"] | {path.name: _entry(buf.getvalue())}, kept)
        )
        return path

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
            manifest, _ = self._load_manifest(rid)
            listed = manifest is None or f"{name}.parquet" in manifest["files"]  # a damaged manifest: reported below
            if listed:
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
                recorded = json.loads(self.read_bytes(rid, "provenance.json")).get("training_code")
            except (StoreError, ValueError, AttributeError):  # damaged: not known to be fresh
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
        # files of writers killed inside add_files (run folders) or atomic_write (.claims, .failed);
        # temporary folders are skipped: a live writer may rename one away while we look
        folders = [p for p in _entries(self.root) if not p.name.startswith(".") and p.is_dir()]
        for p in folders + [self.root / ".claims", self.root / ".failed"]:
            for f in _entries(p):
                if not (f.name.startswith(".") and f.name.endswith(TMP_SUFFIX)):
                    continue
                writer = f.name[: -len(TMP_SUFFIX)].rsplit("-", 2)
                if (
                    len(writer) == 3
                    and writer[0].endswith(f".{host}")
                    and writer[1].isdigit()
                    and not _pid_alive(int(writer[1]))
                ):
                    f.unlink(missing_ok=True)


def _entries(folder: Path) -> list[Path]:
    """A folder's entries; none when it vanished meanwhile (another process renamed or removed it:
    `make -j2` runs two sweeps on one store) or cannot be read (its own checks name it later)."""
    try:
        return [Path(e.path) for e in os.scandir(folder)]
    except OSError:
        return []


def evaluation_groups(names: Iterable[str]) -> dict[str, list[str]]:
    """{kind: its files} from a run folder's file names in write order: each evaluation's tables,
    then its settings file `<kind>_settings.json`. Run files belong to no evaluation."""
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for name in names:
        if name in RUN_FILES or name == MANIFEST:
            continue
        current.append(name)
        if name.endswith(SETTINGS_SUFFIX):
            groups[name[: -len(SETTINGS_SUFFIX)]] = current
            current = []
    return groups


def _entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _manifest_bytes(files: dict[str, dict], evaluations: dict[str, list[str]]) -> bytes:
    """A manifest's bytes. Its checksum covers the rest, so a change anywhere in the manifest
    (even one that leaves valid JSON) makes it damaged rather than a different promise."""
    body = {"files": files, "evaluations": evaluations}
    checksum = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return json.dumps({"version": MANIFEST_VERSION, **body, "checksum": checksum}, indent=1, sort_keys=True).encode()


def _parse_manifest(data: bytes) -> dict:
    """The manifest in `data`; ValueError saying what is wrong with it."""
    try:
        m = json.loads(data)
    except ValueError:  # not UTF-8, or not JSON
        raise ValueError(f"not valid JSON ({len(data):,} bytes)") from None
    if (
        not isinstance(m, dict)
        or m.get("version") != MANIFEST_VERSION
        or not isinstance(m.get("files"), dict)
        or not isinstance(m.get("evaluations"), dict)
    ):
        raise ValueError("not a manifest of this harness")
    body = {"files": m["files"], "evaluations": m["evaluations"]}
    if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != m.get("checksum"):
        raise ValueError("changed: its checksum does not match its contents")
    return body


def _compare(size: int, digest: Callable[[], str], entry: dict | None) -> str | None:
    """What is wrong with a file of `size` bytes against its manifest entry (None: whole);
    `digest` (its SHA-256, hex) is computed only when the sizes agree."""
    if entry is None:
        return "not in the run's manifest"
    if size < entry["size"]:
        return f"truncated: {size:,} of {entry['size']:,} bytes"
    if size > entry["size"]:
        return f"{size:,} bytes where {entry['size']:,} were recorded"
    if digest() != entry["sha256"]:
        return "changed: its SHA-256 differs from the manifest's"
    return None


def _names_other_run(config: Path, run_id: str) -> str | None:
    """What is wrong when a run folder's config.json belongs to another run (None when it is this one's)."""
    try:
        recorded = json.loads(config.read_bytes()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return "unreadable as a run's config"
    return (
        None
        if recorded == run_id
        else f"it is run {recorded}'s config, not this folder's: the folder holds another run"
    )


def _check_file(path: Path, entry: dict | None) -> str | None:
    """`_compare` for a file on disk, hashed in 1 MiB pieces."""

    def digest() -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    try:
        if not path.is_file():
            return "missing" if not path.exists() else "not a file"
        return _compare(path.stat().st_size, digest, entry)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


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


TRAINING_CODE = (
    "config.py",
    "data/datasets.py",
    "nets/models.py",
    "nets/training.py",
)  # what decides a trained network


def training_code() -> str:
    """16 hex digits of the SHA-256 of the harness's training code, recorded with every run, so that
    `runs --stale` can list runs trained by code that has changed since (FORMAT_VERSION, part of
    the identity, is bumped by hand when a change means old runs must be retrained)."""
    h = hashlib.sha256()
    for name in TRAINING_CODE:
        h.update((Path(__file__).resolve().parents[1] / name).read_bytes())
    return h.hexdigest()[:16]


def provenance(device: str) -> dict:
    import numpy
    import scipy

    from harness import __version__

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
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _ClaimsLock:
    """An exclusive lock (flock) on .claims/.lock: take-over of a dead process's claim reads and
    removes it as one step. flock is not guaranteed on network file systems."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"

    def __enter__(self) -> _ClaimsLock:
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
    """This process, as a claim file names its owner: "host pid boot_id start_time". The boot id
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


def owner_words(owner: str) -> str:
    """A claim's owner for messages: "host pid" (the boot id and start time are for the store)."""
    fields = _owner_fields(owner)
    return owner if fields is None else f"{fields.host} {fields.pid}"


def _stale_claim(owner: str, path: Path | None = None) -> bool:
    """A claim whose process is known to be gone: one of this host whose pid is not running, or is
    running another process. That is the case when the claim records another boot or another start
    time; a claim of an older harness ("host pid") records neither, and its process is another one
    when it started after the claim was written. A claim of another host is never stale: whether
    its process runs cannot be told from here. (A garbled owner is debris, not stale: see
    `_owner_fields`.)"""
    fields = _owner_fields(owner)
    if fields is None or fields.host != socket.gethostname():
        return False
    if not _pid_alive(fields.pid):
        return True
    if fields.boot is None:  # an older harness's claim: only its file's age can tell
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
    boot: str | None  # None: a claim of an older harness, which recorded host and pid only
    start: str | None


def _owner_fields(owner: str) -> _Owner | None:
    """(host, pid, boot, start) of a claim's text: "host pid boot_id start_time", or "host pid" as
    older harnesses wrote it (boot and start None); None for debris (empty or garbled: claims are
    written whole, so a claim being written is never seen half-way)."""
    parts = owner.split()
    if len(parts) not in (2, 4) or not (parts[1].isascii() and parts[1].isdigit()) or int(parts[1]) <= 0:
        return None
    if len(parts) == 4 and not (parts[3] == "-" or (parts[3].isascii() and parts[3].isdigit())):
        return None
    boot, start = (parts[2], parts[3]) if len(parts) == 4 else (None, None)
    return _Owner(parts[0], int(parts[1]), boot, start)


_UNREADABLE = object()  # what _read_owner returns for a claim file that exists but cannot be read


def _read_owner(path: Path) -> str | None | object:
    """A claim file's text (non-UTF-8 bytes replaced, so such debris parses as garbled); None when
    there is no claim; _UNREADABLE when the file cannot be read (permissions, a folder)."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return _UNREADABLE


def _publish_claim(path: Path, owner: str) -> bool:
    """Create the claim `path` holding `owner`, complete: the text is written to a temporary file
    (mode 0o666 less the umask) that is then hard-linked onto `path`. FileExistsError when a claim
    is there. True when the claim is ours.

    Where the file system has no hard links, the claim is created with O_EXCL and written, then
    read back under the claims lock: debris is removed only under that lock, so a claim taken for
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
    with _ClaimsLock(path.parent):
        return _read_owner(path) == owner


def _pid_alive(pid: int) -> bool:
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
            f"the run store {root} could not take run {run_id} ({exc.strerror}); nothing of it was published: "
            "free space, or choose a writable folder with --store, and run again"
        ) from None


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
