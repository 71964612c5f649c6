"""`harness sweep`: value splitting, the grid and its seeds, the command line, a simulated sweep of
breaker-trip-duration with repeats, the live confirmation, and a short live smoke test."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import sweep as sweep_module
from harness.cli import build_parser, main
from harness.errors import ScenarioError, UsageError
from harness.report.stats import estimate
from harness.sweep import Run, locust_command, parse_vary, plan, seeded, split_values

ROOT = Path(__file__).resolve().parent.parent
BREAKER = str(ROOT / "tests" / "data" / "sweep-breaker.yaml")
TRIP = "gateway.circuit_breaker.tripDuration"
HEADLINE = (
    "throughput.goodput_tpm",
    "requests.client_failure_rate",
    "requests.rate_429",
    "end_to_end_latency.p95",
    "retries.per_request",
    "backends.primary.token_share",
    "backends.secondary.token_share",
    "breaker.primary.trips",
    "breaker.secondary.trips",
)


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
    _, axes, points = plan(BREAKER, [f"{TRIP}=PT10S,PT1M", "workload.users=7,8,9", "run.duration=60"], tmp_path)
    assert axes == {TRIP: ["PT10S", "PT1M"], "workload.users": ["7", "8", "9"]}
    assert len(points) == 6
    assert [p.settings for p in points[:2]] == [
        {TRIP: "PT10S", "workload.users": "7"},
        {TRIP: "PT10S", "workload.users": "8"},
    ]
    assert all("run.duration=60" in p.overrides for p in points)
    assert len({p.dir for p in points}) == 6
    command = locust_command(BREAKER, seeded(points[0].overrides, 12), tmp_path / "r")
    assert command[command.index("-u") + 1] == "7" and command[command.index("-t") + 1] == "6s"
    # the overrides go by environment (they may hold keys), the command line only names the variable
    assert "--set" not in command and command[command.index("--set-env") + 1] == "HARNESS_OVERRIDES"
    assert "run.seed=12" not in command and "--headless" in command


def test_repeats_run_with_the_point_s_seed_plus_k_each_in_its_own_directory(tmp_path: Path) -> None:
    _, _, points = plan(BREAKER, [f"{TRIP}=PT10S,PT1M"], tmp_path)
    for point in points:
        point.repeat(3)
    assert [p.seed for p in points] == [5, 5]  # the scenario's run.seed
    assert [r.seed for r in points[1].runs] == [5, 6, 7]
    assert [r.run_dir for r in points[1].runs] == [tmp_path / "run-02" / f"seed-{s:04d}" for s in (5, 6, 7)]
    _, _, points = plan(BREAKER, [f"{TRIP}=PT10S,PT1M", "run.seed=40"], tmp_path)
    points[0].repeat(2)
    assert [r.seed for r in points[0].runs] == [40, 41]


def test_a_sweep_block_in_the_scenario_adds_axes_and_set_replaces_them(tmp_path: Path) -> None:
    text = Path(BREAKER).read_text()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text + f"sweep:\n  parameters:\n    {TRIP}: [PT10S, PT30S]\n    workload.users: [1, 2]\n")
    _, _, points = plan(str(scenario), [], tmp_path / "out")
    assert [p.settings for p in points][:2] == [
        {TRIP: "PT10S", "workload.users": "1"},
        {TRIP: "PT10S", "workload.users": "2"},
    ]
    assert len(points) == 4
    _, _, points = plan(str(scenario), ["workload.users=9"], tmp_path / "out")
    assert [p.settings for p in points] == [{TRIP: "PT10S"}, {TRIP: "PT30S"}]
    assert all("workload.users=9" in p.overrides for p in points)


def test_a_bad_value_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="tripDuration"):
        plan(BREAKER, [f"{TRIP}=PT10S,soon"], tmp_path)
    assert not tmp_path.joinpath("run-01").exists()
    with pytest.raises(UsageError, match="nothing to sweep"):
        plan(BREAKER, [f"{TRIP}=PT10S"], tmp_path)


def test_each_point_carries_its_own_checks(tmp_path: Path) -> None:
    _, _, points = plan(BREAKER, ["checks.max_failure_rate=0.1,0.2", f"{TRIP}=PT10S"], tmp_path)
    assert [p.checks.max_failure_rate for p in points] == [0.1, 0.2]


def test_help_lists_the_options_and_the_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    text = capsys.readouterr().out
    for option in ("--engine {sim,live}", "--repeats N", "--objective", "--constraint", "--confirm", "--list-metrics"):
        assert option in text
    for metric in ("requests.client_failure_rate", "backends.BACKEND.token_share", "breaker.BACKEND.trips"):
        assert metric in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "best"], "--objective 'best': use max:METRIC or min:METRIC"),
        (["--constraint", "failure_rate=0.1"], "--constraint 'failure_rate=0.1': use METRIC<=VALUE"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--engine", "live", "--confirm"], "--confirm checks a simulated sweep"),
        (["--vary", "workload.users="], "--vary 'workload.users=': empty range"),
        (["--vary", "workload.users=12"], "a range is LOW..HIGH with two dots"),
        (["--vary", "workload.users=a..b"], "'a' is not a number or a duration such as PT5S"),
        (["--vary", "workload.users=12..12"], "LOW equals HIGH, nothing varies"),
        (["--vary", "workload.users=16..12"], "inverted range: LOW 16 is above HIGH 12"),
        (["--vary", "backends[0].netwrk_latency=0..1"], "backends[0].netwrk_latency: unknown field"),
        (["--vary", "backends[5].network_latency=0..1"], "no such list item to override"),
        (["--vary", f"{TRIP}=PT5S..PT1M"], f"{TRIP} is already swept"),
        (["--quantile", "0.5"], "--quantile '0.5': must be a number between 0.5 and 1"),
        (["--quantile", "high"], "--quantile 'high': must be a number between 0.5 and 1"),
        (["--confirm", "0"], "--confirm N must be at least 1"),
        (["--constraint", "requests.rate_429<=nan"], "the limit must be a finite number"),
    ],
)
def test_bad_arguments_stop_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["sweep", "--scenario", BREAKER, "--set", f"{TRIP}=PT10S,PT1M", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("harness sweep: error: ")
    assert not out.exists()


def test_an_out_that_is_a_file_stops_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a-file"
    out.write_text("not a directory")
    assert main(["sweep", "--scenario", BREAKER, "--set", f"{TRIP}=PT10S,PT1M", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and err.count("\n") == 1
    assert out.read_text() == "not a directory" and not list(tmp_path.glob("*/records.csv"))


def _args(out: Path, *args: str) -> list[str]:
    return [
        "sweep",
        "--scenario",
        BREAKER,
        "--set",
        f"{TRIP}=PT10S,PT1M",
        "--set",
        "run.duration=60",
        "--out",
        str(out),
        *args,
    ]


def _sweep(out: Path, *args: str) -> int:
    return main(_args(out, *args))


def test_an_unknown_metric_is_one_line_that_says_how_to_list_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sweep(tmp_path / "a", "--repeats", "1", "--objective", "max:backends.primray.token_share") == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "harness sweep: error: --objective: no metric 'backends.primray.token_share' in the runs' summary.json "
        "(harness sweep --list-metrics --scenario FILE lists every metric of a scenario)"
    )
    assert main(["sweep", "--scenario", BREAKER, "--set", "run.duration=60", "--list-metrics"]) == 0
    names = capsys.readouterr().out.split()
    assert set(HEADLINE) <= set(names) and "latency.all.p95" in names
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "comparison.json").write_text("{}")
    assert _sweep(tmp_path / "b", "--repeats", "1") == 2
    assert "already holds a sweep; choose another --out" in capsys.readouterr().err


def test_simulated_sweep_of_trip_duration_with_repeats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 12 users overload the 10K TPM primary, so its breaker (count 1 on 429 within PT1M) trips again and again.
    trips = {"PT10S": 10.0, "PT30S": 30.0, "PT1M": 60.0}
    duration = 180.0
    out = tmp_path / "sweep"
    args = ["sweep", "--scenario", BREAKER, "--set", f"{TRIP}={','.join(trips)}", "--set", f"run.duration={duration:g}"]
    args += ["--repeats", "3", "--objective", "min:failure_rate", "--constraint", "backends.primary.token_share>=0.05"]
    assert main([*args, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    result = json.loads((out / "comparison.json").read_text())
    assert set(result) == {
        "scenario",
        "engine",
        "repeats",
        "objective",
        "constraints",
        "method",
        "axes",
        "points",
        "recommendation",
    }
    assert (result["engine"], result["repeats"], result["objective"]) == ("sim", 3, "min:requests.client_failure_rate")
    assert result["constraints"] == ["backends.primary.token_share>=0.05"]
    assert result["axes"] == {TRIP: list(trips)}
    trip_counts, primary_share = [], []
    for point, (value, trip_s) in zip(result["points"], trips.items(), strict=True):
        assert set(point) >= {"label", "settings", "run_dirs", "feasible", "excluded_because", "metrics"}
        assert point["settings"] == {TRIP: value} and point["label"] == f"{TRIP}={value}"
        assert [Path(d).relative_to(out).parts[1] for d in point["run_dirs"]] == ["seed-0005", "seed-0006", "seed-0007"]
        assert set(HEADLINE) <= set(point["metrics"])
        for name, m in point["metrics"].items():
            assert set(m) == {"mean", "ci95", "values"} and len(m["values"]) == 3
            expected = estimate(m["values"])
            assert m["mean"] == pytest.approx(expected.mean) and m["ci95"] == pytest.approx(expected.ci95), name
        # the numbers are the runs' own: the first run's summary.json gives the first value
        first = json.loads((Path(point["run_dirs"][0]) / "summary.json").read_text())
        assert point["metrics"]["throughput.goodput_tpm"]["values"][0] == first["throughput"]["goodput_tpm"]
        runs_trips = point["metrics"]["breaker.primary.trips"]["values"]
        # a tripped member stays out for exactly tripDuration, so it cannot trip more often than that allows
        assert all(1 <= t <= math.ceil(duration / trip_s) + 1 for t in runs_trips)
        rows = [json.loads(line) for line in (Path(point["run_dirs"][0]) / "gateway.jsonl").read_text().splitlines()]
        opened = [r for r in rows if r.get("kind") == "breaker" and r["to"] == "open"]
        assert opened and all(r["until"] - r["t"] == pytest.approx(trip_s, abs=0.01) for r in opened)
        assert point["metrics"]["breaker.secondary.trips"]["values"] == [0, 0, 0]
        trip_counts.append(point["metrics"]["breaker.primary.trips"]["mean"])
        primary_share.append(point["metrics"]["backends.primary.token_share"]["mean"])
        share = point["metrics"]["backends.primary.token_share"]["mean"]
        assert point["feasible"] == (share >= 0.05)
        assert point["feasible"] or point["excluded_because"][0].startswith(
            "constraint backends.primary.token_share>=0.05"
        )
    # longer trips: fewer trips, and the throttled primary serves a smaller share
    assert trip_counts[0] > trip_counts[1] > trip_counts[2]
    assert primary_share[0] > primary_share[2]
    rec = result["recommendation"]
    assert set(rec) >= {"setting", "label", "objective", "within_noise", "at_edge", "runner_up", "why"}
    feasible = [p for p in result["points"] if p["feasible"]]
    best = min(feasible, key=lambda p: p["metrics"]["requests.client_failure_rate"]["mean"])
    assert rec["label"] == best["label"] and rec["setting"] == best["settings"]
    assert isinstance(rec["within_noise"], bool) and isinstance(rec["at_edge"], bool)
    assert rec["at_edge"] == (best["settings"][TRIP] in ("PT10S", "PT1M"))
    assert rec["why"] in stdout
    page = (out / "compare.html").read_text()
    assert f"<b>{rec['label']}</b>" in page and "recommended" in page and "Runs side by side" in page
    for name in (
        "requests.client_failure_rate",
        "requests.rate_429",
        "backends.primary.token_share",
        "throughput.goodput_tpm",
    ):
        assert (out / f"tradeoff_{name}.png").read_bytes().startswith(b"\x89PNG")


def test_confirm_runs_the_pick_and_the_runner_up_live_with_the_simulated_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Locust path itself is covered by the live tests; here each "live" run is one more simulated run
    # with another seed, so the plumbing (which points, where, what is stored and printed) runs in seconds.
    # (Before --confirm N this ran the pick once into OUT/confirm-live; now N runs of the pick and the runner-up.)
    calls: list[tuple[list[str], Path, int]] = []

    def fake_live(scenario_file: str, overrides: list[str], run: Run) -> None:
        calls.append((overrides, run.run_dir, run.seed))
        other = Run(run.seed + 100, run.run_dir)
        sweep_module.run_sim(scenario_file, overrides, other)
        run.summary = other.summary

    monkeypatch.setattr(sweep_module, "run_live", fake_live)
    out = tmp_path / "sweep"
    assert _sweep(out, "--repeats", "3", "--confirm", "2") == 0
    stdout = capsys.readouterr().out
    result = json.loads((out / "comparison.json").read_text())
    rec = result["recommendation"]
    best = next(p for p in result["points"] if p["label"] == rec["label"])
    other = next(p for p in result["points"] if p["label"] == rec["runner_up"]["label"])
    best_dir, other_dir = (out / "confirm-live" / Path(p["run_dirs"][0]).parent.name for p in (best, other))
    assert [(run_dir, seed) for _, run_dir, seed in calls] == [
        (best_dir / "seed-0005", 5),
        (best_dir / "seed-0006", 6),
        (other_dir / "seed-0005", 5),
        (other_dir / "seed-0006", 6),
    ]
    assert f"{TRIP}={rec['setting'][TRIP]}" in calls[0][0]
    confirmed = rec["confirm"]
    assert (confirmed["confirmed"], confirmed["final"], confirmed["fallback"]) == (True, rec["label"], None)
    assert confirmed["runs_per_setting"] == 2 and confirmed["held_runs"][rec["label"]] == [2, 2]
    assert confirmed["final_setting"] == rec["setting"]
    live = best["live"]
    assert live == confirmed["candidates"][rec["label"]] and live["constraints_met"] is True
    assert [r["run_dir"] for r in live["runs"]] == [str(best_dir / "seed-0005"), str(best_dir / "seed-0006")]
    assert len(live["metrics"]["throughput.goodput_tpm"]) == 2
    rows = confirmed["metrics"]
    assert set(HEADLINE) <= set(rows)
    for row in rows.values():
        assert set(row) >= {"sim_mean", "sim_ci95", "live", "live_values", "diff", "within_ci"}
    goodput = rows["throughput.goodput_tpm"]
    assert goodput["live"] == pytest.approx(sum(goodput["live_values"]) / 2)
    assert goodput["within_ci"] == (abs(goodput["live"] - goodput["sim_mean"]) <= goodput["sim_ci95"])
    assert f"confirm: {rec['label']} held in 2 of 2 live runs" in stdout
    assert re.search(r"the mean of 2 live run\(s\) against .*: \d+ of \d+ numbers within the CI", stdout)
    assert "  throughput.goodput_tpm: sim " in stdout
    page = (out / "compare.html").read_text()
    assert page.index(f"Live confirmation: {rec['label']} held in 2 of 2 live runs") < page.index("Sweep of")


def test_confirm_alone_means_three_runs_and_takes_a_number() -> None:
    parser = build_parser()
    assert parser.parse_args(["sweep", "--confirm"]).confirm == 3
    assert parser.parse_args(["sweep", "--confirm", "2"]).confirm == 2
    assert parser.parse_args(["sweep", "--confirm", "--repeats", "4"]).confirm == 3
    assert parser.parse_args(["sweep"]).confirm is None


@pytest.mark.e2e
def test_live_sweep_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "--engine",
        "live",
        "--scenario",
        BREAKER,
        "--set",
        f"{TRIP}=PT10S,PT1M",
        "--set",
        "run.duration=10",  # 1 wall second at time scale 10: the shortest that still records
    ]
    assert main([*args, "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert (result["engine"], result["repeats"]) == ("live", 1)
    for point in result["points"]:
        [run_dir] = point["run_dirs"]
        info: dict[str, Any] = json.loads((Path(run_dir) / "run.json").read_text())
        assert info.get("engine") != "sim" and info["overrides"][-1] == "run.seed=5"
        assert point["metrics"]["requests.rate_429"]["ci95"] is None
        assert point["metrics"]["throughput.goodput_tpm"]["mean"] > 0
    rec = result["recommendation"]
    assert rec["within_noise"] is None and "noise is unknown" in rec["why"]
    assert rec["why"] in capsys.readouterr().out
    assert (out / "compare.html").exists()


@pytest.mark.parametrize("name", ["harness.sweep", "harness.report.compare", "harness.scenario.checks"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_the_scenario_s_sweep_block_carries_objective_and_constraints(tmp_path: Path) -> None:
    """The shipped breaker-trip-duration sweep asks its own question; flags on the command line win."""
    from harness.scenario import load_scenario
    from harness.sweep import sweep_args

    scenario = load_scenario(str(ROOT / "scenarios" / "breaker-trip-duration.yaml"))
    parser = build_parser()
    asked = sweep_args(parser.parse_args(["sweep"]), scenario)
    assert str(asked.objective) == "min:cost.per_1m_tokens"
    assert [str(c) for c in asked.constraints] == ["requests.rate_429<=0.01"]
    overridden = sweep_args(
        parser.parse_args(["sweep", "--objective", "goodput", "--constraint", "failure_rate<=0.1"]), scenario
    )
    assert str(overridden.objective) == "max:throughput.goodput_tpm"
    assert [str(c) for c in overridden.constraints] == ["requests.client_failure_rate<=0.1"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("sweep: {objective: 'best:goodput', constraints: ['rate_429 == 1']}\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"sweep\.objective: use max:METRIC or min:METRIC"):
        load_scenario(str(bad))


def test_simulated_runs_in_parallel_processes_give_the_same_answer(tmp_path: Path) -> None:
    """Each simulated run is seeded and independent: two processes at once change the wall time, not one number."""
    args = ["sweep", "--scenario", BREAKER, "--set", f"{TRIP}=PT10S,PT1M", "--set", "run.duration=120"]
    args += ["--repeats", "2"]
    results = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs-{jobs}"
        assert main([*args, "--jobs", jobs, "--out", str(out)]) == 0
        result = json.loads((out / "comparison.json").read_text())
        results.append(([p["metrics"] for p in result["points"]], result["recommendation"]["label"]))
    assert results[0] == results[1]
    with pytest.raises(UsageError, match="--jobs must be at least 1"):
        from harness.sweep import sweep_jobs

        sweep_jobs(build_parser().parse_args(["sweep", "--jobs", "0"]), "sim", 4)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("workload.users=12..16", ["12", "14", "16"]),
        ("workload.users=12..15", ["12", "14", "15"]),  # the midpoint 13.5 rounded half up
        ("workload.users=12..13", ["12", "13"]),  # a midpoint equal to an end runs once
        ("backends[0].network_latency=0.005..0.05", ["0.005", "0.0275", "0.05"]),
        ("run.duration=PT5S..PT1M", ["5", "32.5", "60"]),  # durations written back as seconds
    ],
)
def test_vary_runs_low_midpoint_and_high(text: str, values: list[str]) -> None:
    assert parse_vary(text).values == values


def test_several_varies_make_a_grid_of_levels_under_each_setting(tmp_path: Path) -> None:
    varies = ["workload.users=10..12", "backends[0].network_latency=0..0.02"]
    _, _, points = plan(BREAKER, [f"{TRIP}=PT10S,PT1M"], tmp_path, varies)
    assert len(points) == 2 * 3 * 3
    assert points[0].level == {"workload.users": "10", "backends[0].network_latency": "0"}
    assert points[8].level == {"workload.users": "12", "backends[0].network_latency": "0.02"}
    assert points[0].dir == tmp_path / "run-01" / "level-01" and points[9].dir == tmp_path / "run-02" / "level-01"
    assert points[4].overrides[-2:] == ["workload.users=11", "backends[0].network_latency=0.01"]
    assert all(p.settings == {TRIP: "PT1M"} for p in points[9:])


def test_a_varied_sweep_records_every_level_and_judges_each_setting_at_its_worst(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = [*_args(out), "--repeats", "2", "--vary", "workload.users=4..12", "--objective", "min:failure_rate"]
    assert main(args) == 0
    result = json.loads((out / "comparison.json").read_text())
    assert result["varied"] == {"workload.users": ["4", "8", "12"]}
    for point in result["points"]:
        levels = point["levels"]
        assert [level["level"] for level in levels] == [{"workload.users": u} for u in ("4", "8", "12")]
        assert all(Path(d).parent.name == f"level-{i:02d}" for i, lv in enumerate(levels, 1) for d in lv["run_dirs"])
        assert all(lv["seeds"] == [5, 6] for lv in levels)  # the same seeds at every level
        worst = max(levels, key=lambda lv: lv["metrics"]["requests.client_failure_rate"]["mean"])
        assert point["worst_level"] == worst["level"] and point["metrics"] == worst["metrics"]
        assert point["feasible"] == all(lv["feasible"] for lv in levels)
    rec = result["recommendation"]
    assert "ranked by its worst" in rec["why"] and rec["worst_level"]["workload.users"] in ("4", "8", "12")


@pytest.mark.e2e
def test_confirm_falls_back_when_the_pick_breaks_its_constraint_live(tmp_path: Path) -> None:
    # sweep-confirm-latency.yaml makes every simulated request of a setting take exactly the same time:
    # 0.2 s to the first token + 0.01 s per token, answers cut at max_tokens, so end_to_end_latency.p50 is
    # 0.59 s at max_tokens 40 and 0.29 s at 10 in every seed (no spread: the bound is the mean). A live run
    # can only be slower: the mock's sleeps never end early, and the real HTTP hops through the gateway add
    # wall time that time_scale 20 multiplies (about 3 ms of wall time per request is 60 ms of scenario
    # time). A limit of 0.60 s therefore holds for 40 tokens in the simulator (more goodput: the pick) and
    # breaks live, unless a request's two loopback hops took under 0.5 ms; 10 tokens keeps 0.3 s of room.
    scenario = str(ROOT / "tests" / "data" / "sweep-confirm-latency.yaml")
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "harness.cli", "sweep", "--scenario", scenario, "--out", str(out)]
    args += ["--set", "workload.mixes[0].max_tokens=40,10", "--repeats", "2", "--objective", "goodput"]
    args += ["--constraint", "end_to_end_latency.p50<=0.6", "--confirm", "1"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 3, done.stderr[-2000:]
    pick, fallback = "workload.mixes[0].max_tokens=40", "workload.mixes[0].max_tokens=10"
    [line] = [line for line in done.stdout.splitlines() if line.startswith("confirm: ") and "broke" in line]
    assert line.startswith(f"confirm: {pick} broke end_to_end_latency.p50<=0.6 live in 1 of 1 runs (")
    assert line.endswith(f"recommending {fallback}, which held in 1 of 1")
    result = json.loads((out / "comparison.json").read_text())
    confirmed = result["recommendation"]["confirm"]
    assert result["recommendation"]["label"] == pick and result["points"][0]["feasible"]
    assert (confirmed["confirmed"], confirmed["fallback"], confirmed["final"]) == (False, fallback, fallback)
    assert confirmed["final_setting"] == {"workload.mixes[0].max_tokens": "10"}
    assert result["points"][0]["live"]["constraints_met"] is False and result["points"][1]["live"]["constraints_met"]
    page = (out / "compare.html").read_text()
    assert f"Live confirmation: the simulator&#x27;s pick {pick} broke end_to_end_latency.p50&lt;=0.6 live" in page
