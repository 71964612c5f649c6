"""The `retries` and `retry_after` sections: how many attempts a request took and how long it waited, and
per kind of throttling the Retry-After the client was given and what it did next."""

from __future__ import annotations

import pandas as pd

from harness.report.load import finite_or_none
from harness.report.summary.frame import REACTIONS, THROTTLED, attempts_per_request, percentiles, reactions
from harness.report.summary.schema import Retries, RetryAfter


def retries(records: pd.DataFrame) -> Retries:
    sizes = attempts_per_request(records)
    waits = records["retry_wait_s"].fillna(0.0)
    source = records["retry_wait_source"]
    by_source = waits[source.notna()].groupby(source[source.notna()], observed=True).sum()
    return {
        "amplification": len(records) / len(sizes),
        "per_request": len(records) / len(sizes) - 1,
        "max_attempts": int(sizes.max()),
        "retried_share": float((sizes > 1).mean()),
        "wait_s_total": float(waits.sum()),
        "wait_s_per_request": float(waits.sum() / len(sizes)),
        "wait_s_by_source": {str(k): float(v) for k, v in by_source.items()},
    }


def retry_after(records: pd.DataFrame) -> dict[str, RetryAfter]:
    out: dict[str, RetryAfter] = {}
    reaction = reactions(records)
    for source in THROTTLED:
        mine = records["outcome"] == source
        values = records.loc[mine, "retry_after"]
        counts = reaction[mine].value_counts()
        out[source] = {
            "attempts": int(mine.sum()),
            "with_retry_after": int(values.notna().sum()),
            "retry_after_s": {**percentiles(values), "max": finite_or_none(values.max())},
            "client_did": {r: int(counts.get(r, 0)) for r in REACTIONS},
        }
    return out
