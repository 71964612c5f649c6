"""The `requests` and `throughput` sections: attempts by outcome, finished logical requests and the
client-visible failure rate, requests in flight when their user stopped, and the goodput."""

from __future__ import annotations

import pandas as pd

from harness.records.outcomes import OUTCOMES, SUCCESS, Decision, ErrorKind
from harness.report.load import RunData, finite_or_none
from harness.report.summary.schema import Requests, RequestsSection, Throughput


def requests(records: pd.DataFrame) -> Requests:
    attempts = len(records)
    ok_by_logical = (records["outcome"] == SUCCESS).groupby(records["logical_id"], sort=False).any()
    last = records["attempt"].fillna(0).groupby(records["logical_id"], sort=False).idxmax()
    unfinished = int((records.loc[last, "decision"] == Decision.RETRY).sum())
    logical = len(ok_by_logical) - unfinished
    succeeded = int(ok_by_logical.sum())
    counts = records["outcome"].value_counts()
    outcome_counts = {o: int(counts.get(o, 0)) for o in OUTCOMES}
    return {
        "attempts": attempts,
        "logical": logical,
        "unfinished": unfinished,
        "succeeded": succeeded,
        "failed": logical - succeeded,
        "client_failure_rate": (logical - succeeded) / logical if logical else None,
        "attempt_outcomes": outcome_counts,
        "rate_429": (outcome_counts[ErrorKind.GATEWAY_TOKEN_LIMIT] + outcome_counts[ErrorKind.BACKEND_429]) / attempts,
        "rate_429_gateway": outcome_counts[ErrorKind.GATEWAY_TOKEN_LIMIT] / attempts,
        "rate_429_backend": outcome_counts[ErrorKind.BACKEND_429] / attempts,
        "rate_503_breaker": outcome_counts[ErrorKind.BREAKER_OPEN] / attempts,
        "rate_403_quota": outcome_counts[ErrorKind.GATEWAY_QUOTA] / attempts,
    }


def requests_section(run: RunData, records: pd.DataFrame) -> RequestsSection:
    return {**requests(records), "in_flight_when_stopped": in_flight_when_stopped(run, records)}


def in_flight_when_stopped(run: RunData, records: pd.DataFrame) -> int | None:
    """Requests a server log saw that the client never recorded: in flight when their user stopped."""
    log = run.gateway[run.gateway["kind"] == "request"] if run.gateway is not None else run.backend
    if log is None or "client_request_id" not in log or "request_id" not in records:
        return None
    ids = log["client_request_id"].dropna()
    return int(ids[~ids.isin(records["request_id"])].nunique())


def throughput(records: pd.DataFrame, goodput_tokens: float, span: float, minutes: float) -> Throughput:
    return {
        "goodput_tokens": finite_or_none(goodput_tokens),
        "goodput_tpm": finite_or_none(goodput_tokens / minutes),
        "successes_per_s": finite_or_none((records["outcome"] == SUCCESS).sum() / span if span > 0 else None),
    }
