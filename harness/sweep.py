"""`harness sweep`: run every setting several times (simulated, or live with Locust), then recommend one.

`--set PATH=V1,V2,...` with several values makes PATH an axis of the sweep; several such `--set` make a grid;
a `--set` with one value applies to every run. The scenario's `sweep:` block adds axes the same way (a
`--set` of the same path replaces it). Values are split on commas at the top level of YAML flow syntax only:
commas inside `[...]`, `{...}` or quotes belong to the value, so

    --set 'gateway.circuit_breaker.failureCondition.statusCodeRanges=[{min: 429, max: 429}],[{min: 500, max: 599}]'

tries two values. Each point runs `--repeats` times (10 with the simulator, 1 live), repeat k with
`run.seed` = the point's own seed + k, so every point sees the same seeds (common random numbers, which
make the differences between points less noisy). Each run has its own directory, `OUT/run-01/seed-0005`.

Every headline number gets a mean and a 95 % CI per point (`harness.report.stats`); points that fail their
own `checks:` or a `--constraint` (on the means) are excluded; the recommendation is the best mean of the
`--objective`, with whether it is within noise of the runner-up and whether it sits at the edge of the swept
range (`harness.report.recommend`). OUT/comparison.json holds all of it, OUT/compare.html draws it, and
`--confirm` runs the recommended point once live to check the simulator's numbers against it.

    >>> split_values("PT10S,PT30S")
    ['PT10S', 'PT30S']
    >>> split_values("[{min: 429, max: 429}],[{min: 500, max: 599}]")
    ['[{min: 429, max: 429}]', '[{min: 500, max: 599}]']
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from harness.clock import RealClock
from harness.errors import HarnessError, UsageError
from harness.records import RECORDS_FILE
from harness.report.compare import write_comparison
from harness.report.html import json_safe
from harness.report.load import load_run
from harness.report.metrics import summarize
from harness.report.recommend import (
    PointRuns,
    RatedPoint,
    agreement,
    check_metrics,
    describe_agreement,
    known_metrics,
    rate,
    recommend,
)
from harness.scenario import Scenario, load_scenario
from harness.scenario.checks import Checks
from harness.scenario.objectives import Constraint, Objective, parse_constraint, parse_objective

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locustfiles" / "gateway.py"
ENGINES = ("sim", "live")
DEFAULT_REPEATS = {"sim": 10, "live": 1}
COMPARISON_FILE = "comparison.json"
CONFIRM_DIR = "confirm-live"
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
class Run:
    """One run of one point: its seed, its directory, and what came out."""

    seed: int
    run_dir: Path
    summary: dict[str, Any] | None = None
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Point:
    """One setting of the sweep: the overrides that make it, its own checks and seed, and its runs."""

    settings: dict[str, str]
    overrides: list[str]
    dir: Path
    checks: Checks = field(default_factory=Checks)  # the point's own `checks:`, overrides applied
    seed: int = 0  # the point's run.seed (overrides applied): repeat k runs with seed + k
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "as written"

    def repeat(self, repeats: int) -> None:
        """Plan `repeats` runs with seeds seed + 0 .. seed + repeats - 1."""
        self.runs = [Run(s, self.dir / f"seed-{s:04d}") for s in range(self.seed, self.seed + repeats)]


def plan(scenario_file: str, overrides: list[str], out: Path) -> tuple[Scenario, dict[str, list[str]], list[Point]]:
    """The grid: axes from `--set` lists and the scenario's sweep block; every point validated first."""
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
        point_scenario = load_scenario(scenario_file, point.overrides)  # a bad value fails here, first
        point.checks, point.seed = point_scenario.checks, point_scenario.run.seed
    return scenario, axes, points


def seeded(overrides: list[str], seed: int) -> list[str]:
    return [*overrides, f"run.seed={seed}"]


