"""Fidelity of the simulator: every shipped scenario run live and simulated, the same throttling picture?

    python bench/bench_sim_fidelity.py [--scenario scenarios/x.yaml ...] [--scales own,1] [--live-runs 1]
                                       [--seeds 10] [--set PATH=VALUE ...] [--markdown] [--out DIR [--reuse-live]]

For each scenario and each time scale (`own` is the scenario's own; 1 is real time, the reference, since
compression itself can distort: every wall millisecond of hop is k scenario milliseconds at scale k):
`--live-runs` headless Locust runs against the embedded stack (seeds: the shipped seed + 0, 1, ...), then
`harness calibrate` on the first of them, then `--seeds` simulated runs with those fits (the same seeds and
more), and the same simulated runs without calibration for comparison. Live mean vs calibrated simulated
mean, or the simulated mean over the live runs' own seeds (`paired`: the same seed makes the same draws in
both drivers, so this takes the seeds' luck out), against the targets: 429 rate within 0.3 points or 10 %
(whichever is larger), goodput within 3 %, each backend's token share within 2 points, breaker trips within
10 % (0.5 trips near zero), retries per request within 10 % (0.02 near zero). A miss whose live value still lies within the simulated seeds' range
is marked as noise: the live runs are few draws of a noisy quantity.
Live runs need a quiet machine: this is a bench command, not a CI test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.records import RECORDS_FILE
from harness.report.calibrate import calibrate, flow
from harness.report.load import load_run
from harness.report.summary.build import summarize
from harness.scenario import load_scenario
from harness.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "gateway.py"
# metric -> (relative tolerance, absolute tolerance): a difference within the larger of the two holds
TARGETS = {
    "rate_429": (0.10, 0.003),
    "goodput": (0.03, 0.0),
    "share": (0.0, 0.02),
    "trips": (0.10, 0.5),
    "retries": (0.10, 0.02),
}


def figures(summary: dict[str, Any]) -> dict[str, float]:
    """The compared numbers of one run, flat: rate_429, goodput, retries, trips, share:<backend>."""
    out = {
        "rate_429": summary["requests"]["rate_429"] or 0.0,
        "goodput": summary["throughput"]["goodput_tpm"] or 0.0,
        "retries": summary["retries"]["per_request"] or 0.0,
        "trips": float(sum(b["trips"] for b in (summary.get("breaker") or {}).values())),
    }
    backends = summary["backends"]
    if len(backends) > 1:  # one backend always has all the tokens
        for name, backend in backends.items():
            out[f"share:{name}"] = backend["token_share"] or 0.0
    return out


def run_figures(run_dir: Path) -> dict[str, float]:
    return figures(summarize(load_run(run_dir)))


def live(scenario: str, overrides: list[str], run_dir: Path) -> dict[str, float]:
    """One headless Locust run's figures."""
    sets = [arg for o in overrides for arg in ("--set", o)]
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    command += ["--scenario", scenario, *sets, "--run-dir", str(run_dir)]
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    return run_figures(run_dir)


def simulated(scenario: str, overrides: list[str], seeds: list[int], out: Path) -> list[dict[str, float]]:
    return [run_figures(simulate(scenario, [*overrides, f"run.seed={s}"], out / f"seed-{s}")) for s in seeds]


def target_met(key: str, live_value: float, sim_value: float) -> bool:
    """Whether a simulated value is within the target of the live one.

    >>> target_met("rate_429", 0.015, 0.0125), target_met("rate_429", 0.015, 0.011)
    (True, False)
    >>> target_met("goodput", 1000.0, 1025.0), target_met("share:ptu", 0.38, 0.355)
    (True, False)
    """
    relative, absolute = TARGETS[key.split(":")[0]]
    return abs(sim_value - live_value) <= max(relative * abs(live_value), absolute) + 1e-12


