"""The records as every section reads them: the run's window, the derived columns, and the shared cuts.

The definitions behind every number are in `harness.report.summary` (the package's docstring).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from harness.records import LOAD_STARTED_AT, SCENARIO_SECONDS
from harness.records.outcomes import OTHER_ERROR, OUTCOMES, SUCCESS, THROTTLING_KINDS, Decision, WaitSource
from harness.report.load import RunData, finite_or_none
from harness.report.summary.schema import Percentiles

THROTTLED = THROTTLING_KINDS
REACTIONS = ("waited_retry_after", "own_backoff", "retried_at_once", "gave_up")
MAX_TOKENS_EDGES = (0, 256, 1024, 4096, math.inf)
MAX_TOKENS_LABELS = ("<=256", "257-1024", "1025-4096", ">4096")
PERCENTILES = (50, 95, 99)
SPLITS = {"by_app": "app_id", "by_client_profile": "client_profile", "by_backend": "backend", "by_replica": "replica"}
NO_BACKEND = "(none)"  # by_backend's key for attempts no backend answered; by_replica's for no replica stated


def run_window(run: RunData) -> tuple[float, float]:
    """(start, duration): the scenario time (epoch s) the load started and its length in scenario seconds."""
    records = run.records
    first = float(records["t_scenario"].min())
    started = finite_or_none(number(run.run_info.get(LOAD_STARTED_AT)))
    length = finite_or_none(number(run.run_info.get(SCENARIO_SECONDS)))
    start = first if started is None else min(started, first)
    if length is None or length <= 0:
        length = float((records["t_scenario"] + records["latency_s"].fillna(0.0)).max()) - start
    return start, length


def number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (booleans included)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def annotate(run: RunData) -> pd.DataFrame:
    """The records with the derived columns every metric uses: outcome, t (s since start), end, retry_after (s)."""
    records = run.records
    if "outcome" in records:
        return records
    kind = records["error_kind"]
    status = records["status"]
    ok = kind.isna() & (status >= 1) & (status <= 399)
    refused = OUTCOMES[1:-1]  # every outcome named by its error kind
    records["outcome"] = pd.Categorical(
        np.select([ok, *(kind == outcome for outcome in refused)], [SUCCESS, *refused], default=OTHER_ERROR),
        categories=OUTCOMES,
    )
    start, _ = run_window(run)
    records["t"] = records["t_scenario"] - start
    records["end"] = records["t"] + records["latency_s"].fillna(0.0)
    records["retry_after"] = (records["retry_after_ms"] / 1000.0).fillna(records["retry_after_s"])
    return records


def run_start(run: RunData) -> float:
    """Scenario time (epoch s) the load started: time zero of every axis."""
    return run_window(run)[0]


def duration_s(run: RunData) -> float:
    return run_window(run)[1]


def successes(records: pd.DataFrame) -> pd.DataFrame:
    return records[records["outcome"] == SUCCESS]


def percentiles(values: pd.Series) -> Percentiles:
    """count and p50/p95/p99 of the non-null values (None when there are none)."""
    values = values.dropna()
    found = len(values) > 0
    p50, p95, p99 = (finite_or_none(values.quantile(p / 100)) if found else None for p in PERCENTILES)
    return {"count": len(values), "p50": p50, "p95": p95, "p99": p99}


def max_tokens_bucket(max_tokens: pd.Series) -> pd.Series:
    """Bucket label of each max_tokens value; `unset` when the request sent none."""
    buckets = pd.cut(max_tokens, bins=list(MAX_TOKENS_EDGES), labels=list(MAX_TOKENS_LABELS), right=True)
    return buckets.cat.add_categories(["unset"]).fillna("unset")


def attempts_per_request(records: pd.DataFrame) -> pd.Series:
    return records.groupby("logical_id", sort=False).size()


def reactions(records: pd.DataFrame) -> pd.Series:
    """What the client did after each throttled attempt (see REACTIONS); other attempts get None."""
    decision = records["decision"]
    source = records["retry_wait_source"]
    retried = decision == Decision.RETRY
    reaction = np.select(
        [
            retried & source.isin([WaitSource.RETRY_AFTER_MS, WaitSource.RETRY_AFTER]),
            retried & (source == WaitSource.BACKOFF),
            retried,
            decision.isin([Decision.GIVE_UP, Decision.FAIL]),
        ],
        list(REACTIONS),
        default="",
    )
    return pd.Series(reaction, index=records.index).replace("", None).where(records["outcome"].isin(THROTTLED))


def missing_label(key: str) -> str:
    """A split's name for attempts without a value: no backend or replica answered, or not recorded."""
    return NO_BACKEND if key in ("backend", "replica") else "(unknown)"


def ok_backend_rows(backend: pd.DataFrame) -> pd.DataFrame:
    return backend[(backend["status"] >= 200) & (backend["status"] < 300)]


def recorded_rows(log: pd.DataFrame | None, records: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of a server log whose request the client recorded: a request still in flight when its user
    stopped has no record and is left out here as it is of every other count (rows without a client id kept)."""
    if log is None or "client_request_id" not in log or "request_id" not in records:
        return log
    ids = log["client_request_id"]
    return log[ids.isna() | ids.isin(records["request_id"])]


def token_limit_tpm(scenario_data: dict[str, Any]) -> float | None:
    """The gateway's tokens-per-minute as scenario.yaml writes it (None when it sets no token limit)."""
    gateway = scenario_data.get("gateway")
    token_limit = gateway.get("token_limit") if isinstance(gateway, dict) else None
    if not isinstance(token_limit, dict):
        return None
    return number(token_limit.get("tokens-per-minute", token_limit.get("tokens_per_minute")))