def locust_command(scenario_file: str, overrides: list[str], run_dir: Path) -> list[str]:
    """The headless Locust run of one point (-t from the scenario's duration and time scale)."""
    point_scenario = load_scenario(scenario_file, overrides)
    wall_s = math.ceil(point_scenario.run.duration / point_scenario.run.time_scale)
    workload = point_scenario.workload
    sets = [arg for o in overrides for arg in ("--set", o)]
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
        str(run_dir),
        "-u",
        str(workload.users),
        "-t",
        f"{wall_s}s",
    ]


def run_point(command: list[str], run: Run, timeout_s: float) -> None:
    """Run one Locust process in its own process group; stop it (and only it) if it overruns."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with (run.run_dir / "locust.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            run.exit_code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)  # Locust stops its embedded stack on SIGINT
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            run.problems.append(f"stopped after {timeout_s:.0f} s")
            run.exit_code = -1


def run_live(scenario_file: str, overrides: list[str], run: Run) -> None:
    """One headless Locust run; its summary when it produced records."""
    command = locust_command(scenario_file, seeded(overrides, run.seed), run.run_dir)
    wall_s = float(command[command.index("-t") + 1].rstrip("s"))
    run_point(command, run, timeout_s=wall_s * 3 + 90)
    if (run.run_dir / RECORDS_FILE).exists():
        run.summary = run_summary(run.run_dir)
    else:
        run.problems.append(f"no records (exit code {run.exit_code}; see {run.run_dir / 'locust.log'})")


def run_sim(scenario_file: str, overrides: list[str], run: Run) -> None:
    """One simulated run (instant, deterministic for its seed); writes summary.json next to its records."""
    from harness.sim import simulate  # the simulator loads only when a sweep uses it

    simulate(scenario_file, seeded(overrides, run.seed), run.run_dir)
    run.summary = run_summary(run.run_dir)
    (run.run_dir / "summary.json").write_text(json.dumps(run.summary, indent=2) + "\n", encoding="utf-8")


def run_summary(run_dir: Path) -> dict[str, Any]:
    """The summary the run stored in run.json as it ended (both engines do), else computed from its files."""
    info_path = run_dir / "run.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    summary = info.get("summary") if isinstance(info, dict) else None
    return summary if isinstance(summary, dict) else json_safe(summarize(load_run(run_dir)))


ENGINE_RUNNERS: dict[str, Callable[[str, list[str], Run], None]] = {"sim": run_sim, "live": run_live}


def default_out(scenario_file: str) -> Path:
    stamp = datetime.fromtimestamp(RealClock().wall(), UTC).strftime("%Y%m%dT%H%M%S")
    return Path("reports") / "sweeps" / f"{Path(scenario_file).stem}-{stamp}"


@dataclass
class SweepArgs:
    """What `harness sweep` was asked, checked before anything runs."""

    engine: str
    repeats: int
    objective: Objective
    constraints: list[Constraint]


def sweep_args(args: argparse.Namespace, scenario: Scenario) -> SweepArgs:
    engine = args.engine or "sim"
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}")
    repeats = args.repeats if args.repeats is not None else DEFAULT_REPEATS[engine]
    if repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if args.confirm and engine == "live":
        raise UsageError("--confirm checks a simulated sweep against one live run; this sweep already runs live")
    objective = parse_objective(args.objective or scenario.sweep.objective)
    constraints = args.constraints or scenario.sweep.constraints
    return SweepArgs(engine, repeats, objective, [parse_constraint(c) for c in constraints])


def list_metrics(scenario_file: str, overrides: list[str]) -> list[str]:
    """Every metric a sweep of this scenario can name: the numbers of one simulated run's summary."""
    first = []
    for override in overrides:
        path, _, raw = override.partition("=")
        first.append(f"{path.strip()}={split_values(raw)[0]}")
    with tempfile.TemporaryDirectory(prefix="harness-metrics-") as tmp:
        run = Run(load_scenario(scenario_file, first).run.seed, Path(tmp) / "run")
        run_sim(scenario_file, first, run)
    assert run.summary is not None
    return sorted(known_metrics([run.summary]))


