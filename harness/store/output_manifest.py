"""Manifests of output folders: the collected tables under reports/<setting>/tables/<study>/.

A study's tables folder holds `manifest.json`: every other file's size and SHA-256, itself
checksummed, as a run folder of the store has (`harness.store.manifest`). The collector removes it before it
writes the tables and writes it last, atomically (`write`), so a folder is whole only when a
collection finished; every reader checks the bytes it reads against it (`read`), and `make` rebuilds
a folder that `damage` finds wrong (``python -m harness.store.output_manifest damaged TABLES_DIR`` lists
them). Only the standard library and `harness.config` (which imports nothing else) are imported here: make
runs this module each time it starts.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from harness.config import DATASETS

MANIFEST = "manifest.json"
VERSION = 1


def entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    """The manifest of `files` ({name: bytes written}); its checksum covers the rest, so a change
    anywhere in it (even one that leaves valid JSON) makes it damaged."""
    body = {name: entry(data) for name, data in sorted(files.items())}
    checksum = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return json.dumps({"version": VERSION, "files": body, "checksum": checksum}, indent=1, sort_keys=True).encode()


def load(folder: Path) -> tuple[dict | None, str | None]:
    """({name: {"size", "sha256"}}, None), or (None, what is wrong with the manifest)."""
    try:
        data = (folder / MANIFEST).read_bytes()
    except FileNotFoundError:
        return (
            None,
            "missing: the collection was killed before it finished, or the tables were written by an older harness",
        )
    except OSError as exc:
        return None, f"unreadable: {exc.strerror}"
    try:
        m = json.loads(data)
    except ValueError:
        return None, f"not valid JSON ({len(data):,} bytes)"
    if not isinstance(m, dict) or m.get("version") != VERSION or not isinstance(m.get("files"), dict):
        return None, "not a tables manifest of this harness"
    if hashlib.sha256(json.dumps(m["files"], sort_keys=True).encode()).hexdigest() != m.get("checksum"):
        return None, "changed: its checksum does not match its contents"
    return m["files"], None


def problem(data: bytes | None, recorded: dict | None) -> str | None:
    """What is wrong with a file's bytes (None: it is missing) against its manifest entry."""
    if recorded is None:
        return "not in the folder's manifest"
    if data is None:
        return "missing"
    if len(data) < recorded["size"]:
        return f"truncated: {len(data):,} of {recorded['size']:,} bytes"
    if len(data) > recorded["size"]:
        return f"{len(data):,} bytes where {recorded['size']:,} were recorded"
    if hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        return "changed: its SHA-256 differs from the manifest's"
    return None


def damage(folder: Path) -> dict[str, str]:
    """{file: what is wrong} for a tables folder: its manifest alone when that is missing or
    damaged; else every listed file checked, and every table on disk that it does not list. Empty
    when whole."""
    files, what = load(folder)
    if files is None:
        return {MANIFEST: what}
    out = {}
    names = list(files) + [p.name for p in sorted(folder.glob("*.parquet")) if p.name not in files]
    for name in names:
        try:
            data = (folder / name).read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            out[name] = f"unreadable: {exc.strerror}"
            continue
        why = problem(data, files.get(name))
        if why:
            out[name] = why
    return out


def read(folder: Path, name: str) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None) when they match the manifest; (None, what is wrong) otherwise, the
    manifest's own damage named as `manifest.json: ...`."""
    files, what = load(folder)
    if files is None:
        return None, f"{MANIFEST}: {what}"
    try:
        data = (folder / name).read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        return None, f"{name}: unreadable: {exc.strerror}"
    why = problem(data, files.get(name))
    return (None, f"{name}: {why}") if why else (data, None)


def rebuild_command(setting: str, study: str, out: str | None = None, folder: Path | None = None) -> str:
    """The commands that collect a study's tables of a setting (PROFILE or PROFILE-DATASET) again;
    `out` the output folder when it is not the project's (make's OUT). A .npz file's setting is
    named by its stem and a hash: its path comes from the folder's adaptation.json when that
    still reads (a hint for the command only), else it is left for the user to fill in."""
    import shlex

    profile, _, dataset = setting.partition("-")
    recorded = None
    try:
        recorded = json.loads((folder / "adaptation.json").read_bytes()).get("dataset") if folder is not None else None
    except (OSError, ValueError, AttributeError):
        pass
    if isinstance(recorded, str) and recorded.endswith(".npz"):
        dataset = shlex.quote(recorded)
    elif dataset and dataset not in DATASETS:
        dataset = "PATH/OF/THE.npz"
    flags = (
        f"PROFILE={profile}" + (f" DATASET={dataset}" if dataset else "") + (f" OUT={shlex.quote(out)}" if out else "")
    )
    # `make STUDY`, not `make tables`: that would also run every other study's sweep not yet run
    direct = f"python -m analysis.tables {study} --profile {profile}" + (f" --dataset {dataset}" if dataset else "")
    return f"`make {study} {flags}` (or `{direct}`)"


def check_output(out: Path) -> tuple[int, list[str]]:
    """(table folders checked, one line per damaged folder: its files, what is wrong and the command
    that collects it again) for every study's tables under `out`/reports/<setting>/tables/."""
    checked, lines = 0, []
    for folder in sorted(out.glob("reports/*/tables/*/")):
        checked += 1
        wrong = damage(folder)
        if wrong:
            setting, study = folder.parent.parent.name, folder.name
            listed = "; ".join(f"{name}: {what}" for name, what in wrong.items())
            lines.append(
                f"tables {folder}: {listed}; collect them again: {rebuild_command(setting, study, str(out), folder)}"
            )
    return checked, lines


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.store.output_manifest damaged TABLES_DIR``: the studies under TABLES_DIR whose
    folder does not match its manifest, one per line (what make rebuilds)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "damaged":
        print("usage: python -m harness.store.output_manifest damaged TABLES_DIR", file=sys.stderr)
        return 2
    root = Path(argv[1])
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if damage(folder):
            print(folder.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
