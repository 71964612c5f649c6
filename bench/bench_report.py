"""Time and peak memory of `harness report` on a large generated run (default 1,000,000 records).

Generates a run directory (records.csv plus gateway and backend logs of the same size, scenario.yaml,
run.json), then runs `harness report` on it in a fresh process per repeat, pinned to one core, and prints
the median wall time and peak RSS with min-max. Targets: < 60 s and < 2 GiB.

    python bench/bench_report.py                     # 1,000,000 rows, 3 repeats
    python bench/bench_report.py --rows 200000 --repeats 5 --keep /tmp/bigrun
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
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import yaml

from harness.records import RECORD_COLUMNS

T0 = 1_700_000_000.0
SCENARIO = {
    "run": {"duration": 3600, "time_scale": 10},
    "backends": [
        {"name": "aoai-0", "deployments": {"gpt-4o": {"tpm": 450000}}},
        {"name": "aoai-1", "deployments": {"gpt-4o": {"tpm": 450000}}},
        {"name": "aoai-2", "deployments": {"gpt-4o": {"ptu": 100}}},
    ],
    "gateway": {"token_limit": {"counter-key": "appid", "tokens-per-minute": 200000}},
}
# The child measures itself: wall time of the whole command and its own peak RSS. VmHWM belongs to the
# child's own address space; ru_maxrss would not do, because Linux carries the parent's RSS at fork time
# (here: the generator's gigabytes) over into the child's ru_maxrss across exec.
CHILD = """
import json, sys, time
start = time.perf_counter()
from harness.cli import main
code = main(["report", sys.argv[1], "--out", sys.argv[2]])
seconds = time.perf_counter() - start
hwm_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "seconds": seconds, "peak_rss_mib": hwm_kib / 1024}))
"""


def generate(run_dir: Path, rows: int, seed: int = 1) -> None:
    """A run with a realistic mix of outcomes, retries, streams and max_tokens; vectorized, not per row."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    t = T0 + np.sort(rng.uniform(0, 3600, rows))
    # about 1.4 attempts per logical request: consecutive rows share a logical id
    new_request = rng.random(rows) < 0.7
    new_request[0] = True
    logical = np.cumsum(new_request)
    attempt = (np.arange(rows) - np.maximum.accumulate(np.where(new_request, np.arange(rows), 0))) + 1
    kinds = np.array(["", "gateway_token_limit", "backend_429", "breaker_open", "server_error"], dtype=object)
    kind = kinds[rng.choice(5, rows, p=[0.72, 0.1, 0.12, 0.04, 0.02])]
    ok = kind == ""
    status = np.select([ok, kind == "breaker_open", kind == "server_error"], [200, 503, 500], default=429).astype(
        np.int64
    )
    backend = np.array(["aoai-0", "aoai-1", "aoai-2"], dtype=object)[rng.integers(0, 3, rows)]
    backend = np.where(np.isin(kind, ["", "backend_429"]), backend, None)
    max_tokens = rng.choice(np.array([np.nan, 100, 500, 2000, 5000]), rows)
    prompt = rng.integers(20, 2000, rows)
    completion = rng.integers(1, 800, rows)
    latency = np.where(ok, rng.lognormal(0.5, 0.6, rows), rng.uniform(0.005, 0.05, rows))
    retry = ~ok & (rng.random(rows) < 0.8)
    sources = np.array(["retry-after", "retry-after-ms", "backoff"], dtype=object)[rng.integers(0, 3, rows)]
    ids = np.char.mod("%d", np.arange(rows)).astype(object)
    apps = np.array(["app-a", "app-b", "app-c", "app-d"], dtype=object)[rng.integers(0, 4, rows)]
    stream = rng.random(rows) < 0.5
    columns = {
        "run_id": np.full(rows, "bench", dtype=object),
        "t_scenario": t,
        "t_wall": T0 + (t - T0) / 10,
        "user": np.char.mod("user-%d", rng.integers(0, 200, rows)).astype(object),
        "app_id": apps,
        "client_profile": np.full(rows, "openai-python", dtype=object),
        "logical_id": np.char.mod("L%d", logical).astype(object),
        "attempt": attempt,
        "request_id": "C" + ids,
        "gateway_request_id": "G" + ids,
        "backend_request_id": np.where(backend != None, "B" + ids, None),  # noqa: E711 (elementwise)
        "operation": np.full(rows, "chat", dtype=object),
        "deployment": np.full(rows, "gpt-4o", dtype=object),
        "stream": stream,
        "max_tokens": max_tokens,
        "prompt_tokens_est": prompt,
        "status": status,
        "error_kind": np.where(ok, None, kind),
        "retry_after_s": np.where(~ok & (status != 500), rng.choice([1.0, 5.0, 60.0, 86400.0], rows), np.nan),
        "retry_after_ms": np.where(kind == "backend_429", rng.uniform(10, 9000, rows).round(1), np.nan),
        "backend": backend,
        "region": np.where(backend != None, "East US", None),  # noqa: E711
        "ttft_s": np.where(ok, latency * 0.3, np.nan),
        "latency_s": latency,
        "inter_token_s": np.where(ok & stream, 0.02, np.nan),
        "usage_prompt": np.where(ok, prompt, np.nan),
        "usage_completion": np.where(ok, completion, np.nan),
        "usage_total": np.where(ok, prompt + completion, np.nan),
        "usage_source": np.where(ok, "body", None),
        "decision": np.where(ok, "success", np.where(retry, "retry", "give_up")),
        "retry_wait_s": np.where(retry, rng.uniform(0.2, 8, rows).round(3), np.nan),
        "retry_wait_source": np.where(retry, sources, None),
    }
    kinds_by_name = {c.name: c.kind for c in RECORD_COLUMNS}
    arrays = []
    for column in RECORD_COLUMNS:
        values = columns.get(column.name)
        if values is None:
            arrays.append(pa.nulls(rows, pa.string()))
        elif kinds_by_name[column.name] == "str":
            arrays.append(pa.array(values, type=pa.string(), from_pandas=True))
        else:
            arrays.append(pa.array(values, from_pandas=True))
    table = pa.Table.from_arrays(arrays, names=[c.name for c in RECORD_COLUMNS])
    pa_csv.write_csv(table, run_dir / "records.csv", pa_csv.WriteOptions(quoting_style="needed"))
    _write_logs(run_dir, columns, rows, rng)
    (run_dir / "scenario.yaml").write_text(yaml.safe_dump(SCENARIO), encoding="utf-8")
    (run_dir / "run.json").write_text(json.dumps({"run_id": "bench", "time_scale": 10}), encoding="utf-8")