def compare(live_runs: list[dict[str, float]], sim: list[dict[str, float]]) -> list[tuple[str, str, str]]:
    """(metric, 'live mean vs sim mean [min-max]', verdict) per compared number: holds, noise or MISSES.

    The simulated runs start with the live runs' seeds: the simulated mean over those same seeds (`paired`)
    takes the seeds' own luck out of the comparison, and a number holds when either mean meets its target.
    """
    rows = []
    for key in sorted(set().union(*live_runs, *sim)):
        ref = statistics.mean(r.get(key, 0.0) for r in live_runs)
        values = [s.get(key, 0.0) for s in sim]
        mean, lo, hi = statistics.mean(values), min(values), max(values)
        paired = statistics.mean(values[: len(live_runs)])
        if key == "rate_429" or key.startswith("share:"):
            text = f"{ref:.2%} vs {mean:.2%} [{lo:.2%}-{hi:.2%}] ({(mean - ref) * 100:+.2f} pp; paired {paired:.2%})"
        else:
            f = ",.0f" if key == "goodput" else ".2f"
            change = f"{(mean - ref) / ref * 100:+.1f} %" if ref else f"{mean - ref:+.2f}"
            text = f"{ref:{f}} vs {mean:{f}} [{lo:{f}}-{hi:{f}}] ({change}; paired {paired:{f}})"
        held = target_met(key, ref, mean) or target_met(key, ref, paired)
        verdict = "holds" if held else ("noise" if lo <= ref <= hi else "MISSES")
        rows.append((key, text, verdict))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", action="append", help="scenario(s) to check (default: every shipped one)")
    parser.add_argument("--scales", default="own,1", help="time scales to run live at: own (the scenario's), or K")
    parser.add_argument("--live-runs", type=int, default=1, help="live runs per scenario and scale")
    parser.add_argument("--seeds", type=int, default=10, help="simulated runs per scenario and scale")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override, for every run")
    parser.add_argument("--markdown", action="store_true", help="also print one README table row per run pair")
    parser.add_argument("--out", help="keep the runs here")
    parser.add_argument(
        "--reuse-live",
        action="store_true",
        help="take the live runs already in --out (simulate again, run nothing live)",
    )
    args = parser.parse_args()
    scenarios = args.scenario or sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-sim-fidelity-"))
    print(
        f"bench_sim_fidelity: live mean of {args.live_runs} run(s) vs simulated mean [min-max] of {args.seeds} "
        "seeds, calibrated on the first live run"
    )
    misses = 0
    table = []
    for scenario in scenarios:
        name = Path(scenario).stem
        shipped = load_scenario(scenario, args.overrides)
        for scale_text in args.scales.split(","):
            scale = shipped.run.time_scale if scale_text.strip() == "own" else float(scale_text)
            here = out / name / f"scale-{scale:g}"
            base = [*args.overrides, f"run.time_scale={scale:g}"]
            seeds = [shipped.run.seed + i for i in range(max(args.seeds, args.live_runs))]
            lives = [
                run_figures(here / f"live-{s}")
                if args.reuse_live and (here / f"live-{s}" / RECORDS_FILE).exists()
                else live(scenario, [*base, f"run.seed={s}"], here / f"live-{s}")
                for s in seeds[: args.live_runs]
            ]
            if args.reuse_live:  # the simulated runs are made again, with the code as it is now
                shutil.rmtree(here / "sim", ignore_errors=True)
                shutil.rmtree(here / "sim-uncalibrated", ignore_errors=True)
            try:
                fits = calibrate(here / f"live-{seeds[0]}")
            except UsageError as exc:  # e.g. too few requests reached a backend to fit anything
                print(f"\n{name}: not calibrated: {exc}")
                fits = []
            calibrated = [f"{fit.path}={flow(fit.distribution)}" for fit in fits]
            sim = simulated(scenario, [*base, *calibrated], seeds[: args.seeds], here / "sim")
            plain = simulated(scenario, base, seeds[: args.seeds], here / "sim-uncalibrated")
            rows = compare(lives, sim)
            held = all(v != "MISSES" for _, _, v in rows)
            misses += not held
            print(f"\n{name} at time scale {scale:g}: {'holds' if held else 'MISSES'}")
            for fit in fits:
                print(f"  calibrated {fit.path} = {flow(fit.distribution)} ({fit.samples} samples)")
            for key, text, verdict in rows:
                print(f"  {key:<22} {text}   {verdict}")
            uncalibrated = dict((k, t) for k, t, _ in compare(lives, plain))
            print(f"  {'(uncalibrated 429s)':<22} {uncalibrated['rate_429']}")
            table.append(_markdown_row(name, scale, rows, held))
    if args.markdown:
        print("\n| scenario | scale | 429 rate | goodput | token share | trips | retries/request | holds |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(table))
    print(f"\nruns kept in {out}")
    return 0 if misses == 0 else 1


def _markdown_row(name: str, scale: float, rows: list[tuple[str, str, str]], held: bool) -> str:
    """One README table row: `live vs sim [min-max]` per number, the verdict where it is not `holds`."""

    def cell(key: str, paired: bool = False) -> str:
        text, verdict = next((t, v) for k, t, v in rows if k == key)
        main = text.split(" (")[0].replace("%", "")
        if paired:  # the simulated mean over the live runs' own seeds
            main += f" (paired {text.rsplit('paired ', 1)[1].rstrip(')').replace('%', '')})"
        return main + ("" if verdict == "holds" else f" ({verdict})")

    keys = [k for k, _, _ in rows]
    share = "; ".join(f"{k.split(':')[1]} {cell(k)}" for k in keys if k.startswith("share:")) or "one backend"
    parts = [cell("rate_429", paired=True) + " %", cell("goodput"), share, cell("trips"), cell("retries")]
    return f"| {name} | {scale:g} | " + " | ".join(parts) + f" | {'yes' if held else '**no**'} |"


if __name__ == "__main__":
    sys.exit(main())
