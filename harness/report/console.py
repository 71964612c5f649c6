"""The end-of-run table Locust prints, made from the same summary as summary.json (no number of its own).

>>> print(format_console_summary(summary))  # doctest: +SKIP
Harness summary
...
requests (logical)        90 (142 attempts, 12 unfinished at the end, 2 in flight when their user stopped, counted nowhere)
"""

from __future__ import annotations

import textwrap
from typing import Any

from harness.records.outcomes import OUTCOME_LABELS, THROTTLING
from harness.report.summary.schema import Summary
from harness.report.units import percent
from harness.report.verdict import shared_state_lost


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _how(engine: str | None, scale: float | None) -> str:
    if engine == "sim":
        return "simulated (discrete events, no wall clock)"
    return f"at time scale {'-' if scale is None else f'{scale:g}'}"


def format_console_summary(summary: Summary) -> str:
    """A short table of the run's headline numbers for the console; `-` for what could not be measured."""
    req = summary["requests"]
    requests = f"{req['logical']} ({req['attempts']} attempts"
    requests += f", {req['unfinished']} unfinished at the end" if req["unfinished"] else ""
    in_flight = req.get("in_flight_when_stopped")
    requests += f", {in_flight} in flight when their user stopped, counted nowhere)" if in_flight else ")"
    rate = req["client_failure_rate"]
    attempts = req["attempts"]
    refused = [
        (label, req["attempt_outcomes"][outcome]) for outcome, label in OUTCOME_LABELS.items() if outcome in THROTTLING
    ]
    e2e, ttft, run = summary["end_to_end_latency"], summary["ttft"]["stream"], summary["run"]
    goodput, scale = summary["throughput"]["goodput_tpm"], run["time_scale"]
    rows = [
        ("requests (logical)", requests),
        ("client-visible failures", f"{req['failed']} ({_percent(rate)})"),
        (
            "429/403/503 by source",
            ", ".join(f"{label} {n} ({_percent(n / attempts)})" for label, n in refused if n) or "none",
        ),
        ("retries per request", f"{summary['retries']['per_request']:.2f}"),
        ("goodput", f"{'-' if goodput is None else f'{goodput:,.0f}'} tokens/min (scenario time)"),
        ("latency p50 / p95 (end to end)", f"{_seconds(e2e['p50'])} / {_seconds(e2e['p95'])}"),
        ("TTFT p50 / p95 (streams)", f"{_seconds(ttft['p50'])} / {_seconds(ttft['p95'])}"),
        ("client profile(s)", ", ".join(run["client_profiles"]) or "unknown"),
        ("scenario time", f"{_seconds(run['duration_s'])} {_how(run.get('engine'), scale)}"),
    ]
    lost = run.get("shared_state_lost")
    if lost:
        rows.append(("shared state", shared_state_lost(lost)))
    offered = run.get("offered_load")
    if offered and offered.get("offered_share") is not None:
        rows.append(("load offered", f"{_percent(offered['offered_share'])} of the planned user-seconds"))
    if run.get("cut_short_s"):
        why = f" ({run['ended_by']})" if run.get("ended_by") else ""
        rows.append(("cut short", f"{run['cut_short_s']:.1f} s of planned scenario time did not run{why}"))
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 40)
    table = [f"{name:<{width}}  {value}" for name, value in rows]
    question = run.get("question")
    opening = [question] if question else []
    if offered and offered.get("short"):
        opening.insert(0, offered_load_warning(offered).upper()[:1] + offered_load_warning(offered)[1:])
    answer = textwrap.wrap(" ".join(summary.get("verdict", [])), width + 40)
    return "\n".join(["Harness summary", line, *table, line, *opening, *answer])


def offered_load_warning(offered: dict[str, Any]) -> str:
    """One line for a run that offered less load than it planned (run.json's `offered_load`).

    >>> offered_load_warning({"offered_user_s": 850.0, "planned_user_s": 1000.0, "offered_share": 0.85,
    ...                       "by_process": {"w0": {"offered_user_s": 350.0}, "w1": {"offered_user_s": 500.0}}})
    'offered less load than planned: 85.0 % (850 of 1,000 user-s of scenario time; w0 350, w1 500)'
    """
    parts = ", ".join(
        f"{name} {float(p.get('offered_user_s') or 0):,.0f}" for name, p in (offered.get("by_process") or {}).items()
    )
    return (
        f"offered less load than planned: {percent(offered['offered_share'])} "
        f"({offered['offered_user_s']:,.0f} of {offered['planned_user_s']:,.0f} user-s of scenario time"
        + (f"; {parts})" if len(offered.get("by_process") or {}) > 1 else ")")
    )


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else percent(fraction)
