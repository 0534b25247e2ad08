"""Downloads with checksums, only where a machine has internet (tests use a server on 127.0.0.1).

`fetch` downloads the files of a dataset's `Source` (`harness.data.registry.SPECS`) into the data
folder, each verified against the MD5 its authors published before it appears under its name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from harness.data.registry import SPECS, Source, data_dir
from harness.errors import DataError


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(
    name: str, base_url: str | None = None, sources: dict[str, Source] | None = None, timeout: float = 60.0
) -> list[Path]:
    """Download a dataset's files into data/, verifying each MD5. A file appears under its final
    name only once it is complete and verified; a mismatch removes the download and raises.
    `sources` (default: those of `SPECS`) maps dataset names to their `Source`."""
    sources = {n: s.source for n, s in SPECS.items() if s.source is not None} if sources is None else sources
    if name not in sources:
        embedded = [d for d in SPECS if d not in sources]
        raise DataError(
            f"no download for {name!r}; downloadable: {', '.join(sources)} (embedded, nothing to fetch: "
            f"{', '.join(embedded)})"
        )
    src = sources[name]
    folder = data_dir() / src.folder
    folder.mkdir(parents=True, exist_ok=True)
    base = (base_url or src.base_url).rstrip("/") + "/"
    out = []
    for fname, md5 in src.files.items():
        dest = folder / fname
        if dest.is_file() and _md5(dest) == md5:
            out.append(dest)  # already verified: neither downloaded nor unpacked again
            continue
        _download(base + fname, dest, md5, timeout)
        out.append(dest)
        if src.extract:
            _extract(dest, folder)
    return out


def _download(url: str, dest: Path, md5: str, timeout: float) -> None:
    """`url` saved as `dest` through a temporary file, once its MD5 is `md5`; nothing is left otherwise."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, f)
        got = _md5(Path(tmp))
        if got != md5:
            raise DataError(f"checksum mismatch for {url}: MD5 {got}, expected {md5}; nothing was saved")
        os.replace(tmp, dest)
    except OSError as exc:
        raise DataError(f"download of {url} failed: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _extract(archive: Path, folder: Path) -> None:
    """Unpack a tar.gz into `folder` through a temporary folder, refusing links and absolute paths."""
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".extract."))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        for entry in tmp.iterdir():
            target = folder / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive} could not be unpacked ({exc}); delete it and fetch again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
