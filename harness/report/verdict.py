"""The report's opening: a run's answer to its scenario's question, in sentences built from its numbers.

Each finding a scenario can name (`harness.scenario.question.FINDINGS`) is one function here, from the
summary to one sentence. A scenario without a `question:` gets the `outcomes` finding alone.

    >>> summary = {"breaker": {"ptu": {"trips": 2, "open_s": 30.0}}, "run": {"duration_s": 120.0}}
    >>> FINDINGS["breaker"](summary)
    'The breaker tripped 2 times on ptu and kept it out of the pool for 30 s of 120 s (25.0 %).'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.records.outcomes import THROTTLING, ErrorKind
from harness.report.checks import CHECKED_NUMBERS, evaluate_checks
from harness.report.flat import flatten
from harness.report.recommend import metric_value, numbers
from harness.report.summary.schema import SharedStateLost, Split, SummaryBody
from harness.report.units import count, percent
from harness.scenario import Question, Scenario
from harness.scenario.objectives import parse_constraint

# short names of the throttling sources, as a sentence uses them
SOURCES = {kind: look.sentence for kind, look in THROTTLING.items()}


def verdict(
    summary: SummaryBody,
    question: Question | None,
    scenario: Scenario | None = None,
    settings: dict[str, Any] | None = None,
) -> list[str]:
    """The sentences that open the report: first, when the run never wrote its end, that it was cut short;
    the question's findings in order, or the generic headline; then the run against the scenario's own
    limits when it has any (its sweep's constraints, its checks).

    `settings` is the scenario as run (scenario.yaml's content), for the swept settings' values."""
    names = question.answered_by if question is not None else ["outcomes"]
    opening = [NEVER_ENDED] if summary.get("run", {}).get("never_ended") else []
    sentences = opening + [FINDINGS[name](summary) for name in names]
    if scenario is not None:
        against = limits(summary, scenario, settings or {})
        if against is not None:
            sentences.append(against)
    return sentences


NEVER_ENDED = (
    "This run was cut short: its run.json has no end (the load generator stopped before writing it, killed or "
    "crashed), so the figures below cover only the records written until then."
)


def limits(summary: SummaryBody, scenario: Scenario, settings: dict[str, Any]) -> str | None:
    """This run against the limits its own scenario sets: each sweep constraint and each check, held or broken,
    with the run's value of every swept setting (None when the scenario sets no limit).

        >>> from harness.scenario import load_scenario_text
        >>> scenario = load_scenario_text("sweep: {constraints: ['requests.rate_429<=0.01']}")
        >>> limits({"requests": {"rate_429": 0.02}}, scenario, {})
        "Against the scenario's own limits: requests.rate_429 was 2.0 %, beyond the sweep's limit <= 1.0 %."
    """
    flat = numbers(summary)
    parts = []
    for text in scenario.sweep.constraints:
        constraint = parse_constraint(text)
        value = metric_value(summary, flat, constraint.metric)
        limit = f"the sweep's limit {constraint.op} {_metric_text(constraint.metric, constraint.value)}"
        parts.append(_against(constraint.metric, value, constraint.holds(value), limit, constraint.value))
    for check in evaluate_checks(scenario.checks, summary):
        metric = ".".join(CHECKED_NUMBERS[check.name])
        op = "<=" if check.name.startswith("max_") else ">="
        limit = f"check {check.name} {op} {_metric_text(metric, check.limit)}"
        parts.append(_against(metric, check.actual, check.passed, limit, check.limit))
    if not parts:
        return None
    flat_settings = flatten(settings)
    swept = [f"{path}={flat_settings[path]}" for path in scenario.sweep.parameters if path in flat_settings]
    where = f" with {', '.join(swept)}" if swept else ""
    return f"Against the scenario's own limits{where}: " + "; ".join(parts) + "."


def _against(metric: str, value: float | None, held: bool, limit: str, limit_value: float) -> str:
    if value is None:
        return f"{metric} was not measured, so {limit} is not met"
    shown = _metric_text(metric, value)
    if shown == _metric_text(metric, limit_value) and value != limit_value:
        shown = _metric_text(metric, value, digits=2)  # "1.0 %, beyond <= 1.0 %" would read as a contradiction
    return f"{metric} was {shown}, {'within' if held else 'beyond'} {limit}"


def _metric_text(metric: str, value: float, digits: int = 1) -> str:
    """A metric's value as the report writes it: rates and shares (fractions) as percentages."""
    leaf = metric.rsplit(".", 1)[-1]
    if "rate" in leaf or "share" in leaf:
        return percent(value, digits)
    return f"{value:,.{3 + digits}g}"


def outcomes(summary: SummaryBody) -> str:
    req, run = summary["requests"], summary["run"]
    attempts = req["attempts"]
    shares = req["attempt_outcomes"]
    throttled = [f"{percent(shares[s] / attempts)} {label}" for s, label in SOURCES.items() if shares[s]]
    refused = "; ".join(throttled) if throttled else "none were throttled"
    goodput = summary["throughput"]["goodput_tpm"]
    return (
        f"Of {count(attempts)} attempts, {percent(shares['success'] / attempts)} succeeded ({refused}); "
        f"clients saw {count(req['failed'])} of {count(req['logical'])} finished requests fail "
        f"({percent(req['client_failure_rate'])}); goodput {count(goodput)} tokens per scenario minute over "
        f"{count(run['duration_s'])} scenario s."
    )


def by_app(summary: SummaryBody) -> str:
    parts: list[str] = []
    for name, app in summary["by_app"].items():
        sources = _sources(app)
        parts.append(
            f"{'App' if not parts else 'app'} {name} was throttled on {percent(app['rate_throttled'])} of its {count(app['attempts'])} "
            f"attempts{f' ({sources})' if sources else ''} and {percent(app['client_failure_rate'])} of its "
            "requests failed"
        )
    backend_429s = summary["requests"]["attempt_outcomes"][ErrorKind.BACKEND_429]
    tail = "backends never returned 429" if not backend_429s else f"backends returned {count(backend_429s)} 429s"
    return "; ".join(parts) + f"; {tail}."


def by_client_profile(summary: SummaryBody) -> str:
    parts: list[str] = []
    for name, profile in summary["by_client_profile"].items():
        did = profile["client_did"]
        throttled = sum(did.values())
        reaction = (
            f"after its {count(throttled)} throttled attempts it waited out Retry-After {did['waited_retry_after']} "
            f"times, backed off on its own {did['own_backoff']}, retried at once {did['retried_at_once']} and "
            f"gave up {did['gave_up']}"
            if throttled
            else "it was never throttled"
        )
        parts.append(
            f"Client profile {name}: {reaction}; {percent(profile['client_failure_rate'])} of its requests failed, "
            f"{profile['retries_per_request']:.2f} retries per request"
        )
    return ". ".join(parts) + "."


def by_backend(summary: SummaryBody) -> str:
    parts: list[str] = []
    for name, backend in summary["backends"].items():
        answered = backend.get("answered")
        rate = (
            f"answered {percent(backend['rate_429'])} of the {count(answered)} requests that reached it with 429"
            if answered is not None
            else "its own 429s are unknown (no backend log)"
        )
        parts.append(
            f"{'Backend' if not parts else 'backend'} {name} served {percent(backend['token_share'])} "
            f"of the tokens and {rate}"
        )
    return "; ".join(parts) + "." + _in_flight(summary)


def _in_flight(summary: SummaryBody) -> str:
    """Requests in flight when their user stopped are counted nowhere (metrics' definition): say so when any were."""
    in_flight = summary["requests"].get("in_flight_when_stopped")
    if not in_flight:
        return ""
    were = "request was" if in_flight == 1 else "requests were"
    return (
        f" {count(in_flight)} {were} in flight when their user stopped (a ramp-down or the end of the load): "
        "counted nowhere, the backends' own counts included."
    )


def ptu_utilization(summary: SummaryBody) -> str:
    shown = [(n, u) for n, b in summary["backends"].items() if (u := b.get("ptu_utilization"))]
    if not shown:
        return "No PTU utilization was measured (no PTU backend, or no backend log)."
    parts = [f"{name} averaged {u['mean']:.0f} % (p95 {u['p95']:.0f} %)" for name, u in shown]
    return "PTU utilization: " + "; ".join(parts) + "; above 100 % a PTU deployment answers 429."


def breaker(summary: SummaryBody) -> str:
    breakers = summary["breaker"]
    if breakers is None:
        return "Breaker state is unknown: the run has no gateway log."
    tripped = [(n, b) for n, b in breakers.items() if b["trips"]]
    if not tripped:
        return "No breaker tripped."
    span = summary["run"]["duration_s"] or 0.0
    parts = [
        f"{b['trips']} times on {name} and kept it out of the pool for {count(b['open_s'])} s of {count(span)} s "
        f"({percent(b['open_s'] / span if span else None)})"
        for name, b in tripped
    ]
    return "The breaker tripped " + "; ".join(parts) + "."


def drain(summary: SummaryBody) -> str:
    d = summary["drain"]
    if d is None:
        return "The admission charge is unknown: the run has no backend log."
    ratio = d["charged_per_used"]
    backend_429 = summary["requests"]["rate_429_backend"]
    return (
        f"Backends charged {count(d['charged'])} tokens at admission for {count(d['used'])} used"
        f"{f' ({ratio:.1f} times as many)' if ratio is not None else ''}, and answered {percent(backend_429)} "
        "of attempts with 429."
    )


def chargeback(summary: SummaryBody) -> str:
    rows = summary["chargeback"]
    if rows is None:
        return "Chargeback needs both the gateway log and the backend log."
    if not rows:
        return "No request succeeded through the gateway: nothing to charge back."
    parts = [
        f"app {r['app_id']} ({r['model']}) {_signed_percent(r['error_pct'])} ({count(r['gateway_total_tokens'])} "
        f"counted, {count(r['backend_total_tokens'])} used)"
        for r in rows
    ]
    return "Against the backends' usage, the gateway counted " + "; ".join(parts) + "."


def cost(summary: SummaryBody) -> str:
    spent = summary["cost"]
    if spent is None:
        return "No backend has a price (backends[].cost): no cost."
    unit = spent["currency"]
    per_1m = spent["per_1m_tokens"]
    return (
        f"The run cost {spent['total']:.4g} {unit}, "
        f"{f'{per_1m:.4g} {unit}' if per_1m is not None else 'nothing measurable'} per 1M tokens of goodput."
    )


def lockout(summary: SummaryBody) -> str:
    lock = summary["lockout"]
    if lock is None:
        return "Request-window lockout is unknown: the run has no backend log."
    if not lock["request_limit_429s"]:
        return "No backend refused a request on its request window."
    return (
        f"{count(lock['with_tokens_free'])} of {count(lock['request_limit_429s'])} request-limit 429s came while "
        "the token window had room for the request."
    )


def token_limit(summary: SummaryBody) -> str:
    gateway: Mapping[str, Any] = summary["run"].get("gateway") or {}
    limit = gateway.get("tokens_per_minute")
    replicas = gateway.get("replicas") or 1
    lost = summary["run"].get("shared_state_lost")
    if replicas == 1:
        where = "through one gateway"
    elif gateway.get("shared_state") == "none":
        where = f"through {replicas} gateway replicas, each counting on its own"
    elif lost and lost.get("lost_s"):
        # what got through while Redis was away was counted per replica: it is not the shared counters' doing
        where = (
            f"through {replicas} gateway replicas sharing their counters ({gateway.get('shared_state')}) except for "
            f"{count(lost['lost_s'])} s without Redis"
        )
    else:
        where = f"through {replicas} gateway replicas sharing their counters ({gateway.get('shared_state')})"
    if not limit:
        return f"The gateway had no tokens-per-minute limit ({where})."
    parts = [
        f"{'App' if i == 0 else 'app'} {name} got {count(app['goodput_tpm'])} tokens per scenario minute through, "
        f"{app['goodput_tpm'] / limit:.2f} x the limit"
        for i, (name, app) in enumerate(summary["by_app"].items())
        if app["goodput_tpm"] is not None
    ]
    limit_text = f"{count(limit)} tokens per minute per {gateway.get('counter_key')}"
    sentence = "; ".join(parts or ["No app got tokens through"]) + f" ({limit_text}, {where})."
    if lost and lost.get("lost_s"):
        sentence += " " + enforced_per_replica(lost)
    return sentence


def enforced_per_replica(lost: SharedStateLost) -> str:
    """What the replicas let through while Redis was lost: the limit then held per replica, not shared."""
    over = [
        f"app {name} got up to {count(app['peak_tokens_60s'])} tokens within 60 s"
        + (f", {app['x_limit']:.2f} x the limit" if app.get("x_limit") is not None else "")
        for name, app in (lost.get("by_app") or {}).items()
    ]
    return (
        f"For {count(lost['lost_s'])} s Redis was lost and the limit was enforced per replica"
        + (": " + "; ".join(over) if over else "")
        + "."
    )


def shared_state_lost(lost: SharedStateLost) -> str:
    """The run fact of replicas that lost the Redis their shared state lives on (summary `run.shared_state_lost`)."""
    replicas = ", ".join(lost["replicas"]) or "?"
    seconds = lost.get("lost_s")
    during = f" for {count(seconds)} s" if seconds else ""
    return (
        f"Redis stopped answering {count(lost['losses'])} time(s) (replica(s) {replicas}){during}; "
        f"{count(lost['fallbacks'])} decisions fell back to each replica's own counters, so limits and breakers "
        "held per replica only while it was away."
        + (" " + enforced_per_replica(lost) if seconds and lost.get("by_app") else "")
    )


def _sources(split: Split) -> str:
    attempts = split["attempts"]
    outcomes = split["attempt_outcomes"]
    return ", ".join(f"{percent(outcomes[s] / attempts)} {label}" for s, label in SOURCES.items() if outcomes[s])


def _signed_percent(value: float | None) -> str:
    if value is None:
        return "–"
    shown = round(value, 1)
    return f"{'+' if shown > 0 else ''}{shown + 0.0:.1f} %"  # + 0.0: no "-0.0"


FINDINGS: dict[str, Callable[[SummaryBody], str]] = {
    "token_limit": token_limit,
    "outcomes": outcomes,
    "by_app": by_app,
    "by_client_profile": by_client_profile,
    "by_backend": by_backend,
    "ptu_utilization": ptu_utilization,
    "breaker": breaker,
    "drain": drain,
    "chargeback": chargeback,
    "cost": cost,
    "lockout": lockout,
}
