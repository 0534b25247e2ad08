"""The command line as data: each subcommand is a `Command` (name, help, the function it runs, its arguments,
its own subcommands); `build` turns a table of them into argparse parsers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Arg:
    """One argument: argparse's `add_argument(*flags, **options)`."""

    flags: tuple[str, ...]
    options: dict


def arg(*flags: str, **options) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    """A subcommand: `func(args) -> exit code` runs it; `sub`, its own subcommands (then `metavar` names them)."""

    name: str
    help: str
    func: Callable | None = None
    args: tuple[Arg, ...] = ()
    sub: tuple[Command, ...] = ()
    metavar: str | None = None


def build(subparsers, commands: tuple[Command, ...]) -> None:
    """Add `commands` (and theirs, recursively) to an argparse subparsers object."""
    for c in commands:
        p = subparsers.add_parser(c.name, help=c.help)
        for a in c.args:
            p.add_argument(*a.flags, **a.options)
        if c.func is not None:
            p.set_defaults(func=c.func)
        if c.sub:
            build(p.add_subparsers(metavar=c.metavar), c.sub)


def parser(prog: str, description: str, commands: tuple[Command, ...]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    build(p.add_subparsers(metavar="COMMAND"), commands)
    return p
