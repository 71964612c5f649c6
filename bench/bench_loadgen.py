"""Load-generator overhead: requests/s of one harness Locust process (full recording) vs a bare FastHttpUser.

Both send the same non-streaming chat request to one mock process (latency off, quota far above the load)
for the same time, alternating A/B, repeated; the mock is pinned to core 1, Locust to core 0.

    python bench/bench_loadgen.py [--seconds 10] [--repeats 3] [--users 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from served import Served, taskset

ROOT = Path(__file__).resolve().parents[1]
LOCUST = str(Path(sys.executable).with_name("locust"))

SCENARIO = """
run: {time_scale: 1, seed: 1}
backends:
  - name: bench
    deployments:
      gpt-4o:
        tpm: 100000000
        rpm_per_1k_tpm: 1000
        completion_tokens: 20
        latency: {ttft: 0, per_token: 0}
workload:
  apps: [{id: bench, client_profile: openai-python, send_token: false}]
  mixes: [{name: chat, deployment: gpt-4o, prompt_tokens: 100, max_tokens: 20}]
"""


def run_locust(locustfile: str, url: str, users: int, seconds: int, out: Path, extra: list[str], env: dict) -> float:
    stats = out / "stats"
    command = [*taskset("0"), LOCUST, "-f", locustfile, "--headless", "-u", str(users), "-r", str(users)]
    command += ["-t", f"{seconds}s", "--host", url, "--json-file", str(stats), "--only-summary", *extra]
    subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False, timeout=seconds + 60
    )
    entries = json.loads((out / "stats.json").read_text())
    requests = sum(e["num_requests"] for e in entries)
    span = max((e["last_request_timestamp"] or 0) for e in entries) - min((e["start_time"] or 0) for e in entries)
    return requests / span if span > 0 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=32)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from harness.scenario.workload import App
    from harness.workload.requests import RequestPlan

    plan = RequestPlan(App(id="bench"), "chat", "chat", "gpt-4o", 100, 20, False)
    work = Path(tempfile.mkdtemp(prefix="bench-loadgen-"))
    scenario = work / "bench.yaml"
    scenario.write_text(SCENARIO)
    env = {
        **os.environ,
        "BENCH_PATH": plan.path("2024-10-21", "deployments"),
        "BENCH_BODY": json.dumps(plan.body("deployments")),
    }
    mock = Served("mock", SCENARIO, "1", work / "mock")
    url = mock.url
    harness_rates: list[float] = []
    bare_rates: list[float] = []
    try:
        # warm-up: one short run of each
        for name, locustfile, extra in (
            ("bare", str(ROOT / "bench" / "bare_locustfile.py"), []),
            ("harness", str(ROOT / "locustfiles" / "gateway.py"), ["--scenario", str(scenario)]),
        ):
            (work / f"warm-{name}").mkdir()
            run_locust(
                locustfile,
                url,
                args.users,
                2,
                work / f"warm-{name}",
                [*extra, "--run-dir", str(work / "warm-run")] if name == "harness" else extra,
                env,
            )
        for repeat in range(args.repeats):
            for name in ("harness", "bare") if repeat % 2 == 0 else ("bare", "harness"):
                out = work / f"{name}-{repeat}"
                out.mkdir()
                if name == "harness":
                    extra = ["--scenario", str(scenario), "--run-dir", str(out / "run")]
                    harness_rates.append(
                        run_locust(
                            str(ROOT / "locustfiles" / "gateway.py"), url, args.users, args.seconds, out, extra, env
                        )
                    )
                else:
                    bare_rates.append(
                        run_locust(
                            str(ROOT / "bench" / "bare_locustfile.py"), url, args.users, args.seconds, out, [], env
                        )
                    )
        records = sum(1 for _ in (work / "harness-0/run/records.csv").open()) - 1
    finally:
        mock.stop()

    def fmt(rates: list[float]) -> str:
        return f"{statistics.median(rates):,.0f} req/s (min {min(rates):,.0f}, max {max(rates):,.0f})"

    ratios = [h / b for h, b in zip(harness_rates, bare_rates, strict=True)]
    print("Load generator overhead: one Locust process, non-streaming chat against one mock (latency off)")
    print(
        f"mock pinned to core 1, Locust pinned to core 0; {args.users} users, {args.seconds} s per run, "
        f"{args.repeats} repeats alternating A/B; machine shared with other work (noisy)"
    )
    print(f"  harness (full recording): {fmt(harness_rates)}")
    print(f"  bare FastHttpUser:        {fmt(bare_rates)}")
    print(
        f"  ratio harness/bare:       median {statistics.median(ratios):.0%} "
        f"(min {min(ratios):.0%}, max {max(ratios):.0%}); target >= 70 %"
    )
    print(f"  records written in the first harness run: {records}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
