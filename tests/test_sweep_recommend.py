"""A sweep's verdict on synthetic per-point numbers: objective and constraint parsing, feasibility, the best,
within noise or not, at the edge or not, and the live confirmation's agreement."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.errors import CHECKS_FAILED_EXIT_CODE, UsageError
from harness.report.confirm import Decision, LiveResult, LiveRun, confirm_headline, confirm_line, decide, judge_live
from harness.report.recommend import (
    PointRuns,
    agreement,
    check_metrics,
    deciding_inputs,
    describe_agreement,
    edge_hints,
    headline_names,
    rate,
    recommend,
    worst_case,
)
from harness.report.stats import estimate
from harness.scenario.checks import Checks
from harness.scenario.objectives import METRICS_HELP, Constraint, Objective, parse_constraint, parse_objective

TRIP = "gateway.circuit_breaker.tripDuration"
AXES = {TRIP: ["PT10S", "PT30S", "PT1M"]}
GOODPUT = parse_objective("goodput")


def _summary(goodput: float, failure: float = 0.01, share: float = 0.6, trips: int | None = 2) -> dict[str, Any]:
    return {
        "run": {"run_id": "r", "duration_s": 240.0},
        "throughput": {"goodput_tpm": goodput},
        "requests": {"client_failure_rate": failure, "rate_429": failure * 3, "logical": 500},
        "end_to_end_latency": {"count": 400, "p95": 2.5},
        "retries": {"per_request": 0.2},
        "backends": {"primary": {"token_share": share}, "secondary": {"token_share": 1 - share}},
        "breaker": {} if trips is None else {"primary": {"trips": trips, "open_s": 30.0 * trips}},
        "chargeback": None,
    }


def _point(trip: str, goodputs: list[float], checks: Checks | None = None, **kwargs: Any) -> PointRuns:
    summaries: list[dict[str, Any] | None] = [_summary(g, **kwargs) for g in goodputs]
    return PointRuns(
        f"{TRIP}={trip}",
        {TRIP: trip},
        [f"run-{trip}/seed-{i}" for i in range(len(goodputs))],
        summaries,
        checks or Checks(),
    )


# ---- parsing ----


@pytest.mark.parametrize(
    ("text", "objective"),
    [
        ("goodput", Objective("max", "throughput.goodput_tpm")),
        ("failure_rate", Objective("min", "requests.client_failure_rate")),
        ("p95_latency", Objective("min", "end_to_end_latency.p95")),
        ("max:backends.primary.token_share", Objective("max", "backends.primary.token_share")),
        ("min:requests.client_failure_rate", Objective("min", "requests.client_failure_rate")),
        ("min:p95_latency", Objective("min", "end_to_end_latency.p95")),
        (" max:cost.per_1m_tokens ", Objective("max", "cost.per_1m_tokens")),
    ],
)
def test_objectives_parse_with_their_direction(text: str, objective: Objective) -> None:
    assert parse_objective(text) == objective


@pytest.mark.parametrize("text", ["throughput", "best:goodput", "max:", "max", "maximise:x", ""])
def test_a_bad_objective_is_a_one_line_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="use max:METRIC or min:METRIC") as info:
        parse_objective(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "constraint"),
    [
        ("requests.client_failure_rate<=0.01", Constraint("requests.client_failure_rate", "<=", 0.01)),
        ("failure_rate <= 0.05", Constraint("requests.client_failure_rate", "<=", 0.05)),
        ("backends.primary.token_share>=0.5", Constraint("backends.primary.token_share", ">=", 0.5)),
        ("goodput>1e4", Constraint("throughput.goodput_tpm", ">", 10_000.0)),
        ("end_to_end_latency.p95<3", Constraint("end_to_end_latency.p95", "<", 3.0)),
    ],
)
def test_constraints_parse(text: str, constraint: Constraint) -> None:
    assert parse_constraint(text) == constraint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("failure_rate=0.01", "use METRIC<=VALUE"),
        ("failure_rate<=", "use METRIC<=VALUE"),
        ("<=0.1", "use METRIC<=VALUE"),
        ("failure_rate<=low", "'low' is not a number"),
        ("failure_rate=<0.1", "use METRIC<=VALUE"),
    ],
)
def test_a_bad_constraint_is_a_one_line_usage_error(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_constraint(text)


def test_constraint_limits_hold_on_the_mean_and_an_unmeasured_mean_fails() -> None:
    assert parse_constraint("x<=0.1").holds(0.1) and not parse_constraint("x<0.1").holds(0.1)
    assert parse_constraint("x>=2").holds(2.0) and not parse_constraint("x>2").holds(2.0)
    assert not parse_constraint("x<=1").holds(None)


def test_an_unknown_metric_says_how_to_list_them() -> None:
    summaries = [_summary(1000)]
    check_metrics(
        parse_objective("max:backends.secondary.token_share"), [parse_constraint("retries.per_request<1")], summaries
    )
    with pytest.raises(UsageError, match=r"--objective: no metric 'backends.primray.token_share'.*--list-metrics"):
        check_metrics(parse_objective("max:backends.primray.token_share"), [], summaries)
    with pytest.raises(UsageError, match=r"--constraint: no metric 'requests.rate_428'"):
        check_metrics(GOODPUT, [parse_constraint("requests.rate_428<0.1")], summaries)
    # a backend whose breaker never tripped has 0 trips, not an unknown metric
    check_metrics(parse_objective("min:breaker.secondary.trips"), [], summaries)


def test_help_lists_the_headline_metrics_and_the_patterns() -> None:
    for name in (
        "throughput.goodput_tpm",
        "requests.client_failure_rate",
        "requests.rate_429",
        "end_to_end_latency.p95",
    ):
        assert name in METRICS_HELP
    for pattern in ("backends.BACKEND.token_share", "breaker.BACKEND.trips", "apps.APP.FIELD", "--list-metrics"):
        assert pattern in METRICS_HELP


# ---- numbers per point ----


def test_every_headline_number_gets_mean_ci_and_values() -> None:
    point = _point("PT30S", [1000, 1100, 1200], trips=None)
    point.summaries.append(None)  # a run with no records counts in neither the mean nor n
    [rated] = rate([point], GOODPUT, [parse_constraint("latency.all.p95<=1")], extra=[])
    assert list(rated.metrics)[:5] == [
        "throughput.goodput_tpm",
        "requests.client_failure_rate",
        "requests.rate_429",
        "end_to_end_latency.p95",
        "retries.per_request",
    ]
    goodput = rated.metrics["throughput.goodput_tpm"]
    assert goodput.values == (1000.0, 1100.0, 1200.0, None) and goodput.mean == 1100.0
    assert goodput.ci95 == pytest.approx(estimate([1000, 1100, 1200]).ci95)
    assert rated.metrics["backends.primary.token_share"].mean == pytest.approx(0.6)
    # the breaker section exists but never names a backend: every backend tripped 0 times
    assert rated.metrics["breaker.primary.trips"].values == (0.0, 0.0, 0.0, None)
    # a constraint on a number no run has is in the table, unmeasured, and excludes the point
    assert rated.metrics["latency.all.p95"].mean is None
    assert not rated.feasible and rated.excluded_because == ["constraint latency.all.p95<=1: not met: not measured"]


def test_headline_names_follow_the_backends_and_include_optional_numbers_when_present() -> None:
    summary = _summary(1000)
    summary["cost"] = {"per_1m_tokens": 2.5}
    summary["backends"]["primary"]["ptu_utilization"] = {"mean": 0.7, "p95": 0.95}
    names = headline_names([summary])
    assert "cost.per_1m_tokens" in names
    assert names.index("backends.primary.ptu_utilization.mean") < names.index("backends.secondary.token_share")
    assert "backends.secondary.ptu_utilization.mean" not in names
    assert "cost.per_1m_tokens" not in headline_names([_summary(1000)])


def test_checks_and_constraints_judge_the_means() -> None:
    checks = Checks(max_failure_rate=0.05)
    points = [
        _point("PT10S", [2000, 2010, 1990], checks, failure=0.08),  # most goodput, fails the check
        _point("PT30S", [1500, 1510, 1490], checks, failure=0.02),  # fails the constraint
        _point("PT1M", [1000, 1010, 990], checks, failure=0.001),
    ]
    rated = rate(points, GOODPUT, [parse_constraint("failure_rate<=0.01")])
    assert [r.feasible for r in rated] == [False, False, True]
    assert rated[0].excluded_because[0] == (
        "check max_failure_rate: FAILED: actual 0.08, limit 0.05 (off by 0.03) (mean of 3 runs)"
    )
    assert rated[1].excluded_because == [
        "constraint requests.client_failure_rate<=0.01: not met: 2.00 % ± 0.00 pp (3 runs)"
    ]
    rec = recommend(rated, GOODPUT, AXES)
    assert rec is not None and rec["label"] == f"{TRIP}=PT1M" and rec["feasible"]
    assert rec["runner_up"] is None and rec["within_noise"] is False
    assert "the only feasible setting" in rec["why"] and f"Excluded: {TRIP}=PT10S (check max_failure_rate" in rec["why"]


def test_when_nothing_is_feasible_the_least_bad_is_named_as_such() -> None:
    points = [_point("PT10S", [2000, 2100]), _point("PT30S", [1000, 1100])]
    rated = rate(points, GOODPUT, [parse_constraint("goodput>=5000")])
    rec = recommend(rated, GOODPUT, AXES)
    assert rec is not None and rec["label"] == f"{TRIP}=PT10S" and rec["feasible"] is False
    assert rec["why"].startswith("Recommended, though no setting met the checks and constraints")


# ---- the recommendation: within noise, at the edge ----


def test_within_noise_when_the_best_and_runner_up_intervals_overlap() -> None:
    points = [_point("PT10S", [900, 960, 930]), _point("PT30S", [1000, 1100, 1200]), _point("PT1M", [980, 1080, 1180])]
    rec = recommend(rate(points, GOODPUT, []), GOODPUT, AXES)
    assert rec is not None and rec["label"] == f"{TRIP}=PT30S"
    assert rec["runner_up"]["label"] == f"{TRIP}=PT1M" and rec["runner_up"]["mean"] == pytest.approx(1080)
    assert rec["within_noise"] is True and rec["within_noise_of"] == [f"{TRIP}=PT1M", f"{TRIP}=PT10S"]
    assert "within run-to-run noise" in rec["why"]
    assert rec["at_edge"] is False and rec["try_beyond"] == []


def test_not_within_noise_when_the_gap_beats_both_intervals() -> None:
    points = [_point("PT10S", [900, 905, 910]), _point("PT30S", [1000, 1005, 1010]), _point("PT1M", [950, 955, 960])]
    rec = recommend(rate(points, GOODPUT, []), GOODPUT, AXES)
    assert rec is not None and rec["label"] == f"{TRIP}=PT30S" and rec["within_noise"] is False
    assert rec["within_noise_of"] == [] and "larger than the run-to-run noise" in rec["why"]
    assert rec["mean"] == pytest.approx(1005) and rec["ci95"] == pytest.approx(estimate([1000, 1005, 1010]).ci95)


def test_at_edge_when_the_best_is_the_largest_or_smallest_value_swept() -> None:
    points = [_point("PT10S", [900, 905, 910]), _point("PT30S", [950, 955, 960]), _point("PT1M", [1000, 1005, 1010])]
    rec = recommend(rate(points, GOODPUT, []), GOODPUT, AXES)
    assert rec is not None and rec["at_edge"] is True and rec["try_beyond"] == [f"{TRIP} above PT1M"]
    assert f"try beyond it ({TRIP} above PT1M)" in rec["why"]
    minimise = parse_objective("min:goodput")
    rec = recommend(rate(points, minimise, []), minimise, AXES)
    assert rec is not None and rec["label"] == f"{TRIP}=PT10S" and rec["try_beyond"] == [f"{TRIP} below PT10S"]


def test_edges_only_on_ordered_axes_and_by_value_not_by_position() -> None:
    assert edge_hints({"x": "5"}, {"x": ["10", "5", "20"]}) == ["x below 5"]
    assert edge_hints({"x": "10"}, {"x": ["10", "5", "20"]}) == []
    assert edge_hints({"p": "none"}, {"p": ["none", "openai-python"]}) == []  # names have no "beyond"
    assert edge_hints({"r": "[{min: 500}]"}, {"r": ["[{min: 429}]", "[{min: 500}]"]}) == []
    grid = {"a": ["1", "2", "3"], "b": ["PT1S", "PT2S"]}
    assert edge_hints({"a": "2", "b": "PT2S"}, grid) == ["b above PT2S"]


def test_one_run_per_setting_leaves_the_noise_unknown() -> None:
    points = [_point("PT10S", [1000]), _point("PT30S", [1003])]
    rec = recommend(rate(points, GOODPUT, []), GOODPUT, AXES)
    assert rec is not None and rec["within_noise"] is None and rec["ci95"] is None
    assert "noise is unknown" in rec["why"] and "(one run)" in rec["why"]


def test_no_records_anywhere_means_no_recommendation() -> None:
    empty = PointRuns("x=1", {"x": "1"}, ["a"], [None], problems=["seed 0: no records"])
    [rated] = rate([empty], GOODPUT, [])
    assert not rated.feasible and rated.excluded_because == ["no run produced records", "seed 0: no records"]
    assert recommend([rated], GOODPUT, {"x": ["1", "2"]}) is None


# ---- the live confirmation ----


def test_agreement_says_within_the_ci_or_by_how_much_it_differs() -> None:
    sim = {
        "throughput.goodput_tpm": estimate([1000, 1100, 1200]),  # 1100 ± 248.4
        "requests.rate_429": estimate([0.10, 0.11, 0.12]),  # 0.11 ± 0.0248
        "end_to_end_latency.p95": estimate([2.0]),
    }
    live = {
        "throughput": {"goodput_tpm": 1200.0},
        "requests": {"rate_429": 0.2},
        "end_to_end_latency": {"p95": 2.5},
    }
    rows = agreement(sim, live)
    assert rows["throughput.goodput_tpm"]["within_ci"] is True
    assert rows["throughput.goodput_tpm"]["diff_pct"] == pytest.approx(100 / 11)
    assert rows["requests.rate_429"]["within_ci"] is False and rows["requests.rate_429"]["diff"] == pytest.approx(0.09)
    assert rows["end_to_end_latency.p95"]["within_ci"] is None
    assert describe_agreement("throughput.goodput_tpm", rows["throughput.goodput_tpm"]) == (
        "throughput.goodput_tpm: sim 1,100 ± 248 (3 runs), live 1,200: within the sim CI"
    )
    assert describe_agreement("requests.rate_429", rows["requests.rate_429"]) == (
        "requests.rate_429: sim 11.00 % ± 2.48 pp (3 runs), live 20.00 %: outside the sim CI by 6.52 pp "
        "(differs by 9.00 pp, +81.8 %)"
    )
    assert "one simulated run: no CI" in describe_agreement("end_to_end_latency.p95", rows["end_to_end_latency.p95"])


def test_a_constraint_met_only_by_the_mean_is_marginal_and_excludes_the_point() -> None:
    # Before the prediction-bound rule this point was feasible with a "within noise" note; a mean that meets
    # the limit while two of four runs break it is now excluded as marginal.
    points = [
        _point("PT10S", [2000, 2010, 1990]),  # failure rate 1 % in every run: a limit of 1.2 % has room
        _point("PT30S", [1000, 1010, 990]),
    ]
    sure = recommend(rate(points, GOODPUT, [parse_constraint("failure_rate<=0.012")]), GOODPUT, AXES)
    assert sure is not None and sure["label"] == f"{TRIP}=PT10S" and sure["marginal_constraints"] == []
    assert "Margins (one more run): requests.client_failure_rate<=0.012: mean 1.00 %" in sure["why"]
    noisy = _point("PT10S", [2000, 2010, 1990, 2005])
    for summary, failure in zip(noisy.summaries, (0.011, 0.009, 0.0112, 0.0088), strict=True):
        assert summary is not None
        summary["requests"]["client_failure_rate"] = failure
    rated = rate([noisy, points[1]], GOODPUT, [parse_constraint("failure_rate<=0.0105")])
    assert not rated[0].feasible and rated[0].marginal  # mean 1.0 % meets 1.05 %, one more run may not
    rec = recommend(rated, GOODPUT, AXES)
    assert rec is not None and rec["label"] == f"{TRIP}=PT30S"
    assert f"Excluded: {TRIP}=PT10S (constraint requests.client_failure_rate<=0.0105: marginal:" in rec["why"]
    assert "2 of 4 runs broke it" in rec["why"]


# ---- margins: the prediction bound of one more run ----

# t(0.95, 4) and t(0.99, 4) from a printed table of Student's t
T95_4, T99_4 = 2.131847, 3.746947
FAILURES = (0.002, 0.004, 0.006, 0.008, 0.010)  # mean 0.006, s = sqrt(40e-6 / 4) = 0.0031623


def _failing(failures: tuple[float, ...]) -> PointRuns:
    point = _point("PT30S", [1000.0] * len(failures))
    for summary, failure in zip(point.summaries, failures, strict=True):
        assert summary is not None
        summary["requests"]["client_failure_rate"] = failure
    return point


@pytest.mark.parametrize(("quantile", "t"), [(0.95, T95_4), (0.99, T99_4)])
def test_the_bound_is_the_mean_plus_t_s_sqrt_1_plus_1_over_n(quantile: float, t: float) -> None:
    [rated] = rate([_failing(FAILURES)], GOODPUT, [parse_constraint("failure_rate<=0.02")], quantile=quantile)
    margin = rated.margins["requests.client_failure_rate<=0.02"]
    bound = 0.006 + t * math.sqrt(10e-6) * math.sqrt(1 + 1 / 5)
    assert margin.mean == pytest.approx(0.006) and margin.bound == pytest.approx(bound, rel=1e-6)
    assert margin.margin == pytest.approx(0.02 - bound, abs=1e-8) and margin.known
    assert (margin.breaking, margin.runs) == (0, 5) and margin.holds and not margin.marginal
    assert rated.feasible


def test_mean_met_bound_broken_is_marginal_and_infeasible_mean_broken_is_not_met() -> None:
    constraints = [parse_constraint("failure_rate<=0.009"), parse_constraint("failure_rate<=0.005")]
    [rated] = rate([_failing(FAILURES)], GOODPUT, constraints)
    marginal, broken = rated.margins.values()
    bound = 0.006 + T95_4 * math.sqrt(10e-6) * math.sqrt(1.2)  # 0.013385
    assert marginal.marginal and marginal.margin == pytest.approx(0.009 - bound, abs=1e-8)
    assert (marginal.breaking, marginal.runs) == (1, 5)  # only the 1.0 % run broke 0.9 %
    assert not broken.mean_holds and not broken.marginal and (broken.breaking, broken.runs) == (3, 5)
    assert not rated.feasible and rated.marginal == [
        "constraint requests.client_failure_rate<=0.009: marginal: the mean meets it, one more run may not: "
        "mean 0.60 %, 95 % bound 1.34 % (0.44 pp over the limit), 1 of 5 runs broke it"
    ]
    assert rated.excluded_because[0].startswith("constraint requests.client_failure_rate<=0.005: not met: 0.60 %")
    assert rated.excluded_because[1] == rated.marginal[0]


def test_a_floor_uses_the_lower_bound() -> None:
    shares = (0.50, 0.52, 0.54, 0.56, 0.58)  # mean 0.54, s = 0.031623
    point = _point("PT30S", [1000.0] * 5)
    for summary, share in zip(point.summaries, shares, strict=True):
        assert summary is not None
        summary["backends"]["primary"]["token_share"] = share
    [rated] = rate([point], GOODPUT, [parse_constraint("backends.primary.token_share>=0.4")])
    margin = rated.margins["backends.primary.token_share>=0.4"]
    lower = 0.54 - T95_4 * 0.031623 * math.sqrt(1.2)  # 0.46615
    assert margin.bound == pytest.approx(lower, rel=1e-4) and margin.margin == pytest.approx(lower - 0.4, rel=1e-3)
    assert rated.feasible


def test_with_one_run_the_bound_is_its_value_and_the_margin_unknown() -> None:
    [rated] = rate([_failing((0.004,))], GOODPUT, [parse_constraint("failure_rate<=0.01")])
    margin = rated.margins["requests.client_failure_rate<=0.01"]
    assert margin.bound == 0.004 and not margin.known and margin.holds and rated.feasible
    assert margin.as_json()["margin"] is None and margin.as_json()["margin_known"] is False
    assert margin.describe() == "one run: 0.40 %, margin unknown, 0 of 1 runs broke it"


# ---- varied inputs: a setting judged at its worst level ----

LATENCY = "backends[0].network_latency"


def _at(point: PointRuns, latency: str) -> PointRuns:
    point.level = {LATENCY: latency}
    return point


def test_a_setting_is_feasible_only_at_every_level_and_ranked_by_its_worst() -> None:
    limit = [parse_constraint("failure_rate<=0.02")]
    levels_30s = [_at(_point("PT30S", [2000, 2000], failure=f), lat) for f, lat in ((0.01, "0.005"), (0.05, "0.05"))]
    levels_1m = [_at(_point("PT1M", [g, g], failure=0.01), lat) for g, lat in ((1500, "0.005"), (1400, "0.05"))]
    rated = rate([*levels_30s, *levels_1m], GOODPUT, limit)
    pt30s, pt1m = worst_case(rated[:2], GOODPUT), worst_case(rated[2:], GOODPUT)
    assert not pt30s.feasible and pt30s.excluded_because[0].startswith(
        f"at {LATENCY}=0.05: constraint requests.client_failure_rate<=0.02: not met"
    )
    assert pt1m.feasible and pt1m.point.level == {LATENCY: "0.05"}  # its worst goodput, 1400
    assert pt1m.metrics["throughput.goodput_tpm"].mean == 1400
    assert deciding_inputs(pt30s) == [
        f"{TRIP}=PT30S is feasible at {LATENCY}=0.005 but not at 0.05: this input decides"
    ]
    rec = recommend([pt30s, pt1m], GOODPUT, AXES)
    assert rec is not None and rec["label"] == f"{TRIP}=PT1M" and rec["worst_level"] == {LATENCY: "0.05"}
    assert f"ranked by its worst: {TRIP}=PT1M at {LATENCY}=0.05" in rec["why"]
    assert "is feasible at backends[0].network_latency=0.005 but not at 0.05: this input decides" in rec["why"]
    assert "No varied input changes" not in rec["why"]


def test_a_recommendation_that_no_varied_input_changes_says_so() -> None:
    limit = [parse_constraint("failure_rate<=0.02")]
    levels = [_at(_point("PT1M", [g, g], failure=0.01), lat) for g, lat in ((1500, "0.005"), (1400, "0.05"))]
    rated = rate(levels, GOODPUT, limit)
    rec = recommend([worst_case(rated, GOODPUT)], GOODPUT, AXES)
    assert rec is not None and "No varied input changes which settings are feasible" in rec["why"]


# ---- the live confirmation's decision ----

RATE = parse_constraint("requests.rate_429<=0.01")


def _live(label: str, rates: list[float | None]) -> LiveResult:
    runs = [
        LiveRun(f"{label}/seed-{i}", 5 + i, None if r is None else {"requests": {"rate_429": r}})
        for i, r in enumerate(rates)
    ]
    return judge_live(label, runs, [RATE], Checks(), "requests.rate_429")


def test_the_pick_that_holds_live_is_confirmed() -> None:
    live = {"PT30S": _live("PT30S", [0.002, 0.004, 0.009]), "PT1M": _live("PT1M", [0.02, 0.0, 0.0])}
    decision = decide(["PT30S", "PT1M"], live, no_fail=False)
    assert decision == Decision(confirmed=True, final="PT30S", fallback=None, exit_code=0)
    assert confirm_line(["PT30S", "PT1M"], live, decision) == (
        "confirm: PT30S held in 3 of 3 live runs (requests.rate_429<=0.01: 0.20 %, 0.40 %, 0.90 %)"
    )


def test_a_pick_that_breaks_live_falls_back_to_the_runner_up_that_held() -> None:
    live = {"PT30S": _live("PT30S", [0.0146, 0.02, 0.009]), "PT1M": _live("PT1M", [0.001, 0.0, 0.003])}
    assert live["PT30S"].held_runs == 1 and not live["PT30S"].held and live["PT1M"].held
    decision = decide(["PT30S", "PT1M"], live, no_fail=False)
    assert decision == Decision(confirmed=False, final="PT1M", fallback="PT1M", exit_code=CHECKS_FAILED_EXIT_CODE)
    assert CHECKS_FAILED_EXIT_CODE == 3
    assert confirm_line(["PT30S", "PT1M"], live, decision) == (
        "confirm: PT30S broke requests.rate_429<=0.01 live in 2 of 3 runs (1.46 %, 2.00 %, 0.90 %): "
        "recommending PT1M, which held in 3 of 3"
    )
    assert decide(["PT30S", "PT1M"], live, no_fail=True).exit_code == 0
    block = live["PT30S"].as_json()
    assert block["constraints_met"] is False and block["per_constraint"]["requests.rate_429<=0.01"]["breaking"] == 2
    assert [r["run_dir"] for r in block["runs"]] == ["PT30S/seed-0", "PT30S/seed-1", "PT30S/seed-2"]


def test_when_both_break_live_nothing_is_recommended() -> None:
    live = {"PT30S": _live("PT30S", [0.02]), "PT1M": _live("PT1M", [None])}  # no records cannot show it held
    decision = decide(["PT30S", "PT1M"], live, no_fail=False)
    assert decision == Decision(confirmed=False, final=None, fallback=None, exit_code=3)
    line = confirm_line(["PT30S", "PT1M"], live, decision)
    assert line.startswith("confirm: PT30S broke requests.rate_429<=0.01 live in 1 of 1 runs (2.00 %): no setting held")
    assert "PT1M produced no records live in 1 of 1 runs" in line
    payload = {"pick": "PT30S", "confirmed": False, "final": None, "held_runs": {"PT30S": [0, 1]}}
    assert confirm_headline(payload | {"broken": ["requests.rate_429<=0.01"]}) == (
        "Live confirmation: the simulator's pick PT30S broke requests.rate_429<=0.01 live; no setting held"
    )


def test_a_live_run_that_fails_the_setting_s_own_checks_does_not_hold() -> None:
    runs = [LiveRun("a", 5, {"requests": {"rate_429": 0.0, "client_failure_rate": 0.2}})]
    result = judge_live("PT30S", runs, [RATE], Checks(max_failure_rate=0.05), "requests.rate_429")
    assert not result.held and result.failed_checks_text()[0].startswith("seed 5: check max_failure_rate: FAILED")
