"""The `chargeback` section: tokens per app and model as the gateway counted them against the backends'
own usage, joined on the gateway's request ids."""

from __future__ import annotations

import pandas as pd

from harness.report.summary.frame import ok_backend_rows
from harness.report.summary.schema import ChargebackRow

KINDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def chargeback(gateway: pd.DataFrame | None, backend: pd.DataFrame | None) -> list[ChargebackRow] | None:
    """Tokens per app and model as the gateway counted them vs the backends' usage, joined on request ids.

    Rows are sorted by app then model; `error` = gateway - backend total tokens, `error_pct` relative to backend.
    """
    if gateway is None or backend is None:
        return None
    gw = gateway[(gateway["status"] >= 200) & (gateway["status"] < 300)]
    gw_tokens = gw.groupby(["app_id", "model"])[list(KINDS)].sum()
    be = ok_backend_rows(backend)
    be = be.merge(gw[["gateway_request_id", "app_id"]], on="gateway_request_id", how="inner")
    be_tokens = be.groupby(["app_id", "model"])[list(KINDS)].sum()
    table = gw_tokens.merge(
        be_tokens, left_index=True, right_index=True, how="outer", suffixes=("_gateway", "_backend")
    ).fillna(0.0)
    rows: list[ChargebackRow] = []
    for (app, model), row in table.sort_index().iterrows():
        gateway_total, backend_total = row["total_tokens_gateway"], row["total_tokens_backend"]
        rows.append(
            {
                "app_id": app,
                "model": model,
                "gateway_prompt_tokens": float(row["prompt_tokens_gateway"]),
                "gateway_completion_tokens": float(row["completion_tokens_gateway"]),
                "gateway_total_tokens": float(row["total_tokens_gateway"]),
                "backend_prompt_tokens": float(row["prompt_tokens_backend"]),
                "backend_completion_tokens": float(row["completion_tokens_backend"]),
                "backend_total_tokens": float(row["total_tokens_backend"]),
                "error": float(gateway_total - backend_total),
                "error_pct": float((gateway_total - backend_total) / backend_total * 100) if backend_total else None,
            }
        )
    return rows
