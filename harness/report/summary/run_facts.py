"""The `run` section: what ran (scenario, engine, profiles, gateway), for how long against its plan, and
how long gateway replicas counted on their own after losing the Redis their shared state lives on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.records import ENDED, ENDED_BY, OFFERED_LOAD, SCENARIO_SECONDS, SHARED_STATE_LOST, TIME_MISSING
from harness.report.load import RunData, finite_or_none
from harness.report.summary.frame import number, run_start, successes, token_limit_tpm
from harness.report.summary.schema import AppWhileLost, GatewayFacts, RunFacts, SharedStateLost
from harness.report.summary.windows import lost_intervals, trailing_sums
from harness.scenario import Scenario


def run_facts(run: RunData, records: pd.DataFrame, span: float) -> RunFacts:
    info = run.run_info
    profiles = sorted(str(p) for p in run.records["client_profile"].dropna().unique())
    engine = info.get("engine", "live")
    scale = info.get("time_scale")
    if scale is None and run.scenario is not None and engine == "live":
        scale = run.scenario.run.time_scale
    planned = run.scenario.load_duration() if run.scenario is not None else None
    scenario_file = info.get("scenario")
    lost = shared_state_lost(run, records, span)
    question = run.scenario.question if run.scenario is not None else None
    return {
        "run_id": run.name,
        "scenario": Path(scenario_file).stem if isinstance(scenario_file, str) and scenario_file else None,
        "description": run.scenario.description if run.scenario is not None else None,
        "overrides": [str(o) for o in info.get("overrides") or []],
        "engine": engine,  # live (Locust against servers) or sim (the discrete-event simulator)
        "client_profiles": profiles,
        "time_scale": scale,  # None for a simulated run: no wall clock involved
        "duration_s": finite_or_none(span),
        "planned_duration_s": planned,
        "ended_by": info.get(ENDED_BY),
        "never_ended": ENDED in info and info[ENDED] is None,
        "cut_short_s": _cut_short(info, planned, span),
        # the load offered against the schedule, in user-seconds, per process (a live run's run.json)
        "offered_load": info.get(OFFERED_LOAD) if isinstance(info.get(OFFERED_LOAD), dict) else None,
        "appid_on_trust": _appid_on_trust(run.scenario),
        "shared_state_lost": lost,
        "shared_state_lost_s": _shared_state_lost_s(run, lost),
        "gateway": _gateway_facts(run.scenario),
        "missing": list(run.missing),
        "question": question.ask if question is not None else None,
    }


def _appid_on_trust(scenario: Scenario | None) -> bool | None:
    """Whether the gateway counted or labelled callers by a token's appid without validating the token."""
    if scenario is None:
        return None
    gateway = scenario.gateway
    by_appid = (gateway.token_limit is not None and gateway.token_limit.counter_key == "appid") or (
        "app_id" in gateway.metrics.dimensions
    )
    return by_appid and gateway.auth.jwt is None


def _cut_short(info: dict[str, Any], planned: float | None, span: float) -> float | None:
    """Scenario seconds of load the run did not get to (0 when it ran its course; None when unknown)."""
    stated = finite_or_none(number(info.get(TIME_MISSING)))
    if stated is not None:
        return max(stated, 0.0)
    if planned is None or number(info.get(SCENARIO_SECONDS)) is None:
        return None
    # a run stops within a second of its planned length; more missing than that means it was stopped
    missing = planned - span
    return round(missing, 3) if missing > 1.0 else 0.0


def _gateway_facts(scenario: Scenario | None) -> GatewayFacts | None:
    """The gateway settings a finding names: replicas, whether they share state, the token limit."""
    if scenario is None:
        return None
    gateway = scenario.gateway
    limit = gateway.token_limit
    return {
        "replicas": gateway.replicas,
        "shared_state": gateway.shared_state,
        "tokens_per_minute": limit.tokens_per_minute if limit is not None else None,
        "counter_key": limit.counter_key if limit is not None else None,
    }


def shared_state_lost(run: RunData, records: pd.DataFrame, span: float) -> SharedStateLost | None:
    """How often replicas lost Redis, which ones, for how long, the decisions they made on their own meanwhile,
    and what each app got through while they did (None when Redis never failed)."""
    rows = run.shared_state
    if rows is None or rows.empty:
        return None
    lost = rows[rows["shared_state"] == SHARED_STATE_LOST]
    fallbacks = rows.groupby(rows["replica"].fillna("").astype(str))["fallbacks"].max()
    intervals = lost_intervals(rows, run_start(run), span)
    limit = token_limit_tpm(run.scenario_data)
    return {
        "losses": len(lost),
        "replicas": sorted(str(r) for r in lost["replica"].dropna().unique()),
        "fallbacks": int(fallbacks.fillna(0).sum()),
        "lost_s": sum(until - since for since, until in intervals),
        "by_app": _while_lost(records, intervals, limit),
    }


def _shared_state_lost_s(run: RunData, lost: SharedStateLost | None) -> float | None:
    """Scenario seconds any replica enforced limits on its own counters because Redis was lost: 0 for replicas
    that kept Redis throughout (a `checks:` limit can then hold), None when nothing says (no Redis, no log)."""
    if lost is not None:
        return float(lost["lost_s"])
    scenario = run.scenario
    if scenario is None or scenario.gateway.shared_state != "redis" or run.shared_state is None:
        return None
    return 0.0


def _while_lost(
    records: pd.DataFrame, intervals: list[tuple[float, float]], limit: float | None
) -> dict[str, AppWhileLost]:
    """Per app, the most tokens within 60 s ending at an attempt admitted while Redis was lost, and that against
    the gateway's tokens-per-minute: how far the app went over while the replicas counted on their own."""
    done = successes(records)
    out: dict[str, AppWhileLost] = {}
    for name, rows in done.groupby("app_id", observed=True, sort=True):
        times = rows["t"].to_numpy(dtype=float)
        during = np.zeros(len(times), dtype=bool)
        for since, until in intervals:
            during |= (times >= since) & (times <= until)
        if not during.any():
            continue
        peak = float(trailing_sums(rows["t"], rows["usage_total"], times[during]).max())
        out[str(name)] = {"peak_tokens_60s": peak, "x_limit": peak / limit if limit else None}
    return out
