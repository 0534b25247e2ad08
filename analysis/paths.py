"""Where a profile's tables, figures and report live."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def out_root() -> Path:
    """Where reports/ and figures/ go: $HARNESS_OUT, else the project root."""
    return Path(os.environ.get("HARNESS_OUT", ROOT))


def tables_dir(profile: str, study: str) -> Path:
    return out_root() / "reports" / profile / "tables" / study


def figures_dir(profile: str) -> Path:
    return out_root() / "figures" / profile


def report_dir(profile: str) -> Path:
    return out_root() / "reports" / profile
