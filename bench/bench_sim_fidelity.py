"""Fidelity of the simulator: every shipped scenario simulated and run live, same throttling picture?

    python bench/bench_sim_fidelity.py [--seeds 5] [--scenario scenarios/x.yaml ...] [--out DIR]

For each scenario: one live run (headless Locust against the embedded stack, at the scenario's own time
scale and duration, seed as shipped) and `--seeds` simulated runs (seeds 0..n-1 added to the shipped seed).
A live run's loopback hops are not free: at time scale k, each wall millisecond the gateway and the mock
spend on a request is k scenario milliseconds, during which a gateway has not yet seen a 429. The bench
measures that hop in the live run (median of the gateway's minus the backend's duration per request,
halved) and gives it to the simulated runs as extra `network_latency`, so both model the same network.
The live run is one draw; the simulated mean is compared with it, and the simulated spread (min-max over
seeds) is printed beside it so a miss can be told from noise. Targets: 429 rate within 2 points, goodput
within 5 %, each backend's token share within 3 points, breaker trips within 15 %, retries per request
within 10 % (absolute slack of 0.5 trips and 0.02 retries per request where the figures are near zero).
Live runs need a quiet machine: this is a bench command, not a CI test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.report.load import load_run
from harness.report.metrics import summarize
from harness.scenario import load_scenario
from harness.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "gateway.py"


def figures(summary: dict[str, Any]) -> dict[str, float]:
    """The compared numbers of one run, flat: rate_429, goodput, retries, trips, share:<backend>."""
    out = {
        "rate_429": summary["requests"]["rate_429"] or 0.0,
        "goodput": summary["throughput"]["goodput_tpm"] or 0.0,
        "retries": summary["retries"]["per_request"] or 0.0,
        "trips": float(sum(b["trips"] for b in (summary.get("breaker") or {}).values())),
    }
    for name, backend in summary["backends"].items():
        out[f"share:{name}"] = backend["token_share"] or 0.0
    return out


def live(scenario: str, run_dir: Path) -> tuple[dict[str, float], float]:
    """The live run's figures and its own one-way gateway-to-backend hop (scenario s)."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    command += ["--scenario", scenario, "--run-dir", str(run_dir)]
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    run = load_run(run_dir)
    return figures(summarize(run)), hop_s(run)


def hop_s(run: Any) -> float:
    """Half the median time a request spent between gateway and backend, beyond the backend's own time."""
    if run.gateway is None or run.backend is None:
        return 0.0
    both = run.gateway[["gateway_request_id", "duration_s"]].merge(
        run.backend[["gateway_request_id", "duration_s"]], on="gateway_request_id", suffixes=("_gw", "_be")
    )
    if both.empty:
        return 0.0
    return max(0.0, float((both["duration_s_gw"] - both["duration_s_be"]).median()) / 2)


def simulated(scenario: str, seeds: int, hop: float, out: Path) -> list[dict[str, float]]:
    loaded = load_scenario(scenario)
    latency = [f"backends[{i}].network_latency={b.network_latency + hop:.6f}" for i, b in enumerate(loaded.backends)]
    runs = []
    for i in range(seeds):
        run_dir = simulate(scenario, [f"run.seed={loaded.run.seed + i}", *latency], out / f"sim-{i}")
        runs.append(figures(summarize(load_run(run_dir))))
    return runs


def verdicts(live_f: dict[str, float], sim: list[dict[str, float]]) -> list[tuple[str, str, bool]]:
    """(metric, 'live vs sim mean [min-max]', within target) per compared number; a number outside the
    target whose live value still lies within the simulated seeds' range is marked as within noise."""
    rows = []
    keys = sorted(set(live_f) | set().union(*sim))
    for key in keys:
        values = [s.get(key, 0.0) for s in sim]
        mean, lo, hi, ref = statistics.mean(values), min(values), max(values), live_f.get(key, 0.0)
        if key == "rate_429" or key.startswith("share:"):
            limit = 0.02 if key == "rate_429" else 0.03
            ok = abs(mean - ref) <= limit
            text = f"{ref:.1%} vs {mean:.1%} [{lo:.1%}-{hi:.1%}] ({(mean - ref) * 100:+.2f} pp)"
        else:
            tolerance = {"goodput": (0.05, 0.0), "trips": (0.15, 0.5), "retries": (0.10, 0.02)}[key]
            ok = abs(mean - ref) <= max(tolerance[0] * abs(ref), tolerance[1])
            change = f"{(mean - ref) / ref * 100:+.1f} %" if ref else f"{mean - ref:+.2f}"
            text = f"{ref:,.2f} vs {mean:,.2f} [{lo:,.2f}-{hi:,.2f}] ({change})"
        if not ok and lo <= ref <= hi:
            text += "  (outside target, but within the simulated seeds' spread: noise)"
            ok = True
        rows.append((key, text, ok))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", help="scenario(s) to check (default: every shipped one)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", help="keep the runs here")
    args = parser.parse_args()
    scenarios = args.scenario or sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml"))
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-sim-fidelity-"))
    print(f"bench_sim_fidelity: live (one run, shipped seed) vs simulated mean [min-max] of {args.seeds} seeds")
    misses = 0
    for scenario in scenarios:
        name = Path(scenario).stem
        live_f, hop = live(scenario, out / name / "live")
        sim = simulated(scenario, args.seeds, hop, out / name)
        rows = verdicts(live_f, sim)
        held = all(ok for _, _, ok in rows)
        misses += not held
        print(f"\n{name}: {'holds' if held else 'MISSES'} (live hop gateway-backend {hop * 1000:.1f} ms one way)")
        for key, text, ok in rows:
            print(f"  {key:<22} {text}{'' if ok else '   <- outside target'}")
    print(f"\nruns kept in {out}")
    return 0 if misses == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