def _write_logs(run_dir: Path, c: dict, rows: int, rng: np.random.Generator) -> None:
    import pandas as pd

    ok = c["status"] == 200
    gateway = pd.DataFrame(
        {
            "kind": "request",
            "t": c["t_scenario"],
            "gateway_request_id": c["gateway_request_id"],
            "backend_request_id": c["backend_request_id"],
            "app_id": c["app_id"],
            "deployment": "gpt-4o",
            "model": "gpt-4o",
            "stream": c["stream"],
            "backend": c["backend"],
            "status": c["status"],
            "prompt_tokens": c["usage_prompt"],
            "completion_tokens": c["usage_completion"],
            "total_tokens": c["usage_total"],
            "duration_s": c["latency_s"],
        }
    )
    gateway.to_json(run_dir / "gateway.jsonl", orient="records", lines=True)
    breakers = [
        {"kind": "breaker", "t": T0 + s, "backend": f"aoai-{s % 3}", "from": f, "to": to, "until": T0 + s + 60}
        for s in range(100, 3500, 300)
        for f, to in (("closed", "open"),)
    ]
    with (run_dir / "gateway.jsonl").open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(b) + "\n" for b in breakers)
    has_backend = c["backend"] != None  # noqa: E711
    backend = pd.DataFrame(
        {
            "t": c["t_scenario"],
            "backend": c["backend"],
            "request_id": c["backend_request_id"],
            "gateway_request_id": c["gateway_request_id"],
            "deployment": "gpt-4o",
            "model": "gpt-4o",
            "status": c["status"],
            "decision": np.where(ok, "ok", "rate_limited_tokens"),
            "estimate_charged": np.where(ok, c["prompt_tokens_est"] + np.nan_to_num(c["max_tokens"], nan=600), 0),
            "prompt_tokens": c["usage_prompt"],
            "completion_tokens": c["usage_completion"],
            "total_tokens": c["usage_total"],
        }
    )[has_backend]
    backend.to_json(run_dir / "backend.jsonl", orient="records", lines=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", type=int, default=1, help="CPU core the report runs on (taskset)")
    parser.add_argument("--keep", metavar="DIR", help="generate into (and keep) this directory")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-report-"))
    run_dir = root / "run"
    try:
        if not (run_dir / "records.csv").exists():
            started = time.perf_counter()
            generate(run_dir, args.rows)
            print(f"generated {args.rows:,} records in {time.perf_counter() - started:.1f} s")
        sizes = {p.name: p.stat().st_size / 2**20 for p in run_dir.glob("*.*") if p.suffix in (".csv", ".jsonl")}
        print("files: " + ", ".join(f"{n} {s:.0f} MiB" for n, s in sorted(sizes.items())))
        pin = ["taskset", "-c", str(args.core)] if shutil.which("taskset") and os.cpu_count() else []
        print(f"harness report pinned to core {args.core} with taskset" if pin else "taskset missing: not pinned")
        results = []
        for i in range(args.repeats):
            out = root / f"out-{i}"
            proc = subprocess.run(
                [*pin, sys.executable, "-c", CHILD, str(run_dir), str(out)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"  repeat {i + 1}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB")
        if not results:
            return 0
        seconds = [r["seconds"] for r in results]
        rss = [r["peak_rss_mib"] for r in results]
        print(
            f"harness report on {args.rows:,} rows: median {statistics.median(seconds):.1f} s "
            f"(min {min(seconds):.1f}, max {max(seconds):.1f}); peak RSS median {statistics.median(rss):.0f} MiB "
            f"(min {min(rss):.0f}, max {max(rss):.0f}); targets < 60 s and < 2048 MiB; "
            "machine shared with other work, so times are noisy"
        )
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
