"""A run folder's manifest: what every read of a stored file is checked against.

`manifest.json` records every other file's size and SHA-256, and which files make up each evaluation
(`evaluation_groups`); a checksum over the rest makes any change to it damage. It is written last,
atomically, whenever files are added (`add_evaluations`) or forgotten (`forget`), so the files it lists
are whole and an evaluation it lists is complete. `folder_damage` checks files on disk against it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.files import atomic_write

RUN_FILES = ("config.json", "checkpoint.pt", "history.parquet", "run.parquet", "provenance.json")
SETTINGS_SUFFIX = "_settings.json"  # an evaluation's settings file: present only beside complete tables
MANIFEST = "manifest.json"  # sizes and SHA-256 of the run folder's other files
MANIFEST_VERSION = 1


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


def evaluation_kinds(manifest: dict | None, names: Iterable[str]) -> dict[str, str]:
    """{file: the evaluation kind it belongs to} for those of `names` that the manifest lists in an
    evaluation (none when the manifest is missing or damaged: None)."""
    names, out = set(names), {}
    for kind, files in (manifest or {}).get("evaluations", {}).items():
        for name in names & set(files):
            out.setdefault(name, kind)
    return out


def file_entry(data: bytes) -> dict:
    """A file's manifest entry: its size and SHA-256 (hex)."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest_bytes(files: dict[str, dict], evaluations: dict[str, list[str]]) -> bytes:
    """A manifest's bytes. Its checksum covers the rest, so a change anywhere in the manifest
    (even one that leaves valid JSON) makes it damaged rather than a different promise."""
    body = {"files": files, "evaluations": evaluations}
    checksum = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return json.dumps({"version": MANIFEST_VERSION, **body, "checksum": checksum}, indent=1, sort_keys=True).encode()


def parse_manifest(data: bytes) -> dict:
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


def load_manifest(folder: Path) -> tuple[dict | None, str | None]:
    """(the folder's manifest, None), or (None, what is wrong with it) when it is missing or damaged."""
    try:
        data = (folder / MANIFEST).read_bytes()
    except FileNotFoundError:
        return None, "missing: stored before manifests existed, or lost"
    except OSError as exc:
        return None, f"unreadable: {exc.strerror}"
    try:
        return parse_manifest(data), None
    except ValueError as exc:
        return None, str(exc)


def compare(size: int, digest: Callable[[], str], entry: dict | None) -> str | None:
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


def read_checked(path: Path, entry: dict | None) -> tuple[bytes, str | None]:
    """A file's bytes, and what is wrong with them against its manifest entry (`compare`; None:
    whole); no bytes when the file is missing or cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b"", "missing"
    except OSError as exc:
        return b"", f"unreadable: {exc.strerror}"
    return data, compare(len(data), lambda: hashlib.sha256(data).hexdigest(), entry)


def check_file(path: Path, entry: dict | None) -> str | None:
    """`compare` for a file on disk, hashed in 1 MiB pieces."""

    def digest() -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    try:
        if not path.is_file():
            return "missing" if not path.exists() else "not a file"
        return compare(path.stat().st_size, digest, entry)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def names_other_run(config: Path, run_id: str) -> str | None:
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


def folder_damage(folder: Path, run_id: str, manifest: dict, names: Iterable[str] | None = None) -> dict[str, str]:
    """{file: what is wrong} for `names` of a run folder (default: the run files and every file the
    manifest lists), each hashed from disk and checked against `manifest`; empty when all are whole.
    A whole config.json must also name the folder's run (`names_other_run`)."""
    out = {}
    for name in names if names is not None else dict.fromkeys([*RUN_FILES, *manifest["files"]]):
        problem = check_file(folder / name, manifest["files"].get(name))
        if problem is None and name == "config.json":
            problem = names_other_run(folder / name, run_id)
        if problem:
            out[name] = problem
    return out


def add_evaluations(folder: Path, manifest: dict, files: dict[str, bytes]) -> None:
    """Write evaluations' files (`files`: each evaluation's tables, then its settings file) into a
    run folder under `manifest`, in the order that keeps the manifest's promise: the manifest is
    rewritten first without the evaluations being replaced, and their settings files and old tables
    are removed; then every file is written atomically in the given order, and the manifest
    recording them is written last."""
    groups = evaluation_groups(files)
    replaced = {kind for kind, names in manifest["evaluations"].items() if kind in groups or set(names) & set(files)}
    stale = {name for kind in replaced for name in manifest["evaluations"][kind]}
    entries = {name: e for name, e in manifest["files"].items() if name not in stale and name not in files}
    kept = {kind: names for kind, names in manifest["evaluations"].items() if kind not in replaced}
    atomic_write(folder / MANIFEST, manifest_bytes(entries, kept))
    for name in stale | set(files):
        if name.endswith(SETTINGS_SUFFIX) or (name in stale and name not in files):
            (folder / name).unlink(missing_ok=True)
    fsync_dir(folder)
    for name, data in files.items():
        atomic_write(folder / name, data)
    entries |= {name: file_entry(data) for name, data in files.items()}
    atomic_write(folder / MANIFEST, manifest_bytes(entries, kept | groups))


def add_table(folder: Path, manifest: dict, name: str, data: bytes) -> None:
    """Write one file of no evaluation into a run folder, then the manifest recording it (an
    evaluation that listed the file is forgotten)."""
    kept = {kind: names for kind, names in manifest["evaluations"].items() if name not in names}
    atomic_write(folder / name, data)
    atomic_write(folder / MANIFEST, manifest_bytes(manifest["files"] | {name: file_entry(data)}, kept))


def forget(folder: Path, manifest: dict, names: list[str]) -> None:
    """The manifest stops listing `names` (and any evaluation made of them) first, then the
    files are removed: killed in between, they are files the manifest does not list."""
    entries = {n: e for n, e in manifest["files"].items() if n not in names}
    kept = {k: v for k, v in manifest["evaluations"].items() if not set(v) & set(names)}
    atomic_write(folder / MANIFEST, manifest_bytes(entries, kept))
    for name in names:
        (folder / name).unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that the names created, renamed or removed in it last (best effort)."""
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
