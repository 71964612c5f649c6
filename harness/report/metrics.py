"""Headline numbers of a run, computed with pandas from the records and the two server logs.

Definitions (the report and summary.json use these, and only these):
- outcome of an attempt: `success` (no error kind, status 1-399), `gateway_token_limit` (429),
  `gateway_quota` (403), `backend_429`, `breaker_open` (503) from the record's error kind, else `other_error`;
- a logical request is unfinished when its last attempt's decision is `retry`: the run ended while it waited
  to retry, so it neither succeeded nor failed. `requests.logical` counts the finished ones only; the
  attempt-level numbers (attempts, 429 rates, Retry-After, retries) include the unfinished ones' attempts;
- an attempt in flight when its user stopped (a stage's ramp-down, or the end of the load: Locust stops a
  user mid-request) is counted nowhere: the client never recorded it, and the backends' own counts (`answered`, `rate_429`) leave out the log rows of requests
  no record has (matched on the x-ms-client-request-id they carry; a row without one is kept). The summary
  states how many there were (`requests.in_flight_when_stopped`, from the gateway log, else the backend log; None
  without either);
- a finished logical request succeeded when any of its attempts did; the client-visible failure rate is the
  share of finished logical requests that did not (None when none finished);
- retries per request: attempts per logical request started (unfinished included) minus one;
- end-to-end latency: per succeeded logical request, first attempt's start to last attempt's end;
- start and duration: when the load started and how long it ran, in scenario seconds, as run.json records
  them (`load_started_at`, `scenario_seconds`); a run directory without them (older runs, hand-made ones)
  falls back to the first attempt's start and the last attempt's end. Every time axis counts from the start;
- goodput: usage total tokens of successful attempts per scenario minute of the duration;
- peak TPM (`peak_tpm`): the most usage tokens of successful attempts that started within any 60 s;
- TTFT: over successful streamed attempts only (a non-streamed answer has no first token before its last);
- verdict: the report's opening sentences, one per finding the scenario's `question.answered_by` names
  (`harness.report.verdict`), or the `outcomes` finding alone for a scenario without a question;
- run facts (`run`): `appid_on_trust` is true when the gateway counted or labelled callers by their token's
  `appid` claim without validating the token (no `gateway.auth.jwt`); `planned_duration_s` is the load the scenario planned (`run.duration`, or the end of
  stages that do not repeat); `cut_short_s` the planned scenario seconds that did not run, as run.json states
  it (`scenario_time_missing_s`, with `ended_by`) or else planned minus duration when that exceeds 1 s;
  `never_ended` is true when run.json says the run started but has no end (the process was killed before it
  could write one): the report then opens by saying the run was cut short;
  `gateway` the replicas, whether they share state, and the token limit per minute and its counter key;
  `shared_state_lost` (None when Redis never failed) counts the times a replica lost the Redis its shared state
  lives on, the replicas that did, and the decisions they made on their own counters meanwhile; its `lost_s`
  is the scenario seconds at least one replica was on its own (from its `lost` row to its `restored` one, or
  the end), and `by_app` each app's most tokens within 60 s ending at an attempt that started then, against
  the gateway's tokens-per-minute (`x_limit`); `shared_state_lost_s` is that `lost_s`, 0 for replicas that
  kept Redis throughout, None without Redis (what `checks: max_shared_state_lost_s` limits);
- splits (`by_app`, `by_client_profile`, `by_backend`, `by_replica`): the same attempt-level figures over each
  value's attempts, whose counts add up to the run's. Apps and client profiles are fixed per logical request,
  so they also get the request-level figures (finished requests, client failure rate, retries per request);
  a request's attempts can reach several backends and gateway replicas, so `by_backend` and `by_replica`
  leave those None. Attempts no backend answered (refused by the gateway, connection errors) are under
  `(none)`, as are attempts of a run with one gateway (no replica stated);
- Retry-After of an attempt: retry-after-ms / 1000 when present, else Retry-After;
- percentiles interpolate linearly between order statistics;
- a backend's `answered` and `rate_429` (`backends.<name>`): requests its own log shows it answered, and the
  share it answered with 429; gateway retries included, so a 429 the gateway retried on another member,
  which the client never saw, counts here (None without a backend log);
- PTU utilization of a backend (`backends.<name>.ptu_utilization`, percent of its PTU capacity, above 100
  in a burst): each PTU deployment's bucket level is rebuilt from the backend log over the duration. It
  starts at the deployment's `ptu_initial_utilization` (0 by default, or without scenario.yaml); at each
  admission decision (the row's `t`: PTU requests never queue) it is the logged `utilization`; when an answered (2xx) request ends (`t + duration_s`) its
  charge is corrected by `total_tokens - estimate_charged` (as a share of the capacity, PTUs x
  ptu_tokens_per_minute, floored at 0; left out without scenario.yaml, which gives the capacity); in
  between it drains at 100 % per scenario minute (the bucket holds one minute of its drain) down to 0.
  A backend's level is its PTU deployments' levels weighted by capacity (alike without scenario.yaml);
  the scenario's PTU deployments that no request reached only drain from where they started. `mean` is the time average of
  that level over the duration, `p95` the level it exceeded during 5 % of the duration. None for a
  backend with no utilization in the log (no PTU deployment, or no backend log);
- request-window lockout (`lockout`, from the backend log; None without one): `request_limit_429s` are the
  backends' 429s with decision `rate_limited_requests`; `with_tokens_free` those among them whose token
  window had room for the request (logged `remaining_tokens` >= the request's `estimate`; > 0 in a log
  without estimates): the request window alone refused them, e.g. because rejected requests count toward
  it (`count_rejected_requests`) and clients retried faster than it frees. `mean_tokens_free` is their
  mean `remaining_tokens`, `admitted` the requests the same deployments admitted; per deployment in
  `by_deployment` ("backend/deployment");
- cost (`cost`, in the scenario's `cost.currency`; None when no backend has a `cost`): per backend, `ptu`
  = PTUs of its PTU deployments x `ptu_per_hour` x the duration in hours (prepaid: used or not); `payg` =
  usage prompt tokens / 1000 x `prompt_per_1k` + usage completion tokens / 1000 x `completion_per_1k` over
  the successful attempts it served from its standard deployments (records: backend, deployment, usage;
  an attempt without usage adds nothing); `total` = ptu + payg. A backend without `cost` has None figures
  and adds nothing to the run's `total`; `per_1m_tokens` = total / goodput tokens x 1,000,000.

    >>> summary = summarize(load_run("reports/runs/quickstart"))  # doctest: +SKIP
    >>> summary["requests"]["client_failure_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.records import (
    ENDED,
    ENDED_BY,
    LOAD_STARTED_AT,
    OFFERED_LOAD,
    SCENARIO_SECONDS,
    SHARED_STATE_LOST,
    SHARED_STATE_RESTORED,
    TIME_MISSING,
)
from harness.records.outcomes import (
    OTHER_ERROR,
    OUTCOMES,
    SUCCESS,
    THROTTLING_KINDS,
    BackendDecision,
    Decision,
)
from harness.report.cost import ptu_utilization, run_cost
from harness.report.load import RunData, finite_or_none
from harness.report.verdict import verdict
from harness.scenario import Scenario

THROTTLED = THROTTLING_KINDS
REACTIONS = ("waited_retry_after", "own_backoff", "retried_at_once", "gave_up")
MAX_TOKENS_EDGES = (0, 256, 1024, 4096, math.inf)
MAX_TOKENS_LABELS = ("<=256", "257-1024", "1025-4096", ">4096")
PERCENTILES = (50, 95, 99)
TPM_WINDOW_S = 60.0  # the window of every per-minute limit: AOAI's TPM and the gateway's token limit
SPLITS = {"by_app": "app_id", "by_client_profile": "client_profile", "by_backend": "backend", "by_replica": "replica"}
NO_BACKEND = "(none)"  # by_backend's key for attempts no backend answered; by_replica's for no replica stated
_NICE_BINS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def run_window(run: RunData) -> tuple[float, float]:
    """(start, duration): the scenario time (epoch s) the load started and its length in scenario seconds."""
    records = run.records
    first = float(records["t_scenario"].min())
    started = finite_or_none(_number(run.run_info.get(LOAD_STARTED_AT)))
    length = finite_or_none(_number(run.run_info.get(SCENARIO_SECONDS)))
    start = first if started is None else min(started, first)
    if length is None or length <= 0:
        length = float((records["t_scenario"] + records["latency_s"].fillna(0.0)).max()) - start
    return start, length


def _number(value: Any) -> float | None:
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


def percentiles(values: pd.Series) -> dict[str, Any]:
    """count and p50/p95/p99 of the non-null values (None when there are none)."""
    values = values.dropna()
    out: dict[str, Any] = {"count": len(values)}
    for p in PERCENTILES:
        out[f"p{p}"] = finite_or_none(values.quantile(p / 100)) if len(values) else None
    return out


def max_tokens_bucket(max_tokens: pd.Series) -> pd.Series:
    """Bucket label of each max_tokens value; `unset` when the request sent none."""
    buckets = pd.cut(max_tokens, bins=list(MAX_TOKENS_EDGES), labels=list(MAX_TOKENS_LABELS), right=True)
    return buckets.cat.add_categories(["unset"]).fillna("unset")


def nice_bin(span_s: float, target_bins: int = 120) -> float:
    """A round bin width (s) giving about `target_bins` bins over the span."""
    for width in _NICE_BINS:
        if span_s / width <= target_bins:
            return float(width)
    return float(_NICE_BINS[-1])


def outcome_timeline(records: pd.DataFrame, bin_s: float) -> pd.DataFrame:
    """Attempts per second by outcome in time bins: index = bin start (s since start), columns = outcomes."""
    bins = (records["t"] // bin_s) * bin_s
    counts = pd.crosstab(bins, records["outcome"], dropna=False).reindex(columns=list(OUTCOMES), fill_value=0)
    return counts / bin_s


def rolling_tokens(records: pd.DataFrame, key: str, until: float, step_s: float) -> pd.DataFrame:
    """Usage tokens of successful attempts that started in the trailing 60 s, sampled every `step_s` from 0 to
    `until` (what a per-minute token limit compares): index = sample time (s), one column per `key` value."""
    done = successes(records)
    samples = sample_times(until, step_s)
    columns = {
        str(name): trailing_sums(rows["t"], rows["usage_total"], samples)
        for name, rows in done.groupby(key, observed=True, sort=True)
    }
    return pd.DataFrame(columns, index=pd.Index(samples, name="t"))


def sample_times(until: float, step_s: float) -> np.ndarray:
    return np.arange(0.0, until + step_s / 2, step_s)


def trailing_sums(times: pd.Series, values: pd.Series, at: np.ndarray) -> np.ndarray:
    """At each time of `at`, the sum of `values` whose time is in the trailing 60 s (t - 60, t]."""
    order = np.argsort(times.to_numpy(dtype=float), kind="stable")
    starts = times.to_numpy(dtype=float)[order]
    cumulative = np.concatenate([[0.0], np.cumsum(values.fillna(0.0).to_numpy(dtype=float)[order])])
    upper = np.searchsorted(starts, at, side="right")
    lower = np.searchsorted(starts, at - TPM_WINDOW_S, side="right")
    return cumulative[upper] - cumulative[lower]


def peak_window_tokens(rows: pd.DataFrame) -> float | None:
    """The most usage tokens of `rows` (successful attempts) that started within any 60 s (None without rows)."""
    if rows.empty:
        return None
    # the trailing-window sum only rises at an attempt's start, so its maximum is at one of them
    return float(trailing_sums(rows["t"], rows["usage_total"], rows["t"].to_numpy(dtype=float)).max())


def open_intervals(breakers: pd.DataFrame | None, start: float, end_s: float) -> list[tuple[str, float, float]]:
    """(backend, opened, closed) in seconds since start from the breaker transitions of the gateway log.

    A breaker that closes lazily (on the next request after its trip) is drawn closed at its `until`.
    """
    if breakers is None or breakers.empty:
        return []
    intervals: list[tuple[str, float, float]] = []
    opened: dict[str, tuple[float, float]] = {}
    # Transitions are few (one per trip and one per close), so a plain loop is fine here.
    for backend, t, to, until in zip(
        breakers["backend"], breakers["t"], breakers["to"], breakers["until"], strict=True
    ):
        t_rel = float(t) - start
        until_rel = float(until) - start if pd.notna(until) else math.inf
        if to == "open":
            if backend in opened:  # re-tripped without a logged close: the earlier trip ended by its until
                since, limit = opened[backend]
                intervals.append((backend, since, min(t_rel, limit)))
            opened[backend] = (t_rel, until_rel)
        elif to == "closed" and backend in opened:
            since, limit = opened.pop(backend)
            intervals.append((backend, since, min(t_rel, limit)))
    for backend, (since, limit) in opened.items():
        intervals.append((backend, since, min(end_s, limit)))
    return intervals


def summarize(run: RunData) -> dict[str, Any]:
    """Every headline number of a run, JSON-ready (missing values are None)."""
    records = annotate(run)
    start, span = run_window(run)
    minutes = span / 60.0 if span > 0 else math.nan
    goodput_tokens = float(successes(records)["usage_total"].sum())
    backends = _per_key(records, "backend", minutes, backend_limits(run))
    utilization = ptu_utilization(run.backend, run.scenario, start, span)
    answered = backend_answers(recorded_rows(run.backend, records))
    for name, figures in backends.items():
        figures["ptu_utilization"] = utilization.get(name)
        figures.update(answered.get(name, {"answered": None, "rate_429": None}))
    streamed = records[records["stream"].fillna(False).astype(bool)]
    summary: dict[str, Any] = {
        "run": _run_facts(run, records, span),
        "requests": {**_requests(records), "in_flight_when_stopped": in_flight_when_stopped(run, records)},
        "throughput": {
            "goodput_tokens": finite_or_none(goodput_tokens),
            "goodput_tpm": finite_or_none(goodput_tokens / minutes),
            "successes_per_s": finite_or_none((records["outcome"] == SUCCESS).sum() / span if span > 0 else None),
        },
        "retries": _retries(records),
        "retry_after": _retry_after(records),
        "latency": _latency(records, "latency_s"),
        "ttft": _ttft(streamed),
        "end_to_end_latency": percentiles(end_to_end(records)),
        "backends": backends,
        "apps": _per_key(records, "app_id", minutes, app_limits(run, records)),
        **{split: _split(records, key, minutes) for split, key in SPLITS.items()},
        "breaker": _breaker(run, span),
        "drain": _drain(run.backend),
        "lockout": lockout(run.backend),
        "chargeback": chargeback(run.gateway, run.backend),
        "cost": run_cost(run.scenario, successes(records), span, goodput_tokens),
    }
    question = run.scenario.question if run.scenario is not None else None
    summary["run"]["question"] = question.ask if question is not None else None
    summary["verdict"] = verdict(summary, question, run.scenario, run.scenario_data)
    return summary


def backend_answers(backend: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Per backend, from its own log: requests it answered and the share it answered with 429.

    This counts what reached the backend, gateway retries included: a 429 the gateway retried on another
    member never reaches the client's records, but it is here.
    """
    if backend is None or backend.empty:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, rows in backend.groupby("backend", observed=True):
        out[str(name)] = {"answered": len(rows), "rate_429": float((rows["status"] == 429).mean())}
    return out


