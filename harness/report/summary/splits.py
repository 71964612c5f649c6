"""The `backends`, `apps` and `by_*` sections: each backend's and app's share of the goodput against its
limit, and the attempt-level figures split by app, client profile, backend and gateway replica."""

from __future__ import annotations

import pandas as pd

from harness.report.cost import ptu_utilization
from harness.report.load import RunData, finite_or_none
from harness.report.summary.frame import (
    REACTIONS,
    SPLITS,
    THROTTLED,
    missing_label,
    percentiles,
    reactions,
    recorded_rows,
    run_window,
    successes,
    token_limit_tpm,
)
from harness.report.summary.schema import Backend, BackendAnswers, PerKey, Split
from harness.report.summary.traffic import requests
from harness.report.summary.windows import peak_window_tokens


def backend_limits(run: RunData) -> dict[str, float]:
    """TPM each backend instance allows (sum over its deployments; PTU deployments by their token rate)."""
    if run.scenario is None:
        return {}
    return {
        b.name: float(sum(d.ptu * d.ptu_tokens_per_minute if d.ptu else d.tpm for d in b.deployments.values()))
        for b in run.scenario.backends
    }


def app_limits(run: RunData, records: pd.DataFrame) -> dict[str, float]:
    """The gateway's tokens-per-minute per counter key, applied to every app (None when no token limit)."""
    limit = token_limit_tpm(run.scenario_data)
    if limit is None:
        return {}
    return {str(app): limit for app in records["app_id"].dropna().unique()}


def per_key(records: pd.DataFrame, key: str, minutes: float, limits: dict[str, float]) -> dict[str, PerKey]:
    done = successes(records)
    tokens = done.groupby(done[key], observed=True)["usage_total"].sum()
    served = done.groupby(done[key], observed=True).size()
    total_tokens = float(tokens.sum())
    peaks = {str(name): peak_window_tokens(rows) for name, rows in done.groupby(key, observed=True)}
    out: dict[str, PerKey] = {}
    for name in sorted(set(tokens.index.astype(str)) | set(limits)):
        t = float(tokens.get(name, 0.0))
        out[name] = {
            "requests": int(served.get(name, 0)),
            "request_share": finite_or_none(served.get(name, 0) / len(done)) if len(done) else None,
            "tokens": t,
            "token_share": t / total_tokens if total_tokens else None,
            "tpm": finite_or_none(t / minutes),
            "peak_tpm": peaks.get(name),
            "limit_tpm": limits.get(name),
        }
    return out


def backends(run: RunData, records: pd.DataFrame, minutes: float) -> dict[str, Backend]:
    """Each backend's share (`per_key`), its PTU utilization, and what its own log says it answered."""
    utilization = ptu_utilization(run.backend, run.scenario, *run_window(run))
    answered = backend_answers(recorded_rows(run.backend, records))
    unknown: BackendAnswers = {"answered": None, "rate_429": None}
    return {
        name: {**figures, "ptu_utilization": utilization.get(name), **answered.get(name, unknown)}
        for name, figures in per_key(records, "backend", minutes, backend_limits(run)).items()
    }


def apps(run: RunData, records: pd.DataFrame, minutes: float) -> dict[str, PerKey]:
    return per_key(records, "app_id", minutes, app_limits(run, records))


def backend_answers(backend: pd.DataFrame | None) -> dict[str, BackendAnswers]:
    """Per backend, from its own log: requests it answered and the share it answered with 429.

    This counts what reached the backend, gateway retries included: a 429 the gateway retried on another
    member never reaches the client's records, but it is here.
    """
    if backend is None or backend.empty:
        return {}
    out: dict[str, BackendAnswers] = {}
    for name, rows in backend.groupby("backend", observed=True):
        out[str(name)] = {"answered": len(rows), "rate_429": float((rows["status"] == 429).mean())}
    return out


def splits(records: pd.DataFrame, minutes: float) -> dict[str, dict[str, Split]]:
    """`by_app`, `by_client_profile`, `by_backend` and `by_replica`, in that order."""
    return {split: split_by(records, key, minutes) for split, key in SPLITS.items()}


def split_by(records: pd.DataFrame, key: str, minutes: float) -> dict[str, Split]:
    """The attempt-level figures per value of `key`; request-level ones where a request has one value."""
    per_request = key not in ("backend", "replica")
    keys = records[key].astype(object).where(records[key].notna(), missing_label(key))
    out: dict[str, Split] = {}
    for name, rows in records.groupby(keys, sort=True):
        counted = requests(rows)
        done = successes(rows)
        goodput = float(done["usage_total"].sum())
        reaction = reactions(rows).value_counts()
        throttled = sum(counted["attempt_outcomes"][o] for o in THROTTLED)
        out[str(name)] = {
            "attempts": counted["attempts"],
            "attempt_outcomes": counted["attempt_outcomes"],
            "rate_throttled": throttled / counted["attempts"],
            "rate_429": counted["rate_429"],
            "rate_429_gateway": counted["rate_429_gateway"],
            "rate_429_backend": counted["rate_429_backend"],
            "rate_503_breaker": counted["rate_503_breaker"],
            "rate_403_quota": counted["rate_403_quota"],
            "logical": counted["logical"] if per_request else None,
            "client_failure_rate": counted["client_failure_rate"] if per_request else None,
            "retries_per_request": len(rows) / rows["logical_id"].nunique() - 1 if per_request else None,
            "client_did": {r: int(reaction.get(r, 0)) for r in REACTIONS},
            "goodput_tokens": goodput,
            "goodput_tpm": finite_or_none(goodput / minutes),
            "latency_p95": percentiles(done["latency_s"])["p95"],
            "tokens": {kind: float(done[f"usage_{kind}"].sum()) for kind in ("prompt", "completion", "total")},
        }
    return out
