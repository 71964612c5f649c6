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
own `checks:` (on the means) or a `--constraint` (on the prediction bound of one more run, `--quantile`) are
excluded; the recommendation is the best mean of the `--objective`, with whether it is within noise of the
runner-up and whether it sits at the edge of the swept range (`harness.report.recommend`).

`--vary PATH=LOW..HIGH` names an input the user is unsure of: every setting runs at LOW, the midpoint and
HIGH of it (a grid over several), with the same seeds, into `OUT/run-01/level-01/seed-0005`; a setting is
feasible only at every level and is ranked by its worst level.

`--confirm N` runs the recommendation and the runner-up live, N times each with the simulated seeds, and
re-applies the constraints and checks to every live run (`harness.report.confirm`): when the pick breaks
one live, the best setting that held is recommended instead (or none) and the sweep exits with
CHECKS_FAILED_EXIT_CODE. OUT/comparison.json holds all of it, OUT/compare.html draws it.

    >>> split_values("PT10S,PT30S")
    ['PT10S', 'PT30S']
    >>> split_values("[{min: 429, max: 429}],[{min: 500, max: 599}]")
    ['[{min: 429, max: 429}]', '[{min: 500, max: 599}]']
    >>> parse_vary("workload.users=12..15").values, parse_vary("run.duration=PT1M..PT2M").values
    (['12', '14', '15'], ['60', '90', '120'])
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
from harness.errors import HarnessError, ScenarioError, UsageError
from harness.records import RECORDS_FILE, RUN_INFO_FILE
from harness.report.compare import write_comparison
from harness.report.confirm import LiveResult, LiveRun, confirm_line, decide, judge_live
from harness.report.load import load_run
from harness.report.recommend import (
    DEFAULT_QUANTILE,
    PointRuns,
    RatedPoint,
    agreement_over,
    check_metrics,
    describe_agreement,
    known_metrics,
    level_label,
    ranked,
    rate,
    recommend,
    worst_case,
)
from harness.report.summary.build import summarize
from harness.report.summary.load import run_info_summary
from harness.report.summary.schema import Summary, json_safe, safe_summary
from harness.report.sweep_schema import AgreementRow, Confirmation, Recommendation
from harness.scenario import Scenario, load_scenario
from harness.scenario.checks import Checks
from harness.scenario.common import parse_duration
from harness.scenario.handoff import OVERRIDES_ENV, SET_ENV_OPTION, overrides_env
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


@dataclass(frozen=True)
class Vary:
    """An input the user is unsure of (`--vary PATH=LOW..HIGH`): every setting runs at LOW, the midpoint, HIGH."""

    path: str
    low: float
    high: float
    integers: bool  # both ends whole numbers: the midpoint is rounded and every value written as an integer

    @property
    def values(self) -> list[str]:
        """The levels as override text (durations in seconds); a rounded midpoint equal to an end is left out."""
        mid = (self.low + self.high) / 2
        if self.integers:
            mid = math.floor(mid + 0.5)  # half up, not Python's half to even
        return list(dict.fromkeys(self._text(v) for v in (self.low, mid, self.high)))

    def _text(self, value: float) -> str:
        return str(int(value)) if self.integers else format(value, ".12g")


