"""Reports on runs: records and server logs -> figures, report.html and summary.json; comparisons of runs.

The only package that imports pandas and matplotlib. `write_report` is what a finished Locust run calls:

    >>> from harness.report import write_report
    >>> write_report("reports/runs/quickstart")  # doctest: +SKIP
    PosixPath('reports/runs/quickstart/report.html')
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_comparison", "write_report"]


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write report.html, the figures and summary.json for a run directory; returns report.html's path."""
    # imported here so that `import harness.report` stays cheap for callers that may never report
    from harness.report.html import write_report as write

    return write(run_dir, out)


def write_comparison(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write compare.html and compare.json putting several runs side by side; returns compare.html's path."""
    from harness.report.compare import write_comparison as write

    return write(run_dirs, out)
