"""Speed of the simulator: simulated attempts per wall second, scenario seconds per wall second, peak RSS.

    python bench/bench_sim.py [--repeats 3] [--duration 3600]

Runs `breaker-trip-duration` for one scenario hour as shipped (bursts of 14 and 3 users) and with a steady
200 users (a busier pool, more attempts per scenario second), each in its own process pinned to core 0
(`taskset -c 0` when available), and prints the median with min-max of the repeats. The time is the
simulation itself (events, records and logs written), read from run.json's `wall_seconds`, after a
ten-second warm-up run in the same process (the tokenizer loaded, the prompt sizes counted once); the summary
computed afterwards is left out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = str(ROOT / "scenarios" / "breaker-trip-duration.yaml")

CHILD = """
import json, resource, sys
from harness.sim import simulate
simulate(sys.argv[1], [*sys.argv[3:], "run.duration=10"], sys.argv[2] + "-warm-up")
run_dir = simulate(sys.argv[1], sys.argv[3:], sys.argv[2])
info = json.loads((run_dir / "run.json").read_text())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": info["wall_seconds"], "attempts": info["attempts"], "events": info["events"],
                  "scenario_s": info["scenario_seconds"], "peak_mib": peak}))
"""


def one_run(overrides: list[str]) -> dict[str, float]:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    with tempfile.TemporaryDirectory() as tmp:
        command = [*pin, sys.executable, "-c", CHILD, SCENARIO, str(Path(tmp) / "run"), *overrides]
        out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3600.0)
    args = parser.parse_args()
    pinned = "pinned to core 0" if shutil.which("taskset") else "not pinned (no taskset)"
    print(f"bench_sim: breaker-trip-duration, {args.duration:g} scenario s, {args.repeats} repeats, {pinned}")
    print(
        f"{'variant':<12} {'attempts':>9} {'attempts/wall s':>22} {'scenario s/wall s':>22} {'wall s':>18} {'peak RSS MiB':>18}"
    )
    for label, users in (("as shipped", None), ("200 users", 200)):
        overrides = [f"run.duration={args.duration:g}"]
        if users:
            overrides.append(f"workload.stages=[{{duration: 60, users: {users}}}]")
        runs = [one_run(overrides) for _ in range(args.repeats)]
        rate = [r["attempts"] / r["wall"] for r in runs]
        speed = [r["scenario_s"] / r["wall"] for r in runs]
        print(
            f"{label:<12} {int(statistics.median(r['attempts'] for r in runs)):>9} {spread(rate, ',.0f'):>22} "
            f"{spread(speed, ',.0f'):>22} {spread([r['wall'] for r in runs], '.2f'):>18} "
            f"{spread([r['peak_mib'] for r in runs], '.0f'):>18}"
        )


if __name__ == "__main__":
    main()