def parse_vary(text: str) -> Vary:
    """`PATH=LOW..HIGH` with numbers or ISO 8601 durations as ends; anything else is a one-line UsageError."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise UsageError(f"--vary '{text}': use PATH=LOW..HIGH, e.g. backends[0].network_latency=0.005..0.05")
    if not raw.strip():
        raise UsageError(f"--vary '{text}': empty range: use PATH=LOW..HIGH")
    if ".." not in raw:
        raise UsageError(f"--vary '{text}': a range is LOW..HIGH with two dots, e.g. {path}=1..3")
    low_text, _, high_text = (part.strip() for part in raw.partition(".."))
    (low, low_int), (high, high_int) = _range_end(text, low_text), _range_end(text, high_text)
    if low == high:
        raise UsageError(f"--vary '{text}': LOW equals HIGH, nothing varies (use --set {path}={low_text})")
    if low > high:
        raise UsageError(f"--vary '{text}': inverted range: LOW {low_text} is above HIGH {high_text}")
    return Vary(path, low, high, low_int and high_int)


def _range_end(text: str, end: str) -> tuple[float, bool]:
    """One end of a --vary range as a number, and whether it is a whole number (durations become seconds)."""
    if not end:
        raise UsageError(f"--vary '{text}': a range needs both ends, LOW..HIGH")
    try:
        return float(int(end)), True
    except ValueError:
        pass
    try:
        value = float(end)
    except ValueError:
        try:
            value = parse_duration(end)
        except ValueError:
            raise UsageError(f"--vary '{text}': '{end}' is not a number or a duration such as PT5S") from None
    if not math.isfinite(value):
        raise UsageError(f"--vary '{text}': '{end}' is not a finite number")
    return value, False


def vary_levels(varies: list[Vary]) -> list[dict[str, str]]:
    """Every combination of the varied inputs' levels (one empty level when nothing varies).

    >>> vary_levels([parse_vary("a=1..3"), parse_vary("b=PT1S..PT2S")])[:2]
    [{'a': '1', 'b': '1'}, {'a': '1', 'b': '1.5'}]
    """
    return [
        dict(zip((v.path for v in varies), combo, strict=True))
        for combo in itertools.product(*(v.values for v in varies))
    ]


def check_varies(scenario_file: str, texts: list[str], fixed: list[str], axes: dict[str, list[str]]) -> list[Vary]:
    """The --vary inputs, each refused when it is already a sweep axis or the scenario has no such field."""
    varies: list[Vary] = []
    for text in texts:
        vary = parse_vary(text)
        if vary.path in axes:
            raise UsageError(f"--vary '{text}': {vary.path} is already swept (--set with a list or the sweep block)")
        if vary.path in (v.path for v in varies):
            raise UsageError(f"--vary '{text}': {vary.path} is varied twice")
        for value in vary.values:
            try:
                load_scenario(scenario_file, [*fixed, f"{vary.path}={value}"])
            except ScenarioError as exc:
                raise UsageError(f"--vary '{text}': {exc}") from None
        varies.append(vary)
    return varies


@dataclass
class Run:
    """One run of one point: its seed, its directory, and what came out."""

    seed: int
    run_dir: Path
    summary: Summary | None = None
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
    level: dict[str, str] = field(default_factory=dict)  # the varied inputs' values (--vary) it runs at

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "as written"

    def repeat(self, repeats: int) -> None:
        """Plan `repeats` runs with seeds seed + 0 .. seed + repeats - 1."""
        self.runs = [Run(s, self.dir / f"seed-{s:04d}") for s in range(self.seed, self.seed + repeats)]


def plan(
    scenario_file: str, overrides: list[str], out: Path, vary: list[str] | None = None
) -> tuple[Scenario, dict[str, list[str]], list[Point]]:
    """The grid: axes from `--set` lists and the scenario's sweep block, each setting at every level of the
    `--vary` inputs (setting by setting); every point validated first."""
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
    varies = check_varies(scenario_file, vary or [], fixed, axes)
    levels = vary_levels(varies)
    points = []
    for i, combo in enumerate(itertools.product(*axes.values()), start=1):
        settings = dict(zip(axes, combo, strict=True))
        point_overrides = [*fixed, *(f"{p}={v}" for p, v in settings.items())]
        for j, level in enumerate(levels, start=1):
            where = out / f"run-{i:02d}" / (f"level-{j:02d}" if varies else "")
            level_overrides = [f"{p}={v}" for p, v in level.items()]
            points.append(Point(settings, [*point_overrides, *level_overrides], where, level=level))
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
    sets = [SET_ENV_OPTION, OVERRIDES_ENV] if overrides else []  # the values go by environment: they may be keys
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


def run_point(command: list[str], run: Run, timeout_s: float, overrides: list[str]) -> None:
    """Run one Locust process in its own process group; stop it (and only it) if it overruns. The overrides go
    in its environment (`locust_command` names the variable), never on its command line."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **overrides_env(overrides)}
    with (run.run_dir / "locust.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
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
    point_overrides = seeded(overrides, run.seed)
    command = locust_command(scenario_file, point_overrides, run.run_dir)
    wall_s = float(command[command.index("-t") + 1].rstrip("s"))
    run_point(command, run, timeout_s=wall_s * 3 + 90, overrides=point_overrides)
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


def run_summary(run_dir: Path) -> Summary:
    """The summary the run stored in run.json as it ended (both engines do; checked against the schema),
    else computed from its files."""
    stored = run_info_summary(run_dir / RUN_INFO_FILE)
    return stored if stored is not None else safe_summary(summarize(load_run(run_dir)))


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
    quantile: float = DEFAULT_QUANTILE
    confirm: int | None = None  # live runs per confirmed setting; None: no confirmation
    no_fail: bool = False


def sweep_args(args: argparse.Namespace, scenario: Scenario) -> SweepArgs:
    engine = args.engine or "sim"
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}")
    repeats = args.repeats if args.repeats is not None else DEFAULT_REPEATS[engine]
    if repeats < 1:
        raise UsageError("--repeats must be at least 1")
    confirm = getattr(args, "confirm", None)
    if confirm is not None and engine == "live":
        raise UsageError("--confirm checks a simulated sweep against live runs; this sweep already runs live")
    if confirm is not None and confirm < 1:
        raise UsageError("--confirm N must be at least 1")
    objective = parse_objective(args.objective or scenario.sweep.objective)
    constraints = args.constraints or scenario.sweep.constraints
    quantile = parse_quantile(getattr(args, "quantile", None))
    no_fail = bool(getattr(args, "no_fail", False))
    return SweepArgs(engine, repeats, objective, [parse_constraint(c) for c in constraints], quantile, confirm, no_fail)


