"""Command line: ``python -m harness COMMAND``. Bad input exits with status 2 and a message that names the
problem and the fix; nothing is written before the input has been checked.

The commands are a table (`COMMANDS`, each module's own): `runs` (train, run, status, runs, verify), `measure`
(mc, shift, coadapt, compare), `datasets` (data ...) and `benchmarks` (bench ...); `spec` builds the parser from
it. This package is the top layer: it may import every package of the harness.
"""

from __future__ import annotations

import argparse
import sys

from harness.cli import benchmarks, datasets, measure, runs
from harness.cli.spec import parser
from harness.errors import HarnessError

COMMANDS = runs.COMMANDS + measure.COMMANDS + datasets.COMMANDS + benchmarks.COMMANDS


def build_parser() -> argparse.ArgumentParser:
    return parser(
        "python -m harness", "Dropout research harness: train, sample subnetworks, measure, report.", COMMANDS
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished runs are kept in the store", file=sys.stderr)
        return 130