def probe_metrics(scenario_file: str, point: Point, objective: Objective, constraints: list[Constraint]) -> None:
    """Before the sweep: one simulated run (in a temporary directory) checks the objective's and constraints'
    metric names, so a typo costs neither the runs nor a half-filled --out."""
    with tempfile.TemporaryDirectory(prefix="harness-probe-") as tmp:
        run = Run(point.seed, Path(tmp) / "run")
        try:
            run_sim(scenario_file, point.overrides, run)
        except HarnessError:
            return  # a scenario the simulator cannot run: the names are checked after the live runs
    if run.summary is not None:
        check_metrics(objective, constraints, [run.summary])


def point_runs(point: Point) -> PointRuns:
    problems = [f"seed {r.seed}: {p}" for r in point.runs for p in r.problems]
    return PointRuns(
        point.label,
        point.settings,
        [str(r.run_dir) for r in point.runs],
        [r.summary for r in point.runs],
        point.checks,
        problems,
    )


def comparison_payload(
    scenario_file: str,
    sweep: SweepArgs,
    axes: dict[str, list[str]],
    points: list[Point],
    rated: list[RatedPoint],
    recommendation: dict[str, Any] | None,
) -> dict[str, Any]:
    """The content of comparison.json."""
    return {
        "scenario": scenario_file,
        "engine": sweep.engine,
        "repeats": sweep.repeats,
        "objective": str(sweep.objective),
        "constraints": [str(c) for c in sweep.constraints],
        "method": {
            "seeds": "repeat k of a point runs with run.seed = the point's run.seed + k",
            "ci95": "Student t: t(0.975, n-1) * s / sqrt(n) over the runs that measured the number; null when n < 2",
            "feasible": "the means pass the point's own checks and every constraint",
            "within_noise": "the best's 95 % CI overlaps the runner-up's; null with one run per point",
            "at_edge": "the best has the smallest or largest value of an ordered (numeric or duration) axis",
        },
        "axes": axes,
        "points": [
            {
                "label": r.point.label,
                "settings": r.point.settings,
                "run_dirs": r.point.run_dirs,
                "seeds": [run.seed for run in p.runs],
                "feasible": r.feasible,
                "excluded_because": r.excluded_because,
                "problems": r.point.problems,
                "metrics": {
                    name: {"mean": est.mean, "ci95": est.ci95, "values": list(est.values)}
                    for name, est in r.metrics.items()
                },
            }
            for p, r in zip(points, rated, strict=True)
        ],
        "recommendation": recommendation,
    }


def confirm(scenario_file: str, point: Point, rated: RatedPoint, out: Path) -> dict[str, Any]:
    """Run the recommended point once live (the point's own seed) and set its numbers against the simulation."""
    run = Run(point.seed, out / CONFIRM_DIR)
    print(f"sweep: confirming {point.label} with one live run into {run.run_dir}", file=sys.stderr)
    run_live(scenario_file, point.overrides, run)
    result: dict[str, Any] = {"run_dir": str(run.run_dir), "seed": run.seed, "exit_code": run.exit_code}
    if run.summary is None:
        result["problems"] = run.problems
        return result
    rows = agreement(rated.metrics, run.summary)
    result["metrics"] = rows
    result["within_ci"] = sorted(n for n, r in rows.items() if r["within_ci"])
    result["outside_ci"] = sorted(n for n, r in rows.items() if r["within_ci"] is False)
    return result


def sweep_jobs(args: argparse.Namespace, engine: str, runs: int) -> int:
    """How many simulated runs go at once: --jobs, else one per CPU; live runs always one at a time (two
    Locust runs and their servers on one machine would measure each other)."""
    if engine != "sim":
        return 1
    jobs = args.jobs if getattr(args, "jobs", None) is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return max(1, min(jobs, runs))


def _simulate_in_child(scenario_file: str, overrides: list[str], seed: int, run_dir: Path) -> Run:
    run = Run(seed, run_dir)
    run_sim(scenario_file, overrides, run)
    return run


