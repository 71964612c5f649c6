"""`summarize`: every section of summary.json, assembled in the file's order; the verdict is written last,
from the other sections."""

from __future__ import annotations

import math

from harness.report.cost import run_cost
from harness.report.load import RunData
from harness.report.summary.backend_log import drain, lockout
from harness.report.summary.breaker import breaker
from harness.report.summary.chargeback import chargeback
from harness.report.summary.frame import annotate, percentiles, run_window, successes
from harness.report.summary.latency import end_to_end, latency, ttft
from harness.report.summary.retries import retries, retry_after
from harness.report.summary.run_facts import run_facts
from harness.report.summary.schema import Summary, SummaryBody
from harness.report.summary.splits import apps, backends, splits
from harness.report.summary.traffic import requests_section, throughput
from harness.report.verdict import verdict


def summarize(run: RunData) -> Summary:
    """Every headline number of a run, JSON-ready (missing values are None)."""
    records = annotate(run)
    _, span = run_window(run)
    minutes = span / 60.0 if span > 0 else math.nan
    goodput_tokens = float(successes(records)["usage_total"].sum())
    streamed = records[records["stream"].fillna(False).astype(bool)]
    split = splits(records, minutes)
    body: SummaryBody = {
        "run": run_facts(run, records, span),
        "requests": requests_section(run, records),
        "throughput": throughput(records, goodput_tokens, span, minutes),
        "retries": retries(records),
        "retry_after": retry_after(records),
        "latency": latency(records, "latency_s"),
        "ttft": ttft(streamed),
        "end_to_end_latency": percentiles(end_to_end(records)),
        "backends": backends(run, records, minutes),
        "apps": apps(run, records, minutes),
        "by_app": split["by_app"],
        "by_client_profile": split["by_client_profile"],
        "by_backend": split["by_backend"],
        "by_replica": split["by_replica"],
        "breaker": breaker(run, span),
        "drain": drain(run.backend),
        "lockout": lockout(run.backend),
        "chargeback": chargeback(run.gateway, run.backend),
        "cost": run_cost(run.scenario, successes(records), span, goodput_tokens),
    }
    question = run.scenario.question if run.scenario is not None else None
    return {**body, "verdict": verdict(body, question, run.scenario, run.scenario_data)}
