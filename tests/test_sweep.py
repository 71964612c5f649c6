"""`harness sweep`: value splitting, the grid, the objective, and a real sweep of breaker-trip-duration."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import ScenarioError, UsageError
from harness.scenario.checks import Checks
from harness.sweep import Point, choose_best, locust_command, plan, split_values

ROOT = Path(__file__).resolve().parent.parent
BREAKER = str(ROOT / "scenarios" / "breaker-trip-duration.yaml")
TRIP = "gateway.circuit_breaker.tripDuration"


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("PT10S,PT30S, PT1M", ["PT10S", "PT30S", "PT1M"]),
        ("PT10S", ["PT10S"]),
        ("[{min: 429, max: 429}],[{min: 500, max: 599}]", ["[{min: 429, max: 429}]", "[{min: 500, max: 599}]"]),
        ("'a,b',\"c,d\",e", ["'a,b'", '"c,d"', "e"]),
        ("{count: 1, interval: PT1M}", ["{count: 1, interval: PT1M}"]),
    ],
)
def test_values_split_on_top_level_commas_only(text: str, values: list[str]) -> None:
    assert split_values(text) == values


@pytest.mark.parametrize("text", ["[{min: 429, max: 429}", "'open", "a,,b"])
def test_unbalanced_or_empty_values_are_one_line_errors(text: str) -> None:
    with pytest.raises(UsageError):
        split_values(text)


def test_several_lists_make_a_grid_and_single_values_apply_to_every_run(tmp_path: Path) -> None:
    _, points = plan(BREAKER, [f"{TRIP}=PT10S,PT1M", "run.seed=1,2,3", "workload.users=7"], tmp_path)
    assert len(points) == 6
    assert [p.settings for p in points[:2]] == [{TRIP: "PT10S", "run.seed": "1"}, {TRIP: "PT10S", "run.seed": "2"}]
    assert all("workload.users=7" in p.overrides for p in points)
    assert len({p.run_dir for p in points}) == 6
    command = locust_command(BREAKER, points[0], None)  # type: ignore[arg-type]
    assert command[command.index("-u") + 1] == "7" and command[command.index("-t") + 1] == "24s"
    assert command.count("--set") == 3 and "--headless" in command and str(points[0].run_dir) in command


def test_a_sweep_block_in_the_scenario_adds_axes_and_set_replaces_them(tmp_path: Path) -> None:
    text = Path(BREAKER).read_text()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text + f"sweep:\n  parameters:\n    {TRIP}: [PT10S, PT30S]\n    run.seed: [1, 2]\n")
    _, points = plan(str(scenario), [], tmp_path / "out")
    assert [p.settings for p in points][:2] == [{TRIP: "PT10S", "run.seed": "1"}, {TRIP: "PT10S", "run.seed": "2"}]
    assert len(points) == 4
    _, points = plan(str(scenario), ["run.seed=9"], tmp_path / "out")
    assert [p.settings for p in points] == [{TRIP: "PT10S"}, {TRIP: "PT30S"}]
    assert all("run.seed=9" in p.overrides for p in points)


def test_a_bad_value_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="tripDuration"):
        plan(BREAKER, [f"{TRIP}=PT10S,soon"], tmp_path)
    assert not tmp_path.joinpath("run-01").exists()
    with pytest.raises(UsageError, match="nothing to sweep"):
        plan(BREAKER, [f"{TRIP}=PT10S"], tmp_path)


def _point(label: str, goodput: float, failure_rate: float, p95: float | None, **limits: float) -> Point:
    summary: dict[str, Any] = {
        "throughput": {"goodput_tpm": goodput},
        "requests": {"client_failure_rate": failure_rate, "rate_429": failure_rate, "logical": 100},
        "end_to_end_latency": {"p95": p95},
        "ttft": {"stream": {"p95": None}},
    }
    return Point({"x": label}, [], Path(label), checks=Checks(**limits), summary=summary)


def _points(**limits: float) -> list[Point]:
    return [
        _point("fast", 9000, 0.20, 2.0, **limits),
        _point("ok", 7000, 0.01, 3.0, **limits),
        _point("slow", 8000, 0.02, 30.0, **limits),
    ]


def test_best_is_most_goodput_within_the_checks_and_says_why() -> None:
    best, why = choose_best(_points(max_failure_rate=0.05, max_p95_latency_s=10))
    assert best == 1
    assert why.startswith("Best for goodput: x=ok")
    assert "excluded x=fast (check max_failure_rate: FAILED: actual 0.2, limit 0.05 (off by 0.15))" in why
    assert "excluded x=slow (check max_p95_latency_s: FAILED: actual 30, limit 10 (off by 20))" in why
    best, _ = choose_best(_points())
    assert best == 0
    best, why = choose_best(_points(max_failure_rate=0.001))
    assert best == 0 and "No setting met the checks" in why
    assert choose_best(_points(), "failure_rate")[0] == 1
    assert choose_best(_points(), "p95_latency")[0] == 0


def test_every_check_of_the_run_counts_not_only_failure_rate_and_p95() -> None:
    # the sweep's verdict is the run's own: a check on streams' TTFT that nothing measured fails the point
    best, why = choose_best(_points(min_requests=100, max_p95_ttft_s=5))
    assert "No setting met the checks" in why and best == 0
    points = _points(min_requests=101)
    points[1].checks = Checks(min_requests=50)  # a point's own checks (its overrides applied) judge it
    best, why = choose_best(points)
    assert best == 1 and "excluded x=fast (check min_requests: FAILED: actual 100, limit 101 (off by 1))" in why


def test_each_point_carries_its_own_checks(tmp_path: Path) -> None:
    _, points = plan(BREAKER, ["checks.max_failure_rate=0.1,0.2", f"{TRIP}=PT10S"], tmp_path)
    assert [p.checks.max_failure_rate for p in points] == [0.1, 0.2]


@pytest.mark.e2e
def test_sweep_of_trip_duration_differs_the_way_the_breaker_rules_imply(tmp_path: Path) -> None:
    # 12 users overload the 10K TPM primary, so its breaker (count 1 on 429 within PT1M) trips again and again.
    trips = {"PT10S": 10.0, "PT30S": 30.0, "PT1M": 60.0}
    duration = 180.0
    out = tmp_path / "sweep"
    code = main(
        [
            "sweep",
            "--scenario",
            BREAKER,
            "--set",
            f"{TRIP}={','.join(trips)}",
            "--set",
            "workload.users=12",
            "--set",
            f"run.duration={duration:g}",
            "--set",
            "checks.max_failure_rate=0.015",  # between the failure rates the trips usually give
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads((out / "comparison" / "compare.json").read_text())
    assert result["differing"] == [TRIP]
    assert "Best for goodput" in result["notes"][0]
    assert (out / "comparison" / "compare.html").exists()
    trip_counts, primary_share = [], []
    for run, (label, trip_s) in zip(result["runs"], trips.items(), strict=True):
        assert run["settings"][TRIP] == label
        summary = run["summary"]
        breaker = summary["breaker"]["primary"]
        trip_counts.append(breaker["trips"])
        primary_share.append(summary["backends"]["primary"]["token_share"])
        # a tripped member stays out for exactly tripDuration, so it cannot trip more often than that allows
        assert 1 <= breaker["trips"] <= math.ceil(duration / trip_s) + 1
        rows = [json.loads(line) for line in (Path(run["run_dir"]) / "gateway.jsonl").read_text().splitlines()]
        opened = [r for r in rows if r.get("kind") == "breaker" and r["to"] == "open"]
        assert opened and all(r["until"] - r["t"] == pytest.approx(trip_s, abs=0.01) for r in opened)
        assert "secondary" not in {r["backend"] for r in opened}
    # a point is within the checks exactly when its own run passed them (run.json holds the run's verdict)
    note = result["notes"][0]
    failed = {
        run["label"]: any("FAILED" in c for c in json.loads((Path(run["run_dir"]) / "run.json").read_text())["checks"])
        for run in result["runs"]
    }
    if all(failed.values()):
        assert "No setting met the checks" in note
    else:
        assert {label: f"excluded {label} (" in note for label in failed} == failed
    # longer trips: fewer trips, and the throttled primary serves a smaller share
    assert trip_counts[0] > trip_counts[1] > trip_counts[2]
    assert primary_share[0] > primary_share[2]


@pytest.mark.parametrize("name", ["harness.sweep", "harness.report.compare", "harness.scenario.checks"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
