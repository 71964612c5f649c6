"""The `harness report` and `harness compare` subcommands (argument handling only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UsageError


def run_report(args: argparse.Namespace) -> int:
    """`harness report RUN_DIR [--out DIR]`: prints the path of report.html."""
    from harness.report.html import write_report

    path = write_report(args.run_dir, args.out)
    print(path)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """`harness compare RUN_DIR ... [--out DIR]`: prints the path of compare.html."""
    from harness.report.compare import write_comparison

    if len(args.run_dirs) < 2:
        raise UsageError("compare needs at least two run directories")
    out = Path(args.out) if args.out else Path(args.run_dirs[0]).parent / "comparison"
    print(write_comparison(args.run_dirs, out))
    return 0
