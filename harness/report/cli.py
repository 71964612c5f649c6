"""The `harness report` and `harness compare` subcommands (argument handling only)."""

from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from harness.clock import RealClock
from harness.errors import UsageError

COMPARISONS_DIR = Path("reports") / "comparisons"


def run_report(args: argparse.Namespace) -> int:
    """`harness report RUN_DIR [--out DIR]`: prints the path of report.html."""
    from harness.report.html import write_report

    path = write_report(args.run_dir, args.out)
    print(path)
    return 0


def default_comparison_dir(run_dirs: list[str], root: Path = COMPARISONS_DIR) -> Path:
    """A new directory per comparison: `<root>/<UTC time>-<hash of the run directories>`, never an old one.

    >>> default_comparison_dir(["runs/a", "runs/b"]).parent
    PosixPath('reports/comparisons')
    """
    stamp = datetime.fromtimestamp(RealClock().wall(), UTC).strftime("%Y%m%dT%H%M%S")
    digest = hashlib.sha1("\n".join(str(Path(d).resolve()) for d in run_dirs).encode()).hexdigest()[:8]
    path = root / f"{stamp}-{digest}"
    n = 1
    while path.exists():  # the same runs compared twice within a second
        n += 1
        path = root / f"{stamp}-{digest}-{n}"
    return path


def run_compare(args: argparse.Namespace) -> int:
    """`harness compare RUN_DIR ... [--out DIR]`: prints the path of compare.html (a new directory unless --out)."""
    from harness.report.compare import write_comparison

    if len(args.run_dirs) < 2:
        raise UsageError("compare needs at least two run directories")
    out = Path(args.out) if args.out else default_comparison_dir(args.run_dirs)
    print(write_comparison(args.run_dirs, out))
    return 0
