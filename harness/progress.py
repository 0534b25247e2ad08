"""Progress bars that stay quiet where nobody watches (not a terminal, or CI=true)."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    if os.environ.get("HARNESS_PROGRESS") in ("0", "1"):
        return os.environ["HARNESS_PROGRESS"] == "1"
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def progress_bar(**kwargs) -> tqdm:
    """A tqdm bar on stderr, disabled unless `progress_enabled()`."""
    return tqdm(disable=not progress_enabled(), leave=False, dynamic_ncols=True, **kwargs)
