"""Every number of summary.json, checked against an independent computation in plain Python loops.

`write_synthetic_run` builds a run directory with known content (records, gateway and backend logs,
scenario.yaml, run.json); the other report tests reuse it.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.records import RECORD_FIELDS
from harness.report.html import write_report

T0 = 1_700_000_000.0
APPS = ("app-a", "app-b", "app-c")
BACKENDS = ("aoai-east", "aoai-west")
SCENARIO = {
    "run": {"duration": 300, "time_scale": 10},
    "backends": [
        {"name": "aoai-east", "deployments": {"gpt-4o": {"tpm": 30000}}},
        {"name": "aoai-west", "deployments": {"gpt-4o": {"ptu": 2, "ptu_tokens_per_minute": 5000}}},
    ],
    "gateway": {"token_limit": {"counter-key": "appid", "tokens-per-minute": 20000}},
    "question": {"ask": "Which app gets throttled, and by whom?", "answered_by": ["by_app", "outcomes"]},
}
# profiles are fixed per app, as the load generator assigns them
PROFILES = {"app-a": "openai-python", "app-b": "openai-python", "app-c": "openai-python-legacy"}
# the load started half a second before the first request and was stopped after 240 of the planned 300 s
RUN_INFO = {
    "run_id": "synthetic",
    "time_scale": 10,
    "scenario": "scenarios/synthetic.yaml",
    "overrides": ["run.seed=3"],
    "load_started_at": T0 - 0.5,
    "scenario_seconds": 240.0,
    # two workers, one of which offered less than its share: the run got 85 % of its planned user-seconds
    "offered_load": {
        "planned_user_s": 1000.0,
        "offered_user_s": 850.0,
        "offered_share": 0.85,
        "short": True,
        "by_process": {"worker 0": {"offered_user_s": 500.0}, "worker 1": {"offered_user_s": 350.0}},
    },
}
# what the attempts of one logical request look like: (error_kind, status, decision, wait source) per attempt
PATTERNS = (
    [("", 200, "success", "")],
    [("", 200, "success", "")],
    [("gateway_token_limit", 429, "retry", "retry-after"), ("", 200, "success", "")],
    [("backend_429", 429, "retry", "retry-after-ms"), ("backend_429", 429, "give_up", "")],
    [("breaker_open", 503, "retry", "backoff"), ("", 200, "success", "")],
    [("server_error", 500, "fail", "")],
    [("timeout", 0, "retry", ""), ("backend_429", 429, "retry", "backoff"), ("", 200, "success", "")],
    [("gateway_quota", 403, "fail", "")],
    # unfinished: the run ended while the client waited to retry after its last attempt
    [("timeout", 0, "retry", ""), ("gateway_token_limit", 429, "retry", "retry-after")],
)


def synthetic_records(n_logical: int = 240, seed: int = 7) -> list[dict[str, Any]]:
    """Records of a run with every outcome, retries, streams and max_tokens buckets, as plain dicts."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n_logical):
        start = T0 + i * 0.9 + rng.random() * 0.5
        stream = i % 2 == 0
        max_tokens = rng.choice([None, 100, 500, 2000, 5000])
        app = APPS[i % 3]
        t = start
        for n, (kind, status, decision, source) in enumerate(PATTERNS[rng.randrange(len(PATTERNS))], start=1):
            ok = status == 200
            backend = rng.choice(BACKENDS) if status in (200, 429) and kind != "gateway_token_limit" else None
            latency = round(rng.uniform(0.2, 6.0), 3) if ok else round(rng.uniform(0.01, 0.3), 3)
            wait = round(rng.uniform(0.5, 9.0), 3) if decision == "retry" else None
            prompt = rng.randint(20, 900)
            completion = rng.randint(1, 300) if ok else None
            retry_after_s = float(rng.choice([1, 5, 60, 86400])) if status in (429, 503) else None
            retry_after_ms = round(rng.uniform(10, 9000), 1) if kind == "backend_429" and n % 2 else None
            row: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
            row.update(
                run_id="synthetic",
                t_scenario=round(t, 3),
                t_wall=round(T0 + (t - T0) / 10, 3),
                user=f"user-{i % 5}",
                app_id=app,
                client_profile=PROFILES[app],
                logical_id=f"L{i}",
                attempt=n,
                request_id=f"C{i}-{n}",
                gateway_request_id=f"G{i}-{n}" if status else None,
                backend_request_id=f"B{i}-{n}" if backend else None,
                operation="chat",
                deployment="gpt-4o",
                stream=stream,
                max_tokens=max_tokens,
                prompt_tokens_est=prompt,
                status=status,
                error_kind=kind or None,
                retry_after_s=retry_after_s,
                retry_after_ms=retry_after_ms,
                backend=backend,
                region="East US" if backend == "aoai-east" else ("West US" if backend else None),
                ttft_s=round(latency * 0.3, 3) if ok else None,
                latency_s=latency if status else None,
                usage_prompt=prompt if ok else None,
                usage_completion=completion,
                usage_total=prompt + completion if ok and completion is not None else None,
                decision=decision,
                retry_wait_s=wait,
                retry_wait_source=source or None,
            )
            rows.append(row)
            t += (latency if status else 0.0) + (wait or 0.0)
    return rows


