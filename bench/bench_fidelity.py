"""Fidelity of time compression: the same scenario at scale 1 and at higher scales, same throttling picture?

Runs `harness sweep --engine live` over run.time_scale (scale 1 first, as the reference), then for each compressed run
prints the 429 rate and goodput differences against scale 1; compression holds when the 429 rate is within
2 percentage points and goodput within 5 %. The scale-1 run lasts --duration wall seconds: this is a manual
or bench command, not a CI test.

    python bench/bench_fidelity.py --duration 300 --scales 10,20,50
    python bench/bench_fidelity.py --scenario scenarios/token-limit-per-app.yaml --duration 120 --scales 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness.cli import main as harness
from harness.report.compare import fidelity

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "breaker-trip-duration.yaml"))
    parser.add_argument("--duration", type=float, default=300.0, help="scenario seconds of every run")
    parser.add_argument("--scales", default="10,20,50", help="compressed time scales to check against scale 1")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra scenario overrides")
    parser.add_argument("--out", help="keep the runs here")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-fidelity-"))
    scales = ["1", *args.scales.split(",")]
    sets = [f"run.time_scale={','.join(scales)}", f"run.duration={args.duration:g}", *args.overrides]
    sweep = ["sweep", "--engine", "live", "--scenario", args.scenario, *[a for s in sets for a in ("--set", s)]]
    code = harness([*sweep, "--out", str(out)])
    result = json.loads((out / "comparison.json").read_text())
    by_scale = {str(p["settings"]["run.time_scale"]): _summary(p["metrics"]) for p in result["points"]}
    reference = by_scale.get("1")
    if reference is None:
        print("the scale-1 run produced no records", file=sys.stderr)
        return 1
    print(f"scenario {args.scenario}, {args.duration:g} scenario s per run; machine shared with other work")
    print(
        f"scale 1: 429 rate {reference['requests']['rate_429']:.1%}, goodput {reference['throughput']['goodput_tpm']:,.0f}"
    )
    highest = 1.0
    for scale in scales[1:]:
        summary = by_scale.get(scale)
        if summary is None:
            print(f"scale {scale}: no records")
            continue
        f = fidelity(reference, summary)
        print(
            f"scale {scale}: 429 rate {summary['requests']['rate_429']:.1%} ({f['rate_429_diff_pp']:.2f} pp), "
            f"goodput {summary['throughput']['goodput_tpm']:,.0f} ({f['goodput_diff_pct']:.1f} %): "
            f"{'holds' if f['holds'] else 'does NOT hold'}"
        )
        if f["holds"]:
            highest = max(highest, float(scale))
    print(f"highest scale that holds: {highest:g}")
    return code


def _summary(metrics: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float | None]] | None:
    """The two numbers `fidelity` reads, from a live point's one run (None when it produced no records)."""
    rate_429, goodput = metrics["requests.rate_429"]["mean"], metrics["throughput.goodput_tpm"]["mean"]
    if rate_429 is None:
        return None
    return {"requests": {"rate_429": rate_429}, "throughput": {"goodput_tpm": goodput}}


if __name__ == "__main__":
    sys.exit(main())
