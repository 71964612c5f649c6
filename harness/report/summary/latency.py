"""The `latency`, `ttft` and `end_to_end_latency` sections: percentiles over successful attempts, streamed
or not and by max_tokens bucket, and per succeeded logical request from its first start to its last end."""

from __future__ import annotations

import pandas as pd

from harness.records.outcomes import SUCCESS
from harness.report.summary.frame import MAX_TOKENS_LABELS, max_tokens_bucket, percentiles, successes
from harness.report.summary.schema import Latency, Percentiles, Ttft


def latency(records: pd.DataFrame, column: str) -> Latency:
    done = successes(records)
    values = done[column]
    stream = done["stream"].fillna(False).astype(bool)
    return {
        "all": percentiles(values),
        "stream": percentiles(values[stream]),
        "non_stream": percentiles(values[~stream]),
        "by_max_tokens": _by_max_tokens(done, values),
    }


def ttft(streamed: pd.DataFrame) -> Ttft:
    """Time to first token of successful streamed attempts, all and by max_tokens bucket."""
    done = successes(streamed)
    return {"stream": percentiles(done["ttft_s"]), "by_max_tokens": _by_max_tokens(done, done["ttft_s"])}


def _by_max_tokens(done: pd.DataFrame, values: pd.Series) -> dict[str, Percentiles]:
    buckets = max_tokens_bucket(done["max_tokens"])
    return {label: percentiles(values[buckets == label]) for label in (*MAX_TOKENS_LABELS, "unset")}


def end_to_end(records: pd.DataFrame) -> pd.Series:
    """Per succeeded logical request: first attempt's start to last attempt's end (retries and waits included)."""
    groups = records.groupby("logical_id", sort=False)
    ok = (records["outcome"] == SUCCESS).groupby(records["logical_id"], sort=False).any()
    span = groups["end"].max() - groups["t"].min()
    return span[ok]