def gateway_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gateway log rows: one per attempt that reached it; app-c's streamed completions are under-counted."""
    rows: list[dict[str, Any]] = []
    for r in records:
        if not r["status"]:
            continue
        ok = r["status"] == 200
        completion = r["usage_completion"] if ok else None
        if ok and r["app_id"] == "app-c" and r["stream"]:
            completion = 0
        rows.append(
            {
                "kind": "request",
                "t": r["t_scenario"],
                "gateway_request_id": r["gateway_request_id"],
                "client_request_id": r["request_id"],
                "backend_request_id": r["backend_request_id"],
                "app_id": r["app_id"],
                "deployment": "gpt-4o",
                "model": "gpt-4o",
                "stream": r["stream"],
                "backend": r["backend"],
                "status": r["status"],
                "attempts": [r["backend"]] if r["backend"] else [],
                "prompt_tokens": r["usage_prompt"],
                "completion_tokens": completion,
                "total_tokens": (r["usage_prompt"] + completion) if ok else None,
                "dimensions": {"ignored": True},
            }
        )
    rows.append({"kind": "metric", "t": T0, "name": "Total Tokens", "value": 5, "dimensions": {"model": "gpt-4o"}})
    return rows


BREAKER_ROWS = [
    {"kind": "breaker", "t": T0 + 10, "backend": "aoai-east", "from": "closed", "to": "open", "until": T0 + 40},
    {"kind": "breaker", "t": T0 + 45, "backend": "aoai-east", "from": "open", "to": "closed", "until": None},
    {"kind": "breaker", "t": T0 + 80, "backend": "aoai-west", "from": "closed", "to": "open", "until": T0 + 110},
    # re-tripped twice with no close logged in between: the first trip ends at its until
    {"kind": "breaker", "t": T0 + 150, "backend": "aoai-east", "from": "closed", "to": "open", "until": T0 + 170},
    {"kind": "breaker", "t": T0 + 200, "backend": "aoai-east", "from": "closed", "to": "open", "until": T0 + 260},
]
# two replicas lost Redis; replica 1 got it back and lost it again; each logs its running count of fallbacks
SHARED_STATE_ROWS = [
    {"kind": "shared_state", "t": T0 + 30, "replica": "0", "shared_state": "lost", "fallbacks": 1},
    {"kind": "shared_state", "t": T0 + 31, "replica": "1", "shared_state": "lost", "fallbacks": 1},
    {"kind": "shared_state", "t": T0 + 40, "replica": "1", "shared_state": "restored", "fallbacks": 12},
    {"kind": "shared_state", "t": T0 + 50, "replica": "1", "shared_state": "lost", "fallbacks": 13},
    {"kind": "shared_state", "t": T0 + 99, "replica": "0", "shared_state": "ended", "fallbacks": 40},
    {"kind": "shared_state", "t": T0 + 99, "replica": "1", "shared_state": "ended", "fallbacks": 20},
]