def recorded_rows(log: pd.DataFrame | None, records: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of a server log whose request the client recorded: a request still in flight when its user
    stopped has no record and is left out here as it is of every other count (rows without a client id kept)."""
    if log is None or "client_request_id" not in log or "request_id" not in records:
        return log
    ids = log["client_request_id"]
    return log[ids.isna() | ids.isin(records["request_id"])]


def in_flight_when_stopped(run: RunData, records: pd.DataFrame) -> int | None:
    """Requests a server log saw that the client never recorded: in flight when their user stopped."""
    log = run.gateway[run.gateway["kind"] == "request"] if run.gateway is not None else run.backend
    if log is None or "client_request_id" not in log or "request_id" not in records:
        return None
    ids = log["client_request_id"].dropna()
    return int(ids[~ids.isin(records["request_id"])].nunique())


def successes(records: pd.DataFrame) -> pd.DataFrame:
    return records[records["outcome"] == SUCCESS]


def _run_facts(run: RunData, records: pd.DataFrame, span: float) -> dict[str, Any]:
    info = run.run_info
    profiles = sorted(str(p) for p in run.records["client_profile"].dropna().unique())
    engine = info.get("engine", "live")
    scale = info.get("time_scale")
    if scale is None and run.scenario is not None and engine == "live":
        scale = run.scenario.run.time_scale
    planned = run.scenario.load_duration() if run.scenario is not None else None
    scenario_file = info.get("scenario")
    lost = _shared_state_lost(run, records, span)
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
    }


def _gateway_facts(scenario: Scenario | None) -> dict[str, Any] | None:
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


def _shared_state_lost(run: RunData, records: pd.DataFrame, span: float) -> dict[str, Any] | None:
    """How often replicas lost Redis, which ones, for how long, the decisions they made on their own meanwhile,
    and what each app got through while they did (None when Redis never failed)."""
    rows = run.shared_state
    if rows is None or rows.empty:
        return None
    lost = rows[rows["shared_state"] == SHARED_STATE_LOST]
    fallbacks = rows.groupby(rows["replica"].fillna("").astype(str))["fallbacks"].max()
    intervals = lost_intervals(rows, run_start(run), span)
    limit = _token_limit_tpm(run.scenario_data)
    return {
        "losses": len(lost),
        "replicas": sorted(str(r) for r in lost["replica"].dropna().unique()),
        "fallbacks": int(fallbacks.fillna(0).sum()),
        "lost_s": sum(until - since for since, until in intervals),
        "by_app": _while_lost(records, intervals, limit),
    }


def _shared_state_lost_s(run: RunData, lost: dict[str, Any] | None) -> float | None:
    """Scenario seconds any replica enforced limits on its own counters because Redis was lost: 0 for replicas
    that kept Redis throughout (a `checks:` limit can then hold), None when nothing says (no Redis, no log)."""
    if lost is not None:
        return float(lost["lost_s"])
    scenario = run.scenario
    if scenario is None or scenario.gateway.shared_state != "redis" or run.shared_state is None:
        return None
    return 0.0


def lost_intervals(rows: pd.DataFrame, start: float, span: float) -> list[tuple[float, float]]:
    """(since, until) in seconds since start while at least one replica had lost Redis (its counters its own).

    A replica is on its own from its `lost` row to its next `restored` one, or else to the end of the run.
    """
    alone: list[tuple[float, float]] = []
    since: dict[str, float] = {}
    for replica, t, state in zip(rows["replica"].fillna("").astype(str), rows["t"], rows["shared_state"], strict=True):
        at = min(max(float(t) - start, 0.0), span)
        if state == SHARED_STATE_LOST:
            since.setdefault(replica, at)
        elif state == SHARED_STATE_RESTORED and replica in since:
            alone.append((since.pop(replica), at))
    alone += [(at, span) for at in since.values()]
    merged: list[tuple[float, float]] = []
    for begin, end in sorted(alone):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


def _while_lost(
    records: pd.DataFrame, intervals: list[tuple[float, float]], limit: float | None
) -> dict[str, dict[str, Any]]:
    """Per app, the most tokens within 60 s ending at an attempt admitted while Redis was lost, and that against
    the gateway's tokens-per-minute: how far the app went over while the replicas counted on their own."""
    done = successes(records)
    out: dict[str, dict[str, Any]] = {}
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
    stated = finite_or_none(_number(info.get(TIME_MISSING)))
    if stated is not None:
        return max(stated, 0.0)
    if planned is None or _number(info.get(SCENARIO_SECONDS)) is None:
        return None
    # a run stops within a second of its planned length; more missing than that means it was stopped
    missing = planned - span
    return round(missing, 3) if missing > 1.0 else 0.0


def _requests(records: pd.DataFrame) -> dict[str, Any]:
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
        "rate_429": (outcome_counts["gateway_token_limit"] + outcome_counts["backend_429"]) / attempts,
        "rate_429_gateway": outcome_counts["gateway_token_limit"] / attempts,
        "rate_429_backend": outcome_counts["backend_429"] / attempts,
        "rate_503_breaker": outcome_counts["breaker_open"] / attempts,
        "rate_403_quota": outcome_counts["gateway_quota"] / attempts,
    }


