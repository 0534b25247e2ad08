"""`data list`, `data prepare` and `data fetch`: the datasets, where they come from and whether they are ready."""

from __future__ import annotations

import argparse

from harness.cli.spec import Command, arg


def cmd_data_list(args: argparse.Namespace) -> int:
    from harness.data.registry import SPECS, data_dir

    for name, spec in SPECS.items():
        if spec.source is not None:
            folder = data_dir() / spec.source.folder
            ready = (
                "present" if folder.is_dir() and any(folder.iterdir()) else f"missing: place files in {folder} or fetch"
            )
            print(f"{name:<14} files under data/  ({ready})")
        else:
            print(f"{name:<14} embedded")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from harness.data.datasets import load_raw

    for name in args.names:
        raw = load_raw(name)
        print(f"{name}: {len(raw.y) + (0 if raw.y_test is None else len(raw.y_test))} examples ready")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from harness.data.fetch import fetch

    for path in fetch(args.name, base_url=args.mirror):
        print(f"verified {path}")
    return 0


COMMANDS = (
    Command(
        "data",
        help="list, prepare or fetch datasets",
        metavar="ACTION",
        sub=(
            Command(
                "list",
                help="datasets, where they come from and whether they are ready",
                func=cmd_data_list,
            ),
            Command(
                "prepare",
                help="parse the embedded datasets into data/ once",
                func=cmd_data_prepare,
                args=(arg("names", nargs="*", default=["mnist5k", "mnist1d", "digits"]),),
            ),
            Command(
                "fetch",
                help="download a dataset into data/ with checksum verification (needs internet)",
                func=cmd_data_fetch,
                args=(
                    arg("name", help="mnist, fashion-mnist or cifar10"),
                    arg("--mirror", help="base URL to download from instead of the dataset's home"),
                ),
            ),
        ),
    ),
)