def backend_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, r in enumerate(records):
        if not r["backend"]:
            continue
        ok = r["status"] == 200
        charged = r["prompt_tokens_est"] + (r["max_tokens"] or 600)
        # refusals alternate between the two windows; the request window's come with or without tokens free
        decision = "ok" if ok else ("rate_limited_requests" if i % 2 else "rate_limited_tokens")
        row = {
            "t": r["t_scenario"],
            "backend": r["backend"],
            "request_id": r["backend_request_id"],
            "gateway_request_id": r["gateway_request_id"],
            "deployment": "gpt-4o",
            "model": "gpt-4o",
            "stream": r["stream"],
            "status": r["status"],
            "decision": decision,
            "estimate": charged,
            "estimate_charged": charged if ok else 0,
            "prompt_tokens": r["usage_prompt"],
            "completion_tokens": r["usage_completion"],
            "total_tokens": r["usage_total"],
            "remaining_tokens": (i * 37) % 3_000,
            "utilization": None,
        }
        if i % 7 == 0:
            del row["estimate"]  # a log written before the field existed
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RECORD_FIELDS)
        for r in records:
            writer.writerow([_cell(r[f]) for f in RECORD_FIELDS])


def write_synthetic_run(run_dir: Path, with_gateway: bool = True, with_backend: bool = True, **kwargs: Any) -> list:
    """A complete run directory with known content; returns the records written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    records = synthetic_records(**kwargs)
    write_records(run_dir / "records.csv", records)
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    (run_dir / "run.json").write_text(json.dumps(RUN_INFO), encoding="utf-8")
    if with_gateway:
        lines = [*gateway_rows(records), *BREAKER_ROWS, *SHARED_STATE_ROWS]
        (run_dir / "gateway.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    if with_backend:
        lines = backend_rows(records)
        (run_dir / "backend.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return records


# ---- the independent computation ----


def pct(values: list[float], p: float) -> float | None:
    """Percentile by linear interpolation between closest ranks, by hand."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def pcts(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99)}


def outcome_of(r: dict[str, Any]) -> str:
    if not r["error_kind"] and 1 <= r["status"] <= 399:
        return "success"
    if r["error_kind"] in ("gateway_token_limit", "gateway_quota", "backend_429", "breaker_open"):
        return r["error_kind"]
    return "other_error"


def bucket_of(max_tokens: int | None) -> str:
    if max_tokens is None:
        return "unset"
    for edge, label in ((256, "<=256"), (1024, "257-1024"), (4096, "1025-4096")):
        if max_tokens <= edge:
            return label
    return ">4096"


def reaction_of(r: dict[str, Any]) -> str | None:
    """What the client did after a throttled attempt (None for other attempts)."""
    if outcome_of(r) not in ("gateway_token_limit", "gateway_quota", "backend_429", "breaker_open"):
        return None
    if r["decision"] == "retry" and r["retry_wait_source"] in ("retry-after", "retry-after-ms"):
        return "waited_retry_after"
    if r["decision"] == "retry" and r["retry_wait_source"] == "backoff":
        return "own_backoff"
    if r["decision"] == "retry":
        return "retried_at_once"
    if r["decision"] in ("give_up", "fail"):
        return "gave_up"
    return None


