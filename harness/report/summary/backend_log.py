"""The `drain` and `lockout` sections, from the backends' own log: tokens charged at admission against
tokens used, and request-limit 429s that came while the token window still had room."""

from __future__ import annotations

import pandas as pd

from harness.records.outcomes import BackendDecision
from harness.report.load import finite_or_none
from harness.report.summary.frame import ok_backend_rows
from harness.report.summary.schema import Drain, DrainFigures, Lockout, LockoutFigures


def drain(backend: pd.DataFrame | None) -> Drain | None:
    """Tokens charged at admission (estimate) vs tokens used, over requests the backends answered 2xx."""
    if backend is None:
        return None
    ok = ok_backend_rows(backend)

    def figures(rows: pd.DataFrame) -> DrainFigures:
        charged = float(rows["estimate_charged"].sum())
        used = float(rows["total_tokens"].sum())
        return {
            "requests": len(rows),
            "charged": charged,
            "used": used,
            "charged_per_used": charged / used if used else None,
        }

    by_deployment = {str(name): figures(rows) for name, rows in ok.groupby("deployment")}
    return {**figures(ok), "by_deployment": by_deployment}


def lockout(backend: pd.DataFrame | None) -> Lockout | None:
    """Request-limit 429s and those among them that came while the token window had room for the request."""
    if backend is None:
        return None
    decision = backend["decision"]
    by_requests = decision == BackendDecision.RATE_LIMITED_REQUESTS
    estimate = backend["estimate"].fillna(1.0).clip(lower=1.0) if "estimate" in backend else 1.0
    frame = pd.DataFrame(
        {
            "key": backend["backend"].astype(str) + "/" + backend["deployment"].astype(str),
            "refused": by_requests,
            "free": by_requests & (backend["remaining_tokens"] >= estimate),
            "admitted": decision.isin([BackendDecision.OK, BackendDecision.QUEUED_THEN_OK, BackendDecision.CUT_STREAM]),
            "remaining": backend["remaining_tokens"],
        }
    )

    def figures(rows: pd.DataFrame) -> LockoutFigures:
        refused, free = int(rows["refused"].sum()), int(rows["free"].sum())
        return {
            "request_limit_429s": refused,
            "with_tokens_free": free,
            "share_with_tokens_free": free / refused if refused else None,
            "mean_tokens_free": finite_or_none(rows.loc[rows["free"], "remaining"].mean()) if free else None,
            "admitted": int(rows["admitted"].sum()),
        }

    named = frame[backend["deployment"].notna().to_numpy()]
    by_deployment = {str(key): figures(rows) for key, rows in named.groupby("key", sort=True)}
    return {**figures(frame), "by_deployment": by_deployment}
