"""Failure records: which runs raised, so that a sweep skips them unless asked to retry.

`.failed/<run_id>.json` holds the run's id, config and error (the traceback), written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import StoreError
from harness.files import atomic_write

FAILED = ".failed"  # the folder of a store's failure records


class Failures:
    """The failure records of the store at `root`."""

    def __init__(self, root: Path):
        self.folder = Path(root) / FAILED

    def path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.json"

    def record(self, run_id: str, config: dict, error: str) -> None:
        """Remember that a run raised (it is retried only on request)."""
        blob = json.dumps({"run_id": run_id, "config": config, "error": error}, indent=2)
        atomic_write(self.path(run_id), blob.encode())

    def error(self, run_id: str) -> str | None:
        """The error a run raised (None when it has no record); a StoreError when the record is damaged."""
        path = self.path(run_id)
        if not path.is_file():
            return None
        try:
            return str(json.loads(path.read_bytes())["error"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: not UTF-8 or not JSON
            raise StoreError(
                f"run {run_id}: its failure record {path} is damaged ({type(exc).__name__}); delete it (`rm {path}`) "
                "and the run is tried again"
            ) from None

    def clear(self, run_id: str) -> None:
        self.path(run_id).unlink(missing_ok=True)