def attempts_per_request(records: pd.DataFrame) -> pd.Series:
    return records.groupby("logical_id", sort=False).size()


def _retries(records: pd.DataFrame) -> dict[str, Any]:
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


def reactions(records: pd.DataFrame) -> pd.Series:
    """What the client did after each throttled attempt (see REACTIONS); other attempts get None."""
    decision = records["decision"]
    source = records["retry_wait_source"]
    retried = decision == Decision.RETRY
    reaction = np.select(
        [
            retried & source.isin(["retry-after-ms", "retry-after"]),
            retried & (source == "backoff"),
            retried,
            decision.isin([Decision.GIVE_UP, Decision.FAIL]),
        ],
        list(REACTIONS),
        default="",
    )
    return pd.Series(reaction, index=records.index).replace("", None).where(records["outcome"].isin(THROTTLED))


def _retry_after(records: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
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


def _latency(records: pd.DataFrame, column: str) -> dict[str, Any]:
    done = successes(records)
    values = done[column]
    stream = done["stream"].fillna(False).astype(bool)
    return {
        "all": percentiles(values),
        "stream": percentiles(values[stream]),
        "non_stream": percentiles(values[~stream]),
        "by_max_tokens": _by_max_tokens(done, values),
    }


def _ttft(streamed: pd.DataFrame) -> dict[str, Any]:
    """Time to first token of successful streamed attempts, all and by max_tokens bucket."""
    done = successes(streamed)
    return {"stream": percentiles(done["ttft_s"]), "by_max_tokens": _by_max_tokens(done, done["ttft_s"])}


def _by_max_tokens(done: pd.DataFrame, values: pd.Series) -> dict[str, Any]:
    buckets = max_tokens_bucket(done["max_tokens"])
    return {label: percentiles(values[buckets == label]) for label in (*MAX_TOKENS_LABELS, "unset")}


def end_to_end(records: pd.DataFrame) -> pd.Series:
    """Per succeeded logical request: first attempt's start to last attempt's end (retries and waits included)."""
    groups = records.groupby("logical_id", sort=False)
    ok = (records["outcome"] == SUCCESS).groupby(records["logical_id"], sort=False).any()
    span = groups["end"].max() - groups["t"].min()
    return span[ok]


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
    limit = _token_limit_tpm(run.scenario_data)
    if limit is None:
        return {}
    return {str(app): limit for app in records["app_id"].dropna().unique()}


def _token_limit_tpm(scenario_data: dict[str, Any]) -> float | None:
    gateway = scenario_data.get("gateway")
    token_limit = gateway.get("token_limit") if isinstance(gateway, dict) else None
    if not isinstance(token_limit, dict):
        return None
    value = token_limit.get("tokens-per-minute", token_limit.get("tokens_per_minute"))
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _per_key(records: pd.DataFrame, key: str, minutes: float, limits: dict[str, float]) -> dict[str, Any]:
    done = successes(records)
    tokens = done.groupby(done[key], observed=True)["usage_total"].sum()
    served = done.groupby(done[key], observed=True).size()
    total_tokens = float(tokens.sum())
    peaks = {str(name): peak_window_tokens(rows) for name, rows in done.groupby(key, observed=True)}
    out: dict[str, Any] = {}
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


def missing_label(key: str) -> str:
    """A split's name for attempts without a value: no backend or replica answered, or not recorded."""
    return NO_BACKEND if key in ("backend", "replica") else "(unknown)"


def _split(records: pd.DataFrame, key: str, minutes: float) -> dict[str, Any]:
    """The attempt-level figures per value of `key`; request-level ones where a request has one value."""
    per_request = key not in ("backend", "replica")
    keys = records[key].astype(object).where(records[key].notna(), missing_label(key))
    out: dict[str, Any] = {}
    for name, rows in records.groupby(keys, sort=True):
        requests = _requests(rows)
        done = successes(rows)
        goodput = float(done["usage_total"].sum())
        reaction = reactions(rows).value_counts()
        throttled = sum(requests["attempt_outcomes"][o] for o in THROTTLED)
        out[str(name)] = {
            "attempts": requests["attempts"],
            "attempt_outcomes": requests["attempt_outcomes"],
            "rate_throttled": throttled / requests["attempts"],
            **{k: v for k, v in requests.items() if k.startswith("rate_")},
            "logical": requests["logical"] if per_request else None,
            "client_failure_rate": requests["client_failure_rate"] if per_request else None,
            "retries_per_request": len(rows) / rows["logical_id"].nunique() - 1 if per_request else None,
            "client_did": {r: int(reaction.get(r, 0)) for r in REACTIONS},
            "goodput_tokens": goodput,
            "goodput_tpm": finite_or_none(goodput / minutes),
            "latency_p95": percentiles(done["latency_s"])["p95"],
            "tokens": {kind: float(done[f"usage_{kind}"].sum()) for kind in ("prompt", "completion", "total")},
        }
    return out


def _breaker(run: RunData, span: float) -> dict[str, Any] | None:
    if run.breakers is None:
        return None
    start = run_start(run)
    trips = run.breakers[run.breakers["to"] == "open"].groupby("backend").size()
    open_s: dict[str, float] = {}
    for backend, since, until in open_intervals(run.breakers, start, span):
        open_s[backend] = open_s.get(backend, 0.0) + (until - since)
    names = sorted(set(trips.index) | set(open_s))
    return {n: {"trips": int(trips.get(n, 0)), "open_s": open_s.get(n, 0.0)} for n in names}


def ok_backend_rows(backend: pd.DataFrame) -> pd.DataFrame:
    return backend[(backend["status"] >= 200) & (backend["status"] < 300)]


def _drain(backend: pd.DataFrame | None) -> dict[str, Any] | None:
    """Tokens charged at admission (estimate) vs tokens used, over requests the backends answered 2xx."""
    if backend is None:
        return None
    ok = ok_backend_rows(backend)

    def figures(rows: pd.DataFrame) -> dict[str, Any]:
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


def lockout(backend: pd.DataFrame | None) -> dict[str, Any] | None:
    """Request-limit 429s and those among them that came while the token window had room for the request."""
    if backend is None:
        return None
    decision = backend["decision"]
    by_requests = decision == "rate_limited_requests"
    estimate = backend["estimate"].fillna(1.0).clip(lower=1.0) if "estimate" in backend else 1.0
    frame = pd.DataFrame(
        {
            "key": backend["backend"].astype(str) + "/" + backend["deployment"].astype(str),
            "refused": by_requests,
            "free": by_requests & (backend["remaining_tokens"] >= estimate),
            "admitted": decision.isin([BackendDecision.OK, BackendDecision.QUEUED_THEN_OK]),
            "remaining": backend["remaining_tokens"],
        }
    )

    def figures(rows: pd.DataFrame) -> dict[str, Any]:
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


def chargeback(gateway: pd.DataFrame | None, backend: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """Tokens per app and model as the gateway counted them vs the backends' usage, joined on request ids.

    Rows are sorted by app then model; `error` = gateway - backend total tokens, `error_pct` relative to backend.
    """
    if gateway is None or backend is None:
        return None
    kinds = ("prompt_tokens", "completion_tokens", "total_tokens")
    gw = gateway[(gateway["status"] >= 200) & (gateway["status"] < 300)]
    gw_tokens = gw.groupby(["app_id", "model"])[list(kinds)].sum()
    be = ok_backend_rows(backend)
    be = be.merge(gw[["gateway_request_id", "app_id"]], on="gateway_request_id", how="inner")
    be_tokens = be.groupby(["app_id", "model"])[list(kinds)].sum()
    table = gw_tokens.merge(
        be_tokens, left_index=True, right_index=True, how="outer", suffixes=("_gateway", "_backend")
    ).fillna(0.0)
    rows = []
    for (app, model), row in table.sort_index().iterrows():
        gateway_total, backend_total = row["total_tokens_gateway"], row["total_tokens_backend"]
        rows.append(
            {
                "app_id": app,
                "model": model,
                **{f"gateway_{k}": float(row[f"{k}_gateway"]) for k in kinds},
                **{f"backend_{k}": float(row[f"{k}_backend"]) for k in kinds},
                "error": float(gateway_total - backend_total),
                "error_pct": float((gateway_total - backend_total) / backend_total * 100) if backend_total else None,
            }
        )
    return rows
