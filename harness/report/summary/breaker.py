"""The `breaker` section: per backend, how often the gateway's circuit breaker tripped and how long it
stayed open, from the breaker transitions of the gateway log."""

from __future__ import annotations

from harness.report.load import RunData
from harness.report.summary.frame import run_start
from harness.report.summary.schema import BreakerFigures
from harness.report.summary.windows import open_intervals


def breaker(run: RunData, span: float) -> dict[str, BreakerFigures] | None:
    if run.breakers is None:
        return None
    start = run_start(run)
    trips = run.breakers[run.breakers["to"] == "open"].groupby("backend").size()
    open_s: dict[str, float] = {}
    for backend, since, until in open_intervals(run.breakers, start, span):
        open_s[backend] = open_s.get(backend, 0.0) + (until - since)
    names = sorted(set(trips.index) | set(open_s))
    return {n: {"trips": int(trips.get(n, 0)), "open_s": open_s.get(n, 0.0)} for n in names}
