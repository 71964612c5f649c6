"""The former home of `summarize`, kept for the load generator's and the simulator's end of run, which
import it from here; the summary itself lives in `harness.report.summary` (one module per section)."""

from harness.report.summary.build import summarize as summarize

__all__ = ["summarize"]