def finished_requests(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The attempts of each logical request whose last attempt did not leave it waiting to retry."""
    by_logical: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_logical[r["logical_id"]].append(r)
    return [rows for rows in by_logical.values() if max(rows, key=lambda r: r["attempt"])["decision"] != "retry"]


def expected_split(records: list[dict[str, Any]], key: str, minutes: float) -> dict[str, Any]:
    out = {}
    for name in sorted({r[key] or "(none)" for r in records}):
        mine = [r for r in records if (r[key] or "(none)") == name]
        ok = [r for r in mine if outcome_of(r) == "success"]
        n = len(mine)
        counts = {o: sum(1 for r in mine if outcome_of(r) == o) for o in OUTCOME_NAMES}
        finished = finished_requests(mine)
        failed = sum(1 for rows in finished if not any(outcome_of(r) == "success" for r in rows))
        per_request = key not in ("backend", "replica")
        goodput = float(sum(r["usage_total"] for r in ok))
        out[name] = {
            "attempts": n,
            "attempt_outcomes": counts,
            "rate_throttled": (n - counts["success"] - counts["other_error"]) / n,
            "rate_429": (counts["gateway_token_limit"] + counts["backend_429"]) / n,
            "rate_429_gateway": counts["gateway_token_limit"] / n,
            "rate_429_backend": counts["backend_429"] / n,
            "rate_503_breaker": counts["breaker_open"] / n,
            "rate_403_quota": counts["gateway_quota"] / n,
            "logical": len(finished) if per_request else None,
            "client_failure_rate": (failed / len(finished) if finished else None) if per_request else None,
            "retries_per_request": n / len({r["logical_id"] for r in mine}) - 1 if per_request else None,
            "client_did": {x: sum(1 for r in mine if reaction_of(r) == x) for x in REACTION_NAMES},
            "goodput_tokens": goodput,
            "goodput_tpm": goodput / minutes,
            "latency_p95": pct([r["latency_s"] for r in ok], 95),
            "tokens": {kind: float(sum(r[f"usage_{kind}"] for r in ok)) for kind in ("prompt", "completion", "total")},
        }
    return out


OUTCOME_NAMES = ("success", "gateway_token_limit", "gateway_quota", "backend_429", "breaker_open", "other_error")
REACTION_NAMES = ("waited_retry_after", "own_backoff", "retried_at_once", "gave_up")


def while_redis_lost(ok: list[dict[str, Any]], since: float, until: float, limit: float) -> dict[str, Any]:
    """Per app, the most tokens within 60 s ending at a success that started between `since` and `until`."""
    out = {}
    for app in sorted({r["app_id"] for r in ok}):
        mine = [r for r in ok if r["app_id"] == app]
        peaks = [
            sum(x["usage_total"] for x in mine if r["t_scenario"] - 60 < x["t_scenario"] <= r["t_scenario"])
            for r in mine
            if since <= r["t_scenario"] <= until
        ]
        if peaks:
            out[app] = {"peak_tokens_60s": float(max(peaks)), "x_limit": max(peaks) / limit}
    return out


def expected_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    # time zero and the duration come from run.json: the load's start and its length
    start = min(RUN_INFO["load_started_at"], min(r["t_scenario"] for r in records))
    end = RUN_INFO["scenario_seconds"]
    outcomes = [outcome_of(r) for r in records]
    counts: dict[str, int] = defaultdict(int)
    for o in outcomes:
        counts[o] += 1
    by_logical: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_logical[r["logical_id"]].append(i)
    succeeded = [lid for lid, idx in by_logical.items() if any(outcomes[i] == "success" for i in idx)]
    unfinished = 0
    for idx in by_logical.values():
        last = idx[0]
        for i in idx:
            if records[i]["attempt"] > records[last]["attempt"]:
                last = i
        if records[last]["decision"] == "retry":
            unfinished += 1
    finished = len(by_logical) - unfinished
    ok = [r for r, o in zip(records, outcomes, strict=True) if o == "success"]
    tokens = sum(r["usage_total"] for r in ok)
    n = len(records)

    def latency_block(column: str) -> dict[str, Any]:
        def vals(rows: list[dict[str, Any]]) -> list[float]:
            return [r[column] for r in rows if r[column] is not None]

        return {
            "all": pcts(vals(ok)),
            "stream": pcts(vals([r for r in ok if r["stream"]])),
            "non_stream": pcts(vals([r for r in ok if not r["stream"]])),
            "by_max_tokens": {
                b: pcts(vals([r for r in ok if bucket_of(r["max_tokens"]) == b]))
                for b in ("<=256", "257-1024", "1025-4096", ">4096", "unset")
            },
        }

    def per_key(key: str, limits: dict[str, float]) -> dict[str, Any]:
        out = {}
        for name in sorted({r[key] for r in ok} | set(limits)):
            mine = [r for r in ok if r[key] == name]
            t = float(sum(r["usage_total"] for r in mine))
            # tokens of the attempts that started in the 60 s up to each attempt's start
            windows = [
                sum(x["usage_total"] for x in mine if r["t_scenario"] - 60 < x["t_scenario"] <= r["t_scenario"])
                for r in mine
            ]
            out[name] = {
                "requests": len(mine),
                "request_share": len(mine) / len(ok),
                "tokens": t,
                "token_share": t / tokens,
                "tpm": t / (end / 60),
                "peak_tpm": max(windows),
                "limit_tpm": limits.get(name),
            }
        return out

    reaction_names = ("waited_retry_after", "own_backoff", "retried_at_once", "gave_up")
    retry_after: dict[str, Any] = {}
    for source in ("gateway_token_limit", "gateway_quota", "backend_429", "breaker_open"):
        mine = [r for r, o in zip(records, outcomes, strict=True) if o == source]
        values = []
        for r in mine:
            if r["retry_after_ms"] is not None:
                values.append(r["retry_after_ms"] / 1000)
            elif r["retry_after_s"] is not None:
                values.append(r["retry_after_s"])
        did = dict.fromkeys(reaction_names, 0)
        for r in mine:
            if r["decision"] == "retry" and r["retry_wait_source"] in ("retry-after", "retry-after-ms"):
                did["waited_retry_after"] += 1
            elif r["decision"] == "retry" and r["retry_wait_source"] == "backoff":
                did["own_backoff"] += 1
            elif r["decision"] == "retry":
                did["retried_at_once"] += 1
            elif r["decision"] in ("give_up", "fail"):
                did["gave_up"] += 1
        retry_after[source] = {
            "attempts": len(mine),
            "with_retry_after": len(values),
            "retry_after_s": {**pcts(values), "max": max(values) if values else None},
            "client_did": did,
        }

    waits: dict[str, float] = defaultdict(float)
    for r in records:
        if r["retry_wait_s"] and r["retry_wait_source"]:
            waits[r["retry_wait_source"]] += r["retry_wait_s"]
    total_wait = sum(r["retry_wait_s"] or 0 for r in records)
    e2e = []
    for lid in succeeded:
        idx = by_logical[lid]
        first = min(records[i]["t_scenario"] for i in idx)
        last = max(records[i]["t_scenario"] + (records[i]["latency_s"] or 0) for i in idx)
        e2e.append(last - first)

    # breaker: east opened at 10, until 40, closed lazily at 45 -> 30 s, then 150-170 and 200 to the end (or 260);
    # west opened at 80 until 110 -> 30 s
    breaker = {
        "aoai-east": {"trips": 3, "open_s": 30.0 + 20.0 + min(start + end, T0 + 260.0) - (T0 + 200.0)},
        "aoai-west": {"trips": 1, "open_s": min(start + end, T0 + 110.0) - (T0 + 80.0)},
    }
    brows = [b for b in backend_rows(records) if b["status"] == 200]
    charged = float(sum(b["estimate_charged"] for b in brows))
    used = float(sum(b["total_tokens"] for b in brows))
    drain_block = {"requests": len(brows), "charged": charged, "used": used, "charged_per_used": charged / used}

    def lockout_block(rows: list[dict[str, Any]]) -> dict[str, Any]:
        refused = [b for b in rows if b["decision"] == "rate_limited_requests"]
        free = [b for b in refused if b["remaining_tokens"] >= max(1, b.get("estimate", 1))]
        return {
            "request_limit_429s": len(refused),
            "with_tokens_free": len(free),
            "share_with_tokens_free": len(free) / len(refused),
            "mean_tokens_free": sum(b["remaining_tokens"] for b in free) / len(free),
            "admitted": sum(1 for b in rows if b["decision"] == "ok"),
        }

    all_brows = backend_rows(records)
    lockout = {
        **lockout_block(all_brows),
        "by_deployment": {
            f"{name}/gpt-4o": lockout_block([b for b in all_brows if b["backend"] == name])
            for name in sorted({b["backend"] for b in all_brows})
        },
    }

    gw = [g for g in gateway_rows(records) if g["kind"] == "request" and g["status"] == 200]
    charge = []
    for app in sorted({g["app_id"] for g in gw}):
        g_rows = [g for g in gw if g["app_id"] == app]
        ids = {g["gateway_request_id"] for g in g_rows}
        b_rows = [b for b in brows if b["gateway_request_id"] in ids]
        g_total = float(sum(g["total_tokens"] for g in g_rows))
        b_total = float(sum(b["total_tokens"] for b in b_rows))
        charge.append(
            {
                "app_id": app,
                "model": "gpt-4o",
                "gateway_prompt_tokens": float(sum(g["prompt_tokens"] for g in g_rows)),
                "gateway_completion_tokens": float(sum(g["completion_tokens"] for g in g_rows)),
                "gateway_total_tokens": g_total,
                "backend_prompt_tokens": float(sum(b["prompt_tokens"] for b in b_rows)),
                "backend_completion_tokens": float(sum(b["completion_tokens"] for b in b_rows)),
                "backend_total_tokens": b_total,
                "error": g_total - b_total,
                "error_pct": (g_total - b_total) / b_total * 100,
            }
        )

    return {
        "run": {
            "run_id": "synthetic",
            "scenario": "synthetic",
            "description": "",
            "overrides": ["run.seed=3"],
            "engine": "live",
            "client_profiles": ["openai-python", "openai-python-legacy"],
            "time_scale": 10,
            "duration_s": end,
            "planned_duration_s": 300.0,
            "ended_by": None,
            "never_ended": False,  # run.json does not say the run started without an end
            "cut_short_s": 60.0,  # run.json says it ran 240 of 300 s
            "offered_load": RUN_INFO["offered_load"],  # as run.json states it
            "appid_on_trust": True,  # counted per appid, no jwt validation
            # 3 losses (replica 1 twice); fallbacks: each replica's last count, 40 + 20
            "shared_state_lost": {
                "losses": 3,
                "replicas": ["0", "1"],
                "fallbacks": 60,
                # replica 0 lost Redis at T0 + 30 for good (its "ended" row restores nothing), replica 1 within it
                "lost_s": end - (T0 + 30 - start),
                "by_app": while_redis_lost(ok, T0 + 30, start + end, 20000.0),
            },
            "shared_state_lost_s": end - (T0 + 30 - start),
            "gateway": {"replicas": 1, "shared_state": "none", "tokens_per_minute": 20000, "counter_key": "appid"},
            "question": SCENARIO["question"]["ask"],
        },
        "requests": {
            "attempts": n,
            "logical": finished,
            "unfinished": unfinished,
            # the gateway log has a row per attempt that reached it, each with its record's client id
            "in_flight_when_stopped": len(
                {g["client_request_id"] for g in gateway_rows(records) if g["kind"] == "request"}
                - {r["request_id"] for r in records}
            ),
            "succeeded": len(succeeded),
            "failed": finished - len(succeeded),
            "client_failure_rate": 1 - len(succeeded) / finished,
            "attempt_outcomes": {
                o: counts[o]
                for o in (
                    "success",
                    "gateway_token_limit",
                    "gateway_quota",
                    "backend_429",
                    "breaker_open",
                    "other_error",
                )
            },
            "rate_429": (counts["gateway_token_limit"] + counts["backend_429"]) / n,
            "rate_429_gateway": counts["gateway_token_limit"] / n,
            "rate_429_backend": counts["backend_429"] / n,
            "rate_503_breaker": counts["breaker_open"] / n,
            "rate_403_quota": sum(1 for r in records if r["error_kind"] == "gateway_quota") / n,
        },
        "throughput": {"goodput_tokens": tokens, "goodput_tpm": tokens / (end / 60), "successes_per_s": len(ok) / end},
        "retries": {
            "amplification": n / len(by_logical),
            "per_request": (n - len(by_logical)) / len(by_logical),
            "max_attempts": max(len(v) for v in by_logical.values()),
            "retried_share": sum(1 for v in by_logical.values() if len(v) > 1) / len(by_logical),
            "wait_s_total": total_wait,
            "wait_s_per_request": total_wait / len(by_logical),
            "wait_s_by_source": dict(waits),
        },
        "retry_after": retry_after,
        "latency": latency_block("latency_s"),
        # time to first token of streamed requests only
        "ttft": {
            "stream": latency_block("ttft_s")["stream"],
            "by_max_tokens": {
                b: pcts([r["ttft_s"] for r in ok if r["stream"] and bucket_of(r["max_tokens"]) == b])
                for b in ("<=256", "257-1024", "1025-4096", ">4096", "unset")
            },
        },
        "end_to_end_latency": pcts(e2e),
        # aoai-west is PTU, but its log rows carry no utilization: nothing to measure
        "backends": {
            name: {**figures, "ptu_utilization": None}
            for name, figures in per_key("backend", {"aoai-east": 30000.0, "aoai-west": 10000.0}).items()
        },
        "apps": per_key("app_id", dict.fromkeys(APPS, 20000.0)),
        "by_app": expected_split(records, "app_id", end / 60),
        "by_client_profile": expected_split(records, "client_profile", end / 60),
        "by_backend": expected_split(records, "backend", end / 60),
        "by_replica": expected_split(records, "replica", end / 60),
        "breaker": breaker,
        "drain": {**drain_block, "by_deployment": {"gpt-4o": drain_block}},
        "lockout": lockout,
        "chargeback": charge,
        "cost": None,  # the scenario sets no prices (tests/test_report_cost.py has a priced run)
    }


def assert_matches(actual: Any, expected: Any, path: str = "summary") -> None:
    """Every expected number is in `actual` at the same place, equal within float rounding."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), path
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_matches(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-6), path
    else:
        assert actual == expected, path


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    run_dir = tmp_path_factory.mktemp("run")
    records = write_synthetic_run(run_dir)
    write_report(run_dir)
    return json.loads((run_dir / "summary.json").read_text()), records, run_dir


def test_every_summary_number_matches_an_independent_computation(reported: Any) -> None:
    summary, records, _ = reported
    assert_matches(summary, expected_summary(records))


def test_summary_has_no_number_the_check_does_not_cover(reported: Any) -> None:
    # Guards the test above: a new headline number must come with its independent computation.
    summary, records, _ = reported
    expected = expected_summary(records)
    extra = set(summary) - set(expected) - {"figures", "verdict"}  # the verdict's sentences are tested below
    assert not extra
    for section in ("requests", "throughput", "retries"):
        assert set(summary[section]) == set(expected[section]), section
    assert set(summary["run"]) == set(expected["run"]) | {"missing"}


def test_synthetic_run_exercises_every_outcome_and_reaction(reported: Any) -> None:
    # The comparison above is only worth something if no category is empty.
    summary, _, _ = reported
    assert all(count > 0 for count in summary["requests"]["attempt_outcomes"].values())
    assert summary["requests"]["unfinished"] > 0
    did = {r for s in summary["retry_after"].values() for r, c in s["client_did"].items() if c}
    assert did == {"waited_retry_after", "own_backoff", "gave_up"}
    assert all(v["count"] > 0 for v in summary["latency"]["by_max_tokens"].values())
    app_c = next(r for r in summary["chargeback"] if r["app_id"] == "app-c")
    assert app_c["error"] < 0  # its streamed completions were not counted by the gateway
    assert summary["run"]["missing"] == []
    lockout = summary["lockout"]
    assert 0 < lockout["with_tokens_free"] < lockout["request_limit_429s"]


def test_report_shows_request_limit_429s_while_tokens_were_free(reported: Any) -> None:
    summary, _, run_dir = reported
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    free = summary["lockout"]["with_tokens_free"]
    assert f"<td>backend request-limit 429s while tokens were free</td><td>{free}</td>" in page
    assert "Request-window lockout" in page
    assert f"{free} of {summary['lockout']['request_limit_429s']} request-limit 429s" in page


def test_report_request_table_shows_the_unfinished_requests(reported: Any) -> None:
    summary, _, run_dir = reported
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    unfinished = summary["requests"]["unfinished"]
    assert f"<td>unfinished at the end (waiting to retry; not in the rates)</td><td>{unfinished}</td>" in page


def test_the_report_opens_with_the_question_and_each_apps_throttled_share(reported: Any) -> None:
    summary, records, run_dir = reported
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<b>Question:</b> Which app gets throttled, and by whom?" in page
    by_app, overall = summary["verdict"]  # the scenario's findings, in its order
    assert by_app in page.replace("&#x27;", "'") and overall in page.replace("&#x27;", "'")
    throttled = ("gateway_token_limit", "gateway_quota", "backend_429", "breaker_open")
    for app in APPS:
        mine = [r for r in records if r["app_id"] == app]
        share = sum(1 for r in mine if outcome_of(r) in throttled) / len(mine)
        assert f"pp {app} was throttled on {share * 100:.1f} % of its {len(mine)} attempts" in by_app
    ok = sum(1 for r in records if outcome_of(r) == "success")
    assert overall.startswith(f"Of {len(records)} attempts, {ok / len(records) * 100:.1f} % succeeded")


def test_the_page_says_what_ran_and_that_it_was_cut_short(reported: Any) -> None:
    summary, _, run_dir = reported
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "scenario <b>synthetic</b>" in page
    assert "<code>run.seed=3</code>" in page
    assert "load ran 240 scenario s of 300 planned" in page
    assert "<b>Cut short:</b> 60 scenario s of the planned load did not run" in page
    assert "taken on trust" in page
    lost = summary["run"]["shared_state_lost"]
    assert (
        "<b>Shared state lost:</b> Redis stopped answering 3 time(s) (replica(s) 0, 1) for "
        f"{lost['lost_s']:,.0f} s; 60 decisions fell" in page
    )
    app, figures = next(iter(lost["by_app"].items()))
    assert (
        f"the limit was enforced per replica: app {app} got up to {figures['peak_tokens_60s']:,.0f} tokens within "
        f"60 s, {figures['x_limit']:.2f} x the limit" in page
    )


def test_a_run_that_offered_less_load_than_planned_says_so_first(reported: Any) -> None:
    from harness.report.console import format_console_summary

    summary, _, run_dir = reported
    warning = (
        "offered less load than planned: 85.0 % (850 of 1,000 user-s of scenario time; worker 0 500, worker 1 350)"
    )
    page = (run_dir / "report.html").read_text()
    assert page.index(warning.capitalize()) < page.index("Question:") < page.index("Headline numbers")
    console = format_console_summary(summary)
    assert console.index(warning[0].upper() + warning[1:]) < console.index(SCENARIO["question"]["ask"])
