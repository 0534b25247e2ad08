"""`bench ...`: benchmarks that print ratios measured in one run (`harness.bench`)."""

from __future__ import annotations

import argparse
import json

from harness.cli.common import _list
from harness.cli.spec import Command, arg
from harness.errors import HarnessError


def cmd_bench_train(args: argparse.Namespace) -> int:
    from harness.bench import bench_train, format_result

    res = bench_train(device=args.device, epochs=args.epochs)
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_mc(args: argparse.Namespace) -> int:
    from harness.bench import bench_mc, bench_mc_memory, format_result

    widths = tuple(_list(args.widths, int, "--widths"))
    res = bench_mc(device=args.device, T=args.T, n=args.examples, widths=widths)
    if args.memory:
        res |= bench_mc_memory()
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_checks(args: argparse.Namespace) -> int:
    from harness.bench import bench_checks, format_result

    if args.epochs < 1:
        raise HarnessError(f"--epochs {args.epochs}: train at least one epoch")
    res = bench_checks(args.epochs)
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_per_example(args: argparse.Namespace) -> int:
    from harness.bench import bench_per_example, format_result

    res = bench_per_example()
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_cnn(args: argparse.Namespace) -> int:
    from harness.bench import bench_cnn, format_result

    res = bench_cnn()
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_sequential(args: argparse.Namespace) -> int:
    from harness.stats.sequential import Design
    from harness.stats.simulation import benchmark
    from harness.sweep.profiles import looks

    if args.reps < 10:
        raise HarnessError(f"--reps {args.reps}: simulate at least 10 families per scenario")
    design = Design(looks(args.profile))
    if len(design.looks) < 2:
        raise HarnessError(
            f"--profile {args.profile}: its design has one look {design.looks}; simulate a profile with looks "
            "(quick, paper)"
        )
    print(benchmark(args.reps, design))
    return 0


def cmd_bench_sweep(args: argparse.Namespace) -> int:
    from harness.bench import bench_sweep, format_result

    res = bench_sweep(args.runs, args.workers)
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


COMMANDS = (
    Command(
        "bench",
        help="benchmarks that print ratios measured in one run",
        metavar="WHICH",
        sub=(
            Command(
                "train",
                help="harness training loop vs a DataLoader loop; fraction of matmul peak",
                func=cmd_bench_train,
                args=(
                    arg("--device", default="cpu"),
                    arg("--epochs", type=int, default=2),
                    arg("--json", action="store_true", help="print JSON instead of a table"),
                ),
            ),
            Command(
                "mc",
                help="mc_shared engine vs the usual MC-dropout idioms; fraction of matmul peak",
                func=cmd_bench_mc,
                args=(
                    arg("--device", default="cpu"),
                    arg("--T", type=int, default=100),
                    arg("--examples", type=int, default=10_000),
                    arg("--widths", default="1024,1024", help="hidden widths, e.g. 4096,4096"),
                    arg("--memory", action="store_true", help="also compare peak memory at T=100 and T=10,000 (slow)"),
                    arg("--json", action="store_true", help="print JSON instead of a table"),
                ),
            ),
            Command(
                "sweep",
                help="16 small runs on local, processes and ray; Ray's overhead per run",
                func=cmd_bench_sweep,
                args=(
                    arg("--runs", type=int, default=16),
                    arg("--workers", type=int, default=2),
                    arg("--json", action="store_true", help="print JSON instead of a table"),
                ),
            ),
            Command(
                "checks",
                help="share of a quick run spent in validation checks, whole training split vs a fixed subsample",
                func=cmd_bench_checks,
                args=(
                    arg("--epochs", type=int, default=8),
                    arg("--json", action="store_true", help="print JSON instead of a table"),
                ),
            ),
            Command(
                "per-example",
                help="share of an MC evaluation spent in the per-example idiom, on every stream vs the first only",
                func=cmd_bench_per_example,
                args=(arg("--json", action="store_true", help="print JSON instead of a table"),),
            ),
            Command(
                "cnn",
                help="seconds per epoch of placement's quick CNN, before and after channels_last and uniform masks",
                func=cmd_bench_cnn,
                args=(arg("--json", action="store_true", help="print JSON instead of a table"),),
            ),
            Command(
                "sequential",
                help=(
                    "the verdict design by simulation: family-wise error and power beside the fixed design and e-values"
                ),
                func=cmd_bench_sequential,
                args=(
                    arg("--reps", type=int, default=1000, help="families simulated per scenario"),
                    arg(
                        "--profile",
                        default="quick",
                        help="whose looks to simulate (harness.sweep.profiles.LOOKS; default quick)",
                    ),
                ),
            ),
        ),
    ),
)