def parse_quantile(text: str | None) -> float:
    """`--quantile`: the one-sided level of the prediction bound, strictly between 0.5 and 1 (default 0.95)."""
    if text is None:
        return DEFAULT_QUANTILE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.5 < value < 1:
        raise UsageError(f"--quantile '{text}': must be a number between 0.5 and 1 (exclusive), e.g. 0.95")
    return value


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
        point.level,
    )


@dataclass
class Candidate:
    """One setting of the sweep as judged: its verdict (the worst level's with --vary) and the point that ran
    the numbers it is judged by."""

    point: Point
    rated: RatedPoint
    levels: list[tuple[Point, RatedPoint]] = field(default_factory=list)


def judge(points: list[Point], sweep: SweepArgs) -> list[Candidate]:
    """Rate every point; with varied inputs, each setting becomes its worst level (`worst_case`)."""
    runs = [point_runs(p) for p in points]
    rated = rate(runs, sweep.objective, sweep.constraints, quantile=sweep.quantile)
    if not any(p.level for p in points):
        return [Candidate(p, r) for p, r in zip(points, rated, strict=True)]
    by_setting: dict[str, list[tuple[Point, RatedPoint]]] = {}
    for point, one in zip(points, rated, strict=True):
        by_setting.setdefault(point.label, []).append((point, one))
    candidates = []
    for levels in by_setting.values():
        verdict = worst_case([r for _, r in levels], sweep.objective)
        worst = next(p for p, r in levels if r.point is verdict.point)
        candidates.append(Candidate(worst, verdict, levels))
    return candidates


def point_entry(point: Point, rated: RatedPoint) -> dict[str, Any]:
    """A point's part of comparison.json: where it ran, its verdict, its margins and its numbers."""
    return {
        "label": rated.point.label,
        "settings": rated.point.settings,
        **({"level": point.level} if point.level else {}),
        "run_dirs": rated.point.run_dirs,
        "seeds": [run.seed for run in point.runs],
        "feasible": rated.feasible,
        "excluded_because": rated.excluded_because,
        "problems": rated.point.problems,
        "margin": {name: m.as_json() for name, m in rated.margins.items()},
        "seeds_breaking": {name: {"runs": m.breaking, "of": m.runs} for name, m in rated.margins.items()},
        "marginal": bool(rated.marginal),
        "metrics": {
            name: {"mean": est.mean, "ci95": est.ci95, "values": list(est.values)}
            for name, est in rated.metrics.items()
        },
    }


