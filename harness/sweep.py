"""`harness sweep`: one headless, time-compressed Locust run per setting, then a comparison naming the best.

`--set PATH=V1,V2,...` with several values makes PATH an axis of the sweep; several such `--set` make a grid;
a `--set` with one value applies to every run. The scenario's `sweep:` block adds axes the same way (a
`--set` of the same path replaces it). Values are split on commas at the top level of YAML flow syntax only:
commas inside `[...]`, `{...}` or quotes belong to the value, so

    --set 'gateway.circuit_breaker.failureCondition.statusCodeRanges=[{min: 429, max: 429}],[{min: 500, max: 599}]'

tries two values. The best setting is the one with the most goodput (or least failure rate, or lowest p95
end-to-end latency: `--objective`) among those whose run passed its own `checks:` (the same verdict as the
run's exit code, from `harness.report.checks.evaluate_checks`).

    >>> split_values("PT10S,PT30S")
    ['PT10S', 'PT30S']
    >>> split_values("[{min: 429, max: 429}],[{min: 500, max: 599}]")
    ['[{min: 429, max: 429}]', '[{min: 500, max: 599}]']
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from harness.clock import RealClock
from harness.errors import UsageError
from harness.report.checks import evaluate_checks
from harness.report.compare import write_comparison
from harness.report.load import load_run
from harness.report.metrics import summarize
from harness.scenario import Scenario, load_scenario
from harness.scenario.checks import Checks

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locustfiles" / "gateway.py"
OBJECTIVES = ("goodput", "failure_rate", "p95_latency")
_OPENERS, _CLOSERS = "[{(", "]})"


def split_values(text: str) -> list[str]:
    """Split a --set value list on top-level commas (not inside brackets, braces or quotes)."""
    values: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    if depth != 0 or quote:
        raise UsageError(f"unbalanced brackets or quotes in '{text}'")
    if any(v == "" for v in values):
        raise UsageError(f"empty value in '{text}' (two commas in a row?)")
    return values


def yaml_text(value: Any) -> str:
    """A value from the scenario's sweep block as --set text (YAML flow style).

    >>> yaml_text([{"min": 429, "max": 429}]), yaml_text("PT10S")
    ('[{max: 429, min: 429}]', 'PT10S')
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("...").strip()


@dataclass
class Point:
    """One run of the sweep: the overrides that make it, where it ran, and what came out."""

    settings: dict[str, str]
    overrides: list[str]
    run_dir: Path
    checks: Checks = field(default_factory=Checks)  # the point's own `checks:`, overrides applied
    summary: dict[str, Any] | None = None
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "as written"


def plan(scenario_file: str, overrides: list[str], out: Path) -> tuple[Scenario, list[Point]]:
    """The grid of runs: axes from `--set` lists and the scenario's sweep block; every point validated first."""
    base = load_scenario(scenario_file)
    axes: dict[str, list[str]] = {p: [yaml_text(v) for v in vs] for p, vs in base.sweep.parameters.items()}
    fixed: list[str] = []
    for override in overrides:
        if "=" not in override:
            raise UsageError(f"--set '{override}' must look like path=value")
        path, _, raw = override.partition("=")
        values = split_values(raw)
        if len(values) > 1:
            axes[path.strip()] = values
        else:
            axes.pop(path.strip(), None)
            fixed.append(f"{path.strip()}={values[0]}")
    if not axes:
        raise UsageError("nothing to sweep: give --set PATH=V1,V2 or a sweep: block in the scenario")
    points = []
    for i, combo in enumerate(itertools.product(*axes.values()), start=1):
        settings = dict(zip(axes, combo, strict=True))
        point_overrides = [*fixed, *(f"{p}={v}" for p, v in settings.items())]
        points.append(Point(settings, point_overrides, out / f"run-{i:02d}"))
    scenario = load_scenario(scenario_file, fixed)
    for point in points:
        point.checks = load_scenario(scenario_file, point.overrides).checks  # a bad value fails here, first
    return scenario, points


def locust_command(scenario_file: str, point: Point, scenario: Scenario) -> list[str]:
    """The headless Locust run of one point (-t from the scenario's duration and time scale)."""
    point_scenario = load_scenario(scenario_file, point.overrides)
    wall_s = math.ceil(point_scenario.run.duration / point_scenario.run.time_scale)
    workload = point_scenario.workload
    sets = [arg for o in point.overrides for arg in ("--set", o)]
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--scenario",
        scenario_file,
        *sets,
        "--run-dir",
        str(point.run_dir),
        "-u",
        str(workload.users),
        "-r",
        f"{workload.spawn_rate:g}",
        "-t",
        f"{wall_s}s",
    ]