def run_in_processes(scenario_file: str, runs: list[tuple[Point, Run]], jobs: int) -> None:
    """Simulate the runs in `jobs` worker processes; each run is independent and seeded, so the results are
    the same as one after another. A run that fails stops the sweep with its error, as it would in turn."""
    with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
        pending = {
            pool.submit(_simulate_in_child, scenario_file, point.overrides, one.seed, one.run_dir): one
            for point, one in runs
        }
        bar = tqdm(total=len(pending), unit="run", file=sys.stderr, disable=None, desc=f"{jobs} processes")
        for done in concurrent.futures.as_completed(pending):
            result = done.result()
            one = pending[done]
            one.summary, one.problems = result.summary, result.problems
            bar.update(1)
        bar.close()


def run(args: argparse.Namespace) -> int:
    """`harness sweep --scenario FILE --set PATH=V1,V2 ... [--engine sim|live] [--repeats N] [--objective ...]`."""
    if args.list_metrics:
        print("\n".join(list_metrics(args.scenario, list(args.overrides))))
        return 0
    out = Path(args.out) if args.out else default_out(args.scenario)
    scenario, axes, points = plan(args.scenario, list(args.overrides), out)
    sweep = sweep_args(args, scenario)
    for point in points:
        point.repeat(sweep.repeats)
    taken = [r.run_dir for p in points for r in p.runs if (r.run_dir / RECORDS_FILE).exists()]
    if taken or (out / COMPARISON_FILE).exists():
        raise UsageError(f"{out} already holds a sweep; choose another --out")
    probe_metrics(args.scenario, points[0], sweep.objective, sweep.constraints)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(p, r) for p in points for r in p.runs]
    print(
        f"sweep: {len(points)} setting(s) x {sweep.repeats} run(s), {sweep.engine}, of {args.scenario} into {out}",
        file=sys.stderr,
    )
    jobs = sweep_jobs(args, sweep.engine, len(runs))
    if jobs > 1:
        run_in_processes(args.scenario, runs, jobs)
    else:
        runner = ENGINE_RUNNERS[sweep.engine]
        bar = tqdm(runs, unit="run", file=sys.stderr, disable=None)
        for point, one in bar:
            bar.set_description(f"{point.label[:50]} seed {one.seed}")
            runner(args.scenario, point.overrides, one)
    for point, one in runs:
        for problem in one.problems:
            print(f"sweep: {point.label}, seed {one.seed}: {problem}", file=sys.stderr)
    summaries = [r.summary for r in (one for _, one in runs) if r.summary is not None]
    if summaries:
        check_metrics(sweep.objective, sweep.constraints, summaries)
    rated = rate([point_runs(p) for p in points], sweep.objective, sweep.constraints)
    recommendation = recommend(rated, sweep.objective, axes)
    payload = comparison_payload(args.scenario, sweep, axes, points, rated, recommendation)
    _write_json(out / COMPARISON_FILE, payload)
    code = 0
    if recommendation is not None and args.confirm:
        best = next(i for i, r in enumerate(rated) if r.point.label == recommendation["label"])
        recommendation["confirm"] = confirm(args.scenario, points[best], rated[best], out)
        _write_json(out / COMPARISON_FILE, payload)
    shown: list[str | Path] = [p.runs[0].run_dir for p in points if p.runs[0].summary is not None]
    if len(shown) >= 2:
        why = recommendation["why"] if recommendation else ""
        print(write_comparison(shown, out, notes=[why] if why else [], sweep=payload, write_json=False))
    print(out / COMPARISON_FILE)
    if recommendation is None:
        print("no run produced records: nothing to choose from")
        return 1
    print(recommendation["why"])
    confirmed = recommendation.get("confirm")
    if confirmed is not None:
        code = _print_confirm(confirmed)
    return code


def _print_confirm(confirmed: dict[str, Any]) -> int:
    if "metrics" not in confirmed:
        print(f"confirm: the live run produced no records ({'; '.join(confirmed.get('problems', []))})")
        return 1
    rows = confirmed["metrics"]
    print(
        f"confirm: one live run ({confirmed['run_dir']}) against the simulated mean ± 95 % CI: "
        f"{len(confirmed['within_ci'])} of {len(rows)} numbers within the CI"
    )
    for name, row in rows.items():
        print(f"  {describe_agreement(name, row)}")
    return 0


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