def candidate_entry(candidate: Candidate) -> dict[str, Any]:
    entry = point_entry(candidate.point, candidate.rated)
    if candidate.levels:
        entry.pop("level")
        entry["feasible_at_every_level"] = candidate.rated.feasible
        entry["worst_level"] = candidate.point.level
        entry["levels"] = [point_entry(p, r) for p, r in candidate.levels]
    return entry


def comparison_payload(
    scenario_file: str,
    sweep: SweepArgs,
    axes: dict[str, list[str]],
    candidates: list[Candidate],
    recommendation: Recommendation | None,
) -> dict[str, Any]:
    """The content of comparison.json."""
    q = f"{sweep.quantile:g}"
    varied = {p: v for c in candidates[:1] for p, v in _level_values(c).items()}
    return {
        "scenario": scenario_file,
        "engine": sweep.engine,
        "repeats": sweep.repeats,
        "objective": str(sweep.objective),
        "constraints": [str(c) for c in sweep.constraints],
        "method": {
            "seeds": "repeat k of a point runs with run.seed = the point's run.seed + k",
            "ci95": "Student t: t(0.975, n-1) * s / sqrt(n) over the runs that measured the number; null when n < 2",
            "quantile": sweep.quantile,
            "bound": f"one-sided prediction bound of one more run: mean ± t({q}, n-1) * s * sqrt(1 + 1/n), upper "
            "for <= and <, lower for >= and >; with one run, that run's value (margin unknown, null)",
            "margin": "per constraint: signed distance from the bound to the limit, in the metric's units; "
            "positive = room",
            "seeds_breaking": "per constraint: how many of the runs broke the limit on their own",
            "marginal": "the mean meets a constraint but the bound does not; a marginal point is not feasible",
            "feasible": "the means pass the point's own checks and the bound meets every constraint",
            "varied": "with --vary: a setting runs at LOW, midpoint, HIGH of each varied input (a grid); it is "
            "feasible only at every level, and its numbers and rank are its worst level's objective",
            "within_noise": "the best's 95 % CI overlaps the runner-up's; null with one run per point",
            "at_edge": "the best has the smallest or largest value of an ordered (numeric or duration) axis",
            "confirm": "--confirm N: the best and the runner-up run live N times each (seeds as simulated); "
            "a setting holds when every live run meets its checks and every constraint",
        },
        "axes": axes,
        **({"varied": varied} if varied else {}),
        "points": [candidate_entry(c) for c in candidates],
        "recommendation": recommendation,
    }


def _level_values(candidate: Candidate) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for point, _ in candidate.levels:
        for path, value in point.level.items():
            values.setdefault(path, [])
            if value not in values[path]:
                values[path].append(value)
    return values


def confirm_runs(scenario_file: str, point: Point, times: int, out: Path) -> list[LiveRun]:
    """Run one setting live `times` times (seeds as its simulated runs) into OUT/confirm-live/<its dir>/."""
    base = out / CONFIRM_DIR / point.dir.relative_to(out)
    runs = [Run(seed, base / f"seed-{seed:04d}") for seed in range(point.seed, point.seed + times)]
    for run in runs:
        print(f"sweep: confirming {point.label} live, seed {run.seed}, into {run.run_dir}", file=sys.stderr)
        run_live(scenario_file, point.overrides, run)
    return [LiveRun(str(r.run_dir), r.seed, r.summary, r.problems, r.exit_code) for r in runs]