def run_point(command: list[str], point: Point, timeout_s: float) -> None:
    """Run one Locust process in its own process group; stop it (and only it) if it overruns."""
    point.run_dir.mkdir(parents=True, exist_ok=True)
    with (point.run_dir / "locust.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            point.exit_code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)  # Locust stops its embedded stack on SIGINT
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            point.problems.append(f"stopped after {timeout_s:.0f} s")
            point.exit_code = -1


def choose_best(points: list[Point], objective: str = "goodput") -> tuple[int | None, str]:
    """Index of the best point for the objective among those passing their checks, and why, in one paragraph."""
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}")
    rated = [(i, p, _figures(p.summary)) for i, p in enumerate(points) if p.summary is not None]
    if not rated:
        return None, "no run produced records: nothing to choose from"
    feasible: list[tuple[int, Point, dict[str, Any], list[str]]] = []
    excluded: list[tuple[int, Point, dict[str, Any], list[str]]] = []
    for i, p, f in rated:
        broken = [r.describe() for r in evaluate_checks(p.checks, p.summary or {}) if not r.passed]
        (excluded if broken else feasible).append((i, p, f, broken))
    pool = feasible or excluded
    key = {
        "goodput": lambda e: (-e[2]["goodput"], _or_inf(e[2]["failure_rate"])),
        "failure_rate": lambda e: (_or_inf(e[2]["failure_rate"]), -e[2]["goodput"]),
        "p95_latency": lambda e: (_or_inf(e[2]["p95"]), -e[2]["goodput"]),
    }[objective]
    ranked = sorted(pool, key=key)
    best_i, best, best_f, _ = ranked[0]
    words = {"goodput": "the most goodput", "failure_rate": "the lowest failure rate", "p95_latency": "the lowest p95"}
    why = f"Best for {objective}: {best.label}: {words[objective]} ({_describe(best_f)})"
    if len(ranked) > 1:
        why += f"; next: {ranked[1][1].label} ({_describe(ranked[1][2])})"
    limits = best.checks.limits()
    if limits:
        why += f"; checks: {', '.join(f'{k} {v:g}' for k, v in limits.items())}"
    if not feasible:
        why += ". No setting met the checks: this is the least bad one"
    for _, p, _, broken in excluded if feasible else []:
        why += f"; excluded {p.label} ({'; '.join(broken)})"
    return best_i, why + "."


def _figures(summary: dict[str, Any] | None) -> dict[str, Any]:
    assert summary is not None
    return {
        "goodput": summary["throughput"]["goodput_tpm"] or 0.0,
        "failure_rate": summary["requests"]["client_failure_rate"],
        "p95": summary["end_to_end_latency"]["p95"],
        "rate_429": summary["requests"]["rate_429"],
    }


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else value


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _describe(f: dict[str, Any]) -> str:
    return (
        f"goodput {f['goodput']:,.0f} tokens/min, "
        f"failure rate {'n/a' if f['failure_rate'] is None else format(f['failure_rate'], '.1%')}, "
        f"429 rate {f['rate_429']:.1%}, p95 end-to-end {_seconds(f['p95'])}"
    )


def default_out(scenario_file: str) -> Path:
    stamp = datetime.fromtimestamp(RealClock().wall(), UTC).strftime("%Y%m%dT%H%M%S")
    return Path("reports") / "sweeps" / f"{Path(scenario_file).stem}-{stamp}"


def run(args: argparse.Namespace) -> int:
    """`harness sweep --scenario FILE --set PATH=V1,V2 ... [--out DIR] [--objective goodput]`."""
    out = Path(args.out) if args.out else default_out(args.scenario)
    scenario, points = plan(args.scenario, list(args.overrides), out)
    objective = args.objective or scenario.sweep.objective
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"sweep: {len(points)} run(s) of {args.scenario} into {out}", file=sys.stderr)
    bar = tqdm(points, unit="run", file=sys.stderr, disable=None)
    for point in bar:
        bar.set_description(point.label[:60])
        command = locust_command(args.scenario, point, scenario)
        wall_s = float(command[command.index("-t") + 1].rstrip("s"))
        run_point(command, point, timeout_s=wall_s * 3 + 90)
        if (point.run_dir / "records.csv").exists():
            point.summary = summarize(load_run(point.run_dir))
        else:
            point.problems.append(f"no records (exit code {point.exit_code}; see {point.run_dir / 'locust.log'})")
    for point in points:
        for problem in point.problems:
            print(f"sweep: {point.label}: {problem}", file=sys.stderr)
    best, why = choose_best(points, objective)
    done: list[str | Path] = [p.run_dir for p in points if p.summary is not None]
    if len(done) >= 2:
        print(write_comparison(done, out / "comparison", notes=[why]))
    print(why)
    return 0 if best is not None else 1