def confirm(
    scenario_file: str, candidates: list[Candidate], sweep: SweepArgs, out: Path, times: int
) -> tuple[Confirmation, int]:
    """Run the best and the runner-up live, judge them, decide; comparison.json's `confirm` and the exit code."""
    order = ranked([c.rated for c in candidates], sweep.objective)[:2]
    chosen = [next(c for c in candidates if c.rated is r) for r in order]
    live: dict[str, LiveResult] = {}
    agreements: dict[str, dict[str, AgreementRow]] = {}  # per setting: simulated vs live, number by number
    for candidate in chosen:
        label = candidate.rated.point.label
        runs = confirm_runs(scenario_file, candidate.point, times, out)
        live[label] = judge_live(label, runs, sweep.constraints, candidate.point.checks, sweep.objective.metric)
        measured = [r.summary for r in runs if r.summary is not None]
        agreements[label] = agreement_over(candidate.rated.metrics, measured) if measured else {}
    drawn = {label: {name: row["live_values"] for name, row in rows.items()} for label, rows in agreements.items()}
    labels = [c.rated.point.label for c in chosen]
    decision = decide(labels, live, sweep.no_fail)
    pick = live[labels[0]]
    rows = agreements[labels[0]]
    result: Confirmation = {
        "runs_per_setting": times,
        "pick": labels[0],
        "confirmed": decision.confirmed,
        "final": decision.final,
        "fallback": decision.fallback,
        "final_setting": next((c.rated.point.settings for c in chosen if c.rated.point.label == decision.final), None),
        "exit_code": decision.exit_code,
        "line": confirm_line(labels, live, decision),
        "held_runs": {label: [r.held_runs, len(r.runs)] for label, r in live.items()},
        "broken": [str(c.constraint) for c in pick.broken()],
        "candidates": {label: {**r.as_json(), "metrics": drawn[label]} for label, r in live.items()},
        "metrics": rows,
        "within_ci": sorted(n for n, r in rows.items() if r["within_ci"]),
        "outside_ci": sorted(n for n, r in rows.items() if r["within_ci"] is False),
    }
    return result, decision.exit_code


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
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a directory")
    scenario, axes, points = plan(args.scenario, list(args.overrides), out, list(getattr(args, "vary", None) or []))
    sweep = sweep_args(args, scenario)
    for point in points:
        point.repeat(sweep.repeats)
    taken = [r.run_dir for p in points for r in p.runs if (r.run_dir / RECORDS_FILE).exists()]
    if taken or (out / COMPARISON_FILE).exists():
        raise UsageError(f"{out} already holds a sweep; choose another --out")
    probe_metrics(args.scenario, points[0], sweep.objective, sweep.constraints)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(p, r) for p in points for r in p.runs]
    levels = len({level_label(p.level) for p in points})
    at = f" at {levels} levels of the varied inputs" if levels > 1 else ""
    print(
        f"sweep: {len(points) // levels} setting(s){at} x {sweep.repeats} run(s), {sweep.engine}, "
        f"of {args.scenario} into {out}",
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
    candidates = judge(points, sweep)
    recommendation = recommend([c.rated for c in candidates], sweep.objective, axes)
    payload = comparison_payload(args.scenario, sweep, axes, candidates, recommendation)
    _write_json(out / COMPARISON_FILE, payload)
    code = 0
    if recommendation is not None and sweep.confirm is not None:
        recommendation["confirm"], code = confirm(args.scenario, candidates, sweep, out, sweep.confirm)
        for entry in payload["points"]:
            entry["live"] = recommendation["confirm"]["candidates"].get(entry["label"])
        _write_json(out / COMPARISON_FILE, payload)
    shown: list[str | Path] = [c.point.runs[0].run_dir for c in candidates if c.point.runs[0].summary is not None]
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
        _print_confirm(confirmed)
    return code


def _print_confirm(confirmed: Confirmation) -> None:
    print(confirmed["line"])
    rows = confirmed["metrics"]
    if rows:
        runs = confirmed["held_runs"][confirmed["pick"]][1]
        print(
            f"confirm: {confirmed['pick']}: the mean of {runs} live run(s) against the simulated mean ± 95 % CI: "
            f"{len(confirmed['within_ci'])} of {len(rows)} numbers within the CI"
        )
    for name, row in rows.items():
        print(f"  {describe_agreement(name, row)}")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
