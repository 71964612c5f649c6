"""`harness calibrate RUN_DIR`: fit the simulator's hops from a live run's own logs, as scenario settings.

A live run pays for every hop on the wire, a simulated one only for what the scenario says. What decides
how many 429s slip past a breaker is how long a 429 takes to come back to the gateway, so calibration
measures, per request that went to one backend once:

- gateway -> backend: the backend's arrival minus the gateway's, plus the network delay the mock drew on
  the way in (`network_in_s`);
- backend -> gateway: the gateway's duration minus that hop and the backend's own duration, plus the delay
  drawn on the way back (`network_out_s`),

and fits both ways of each backend as one lognormal (median and p95, the form a scenario takes), which it
prints as `--set backends[i].network_latency=...` for `harness simulate` and `harness sweep`. The callers'
hop to the gateway is measured and shown but not set: the simulator's callers reach the gateway at once,
and that hop shifts when requests arrive, not how many 429s a breaker lets through.

A run against `--host` (a real APIM and AOAI: no gateway or backend log) has only the client's view: the
fit is then the deployments' latency (`ttft` from streamed answers, `per_token` from their token gaps), with
every hop folded into the time to first token.

    >>> fit_lognormal([0.004, 0.005, 0.006, 0.02])
    {'kind': 'lognormal', 'median': 0.0055, 'p95': 0.0179}
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness.errors import UsageError
from harness.records import BACKEND_LOG, GATEWAY_LOG, RECORDS_FILE
from harness.records.logs import BACKEND_LOG_COLUMNS, GATEWAY_LOG_COLUMNS
from harness.report.load import RunData, load_run, log_schema, read_json_lines

CALIBRATION_FILE = "calibration.json"
# Fewer samples than this cannot put a p95 anywhere honest.
MIN_SAMPLES = 20
_HOP_GATEWAY = ("kind", "gateway_request_id", "t", "duration_s")
_HOP_BACKEND = ("gateway_request_id", "t", "duration_s", "backend", "network_in_s", "network_out_s")
_CLIENT_VIEW = ("t_scenario", "ttft_s", "inter_token_s", "stream", "status", "deployment")


@dataclass(frozen=True)
class Fit:
    """One fitted quantity: the `--set` path, the distribution, and what it was fitted from."""

    path: str
    distribution: dict[str, Any]
    samples: int
    p50: float
    p95: float
    p99: float
    what: str

    def set_line(self) -> str:
        return f"--set '{self.path}={flow(self.distribution)}'"


def flow(value: Any) -> str:
    """YAML flow text of a value (`{kind: lognormal, median: 0.004, p95: 0.012}`)."""
    return str(yaml.safe_dump(value, default_flow_style=True, width=1_000_000, sort_keys=False)).strip()


def fit_lognormal(samples: Any) -> dict[str, Any]:
    """A lognormal by the samples' median and p95 (a constant when they are equal), rounded to 0.1 ms."""
    series = pd.Series(samples, dtype=float).clip(lower=0.0)
    median, p95 = float(series.quantile(0.5)), float(series.quantile(0.95))
    median, p95 = round(median, 4), round(p95, 4)
    if median <= 0 or p95 <= median:
        return {"kind": "constant", "value": max(median, 0.0)}
    return {"kind": "lognormal", "median": median, "p95": p95}


def calibrate(run_dir: str | Path) -> list[Fit]:
    """The fits for a live run directory (UsageError, one line, when it is not one or lacks what is needed)."""
    return _fits(_live_run(Path(run_dir)))


def _fits(run: RunData) -> list[Fit]:
    if run.gateway is not None and run.backend is not None:
        return _hop_fits(run, *_hop_logs(run.run_dir))
    return _latency_fits(run)


def _hop_logs(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The gateway's request rows and the backend's rows, with the fields the hops are measured from."""
    notes: list[str] = []
    gateway = read_json_lines(run_dir / GATEWAY_LOG, log_schema(GATEWAY_LOG_COLUMNS, _HOP_GATEWAY), notes)
    backend = read_json_lines(run_dir / BACKEND_LOG, log_schema(BACKEND_LOG_COLUMNS, _HOP_BACKEND), notes)
    _require(gateway, _HOP_GATEWAY, GATEWAY_LOG, run_dir)
    _require(backend, _HOP_BACKEND, BACKEND_LOG, run_dir)
    return gateway[gateway["kind"] == "request"], backend


def _live_run(run_dir: Path) -> RunData:
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such directory")
    if not (run_dir / RECORDS_FILE).exists():
        raise UsageError(f"{run_dir} is not a run directory (no {RECORDS_FILE})")
    run = load_run(run_dir)
    if (run.run_info or {}).get("engine") == "sim":
        raise UsageError(f"{run_dir} is a simulated run: calibrate the simulator from a live run (locust ...)")
    if run.scenario is None:
        raise UsageError(f"{run_dir} has no readable scenario.yaml: its backends cannot be named")
    return run


def _require(frame: pd.DataFrame, fields: tuple[str, ...], where: str, run_dir: Path) -> None:
    lacking = [f for f in fields if f not in frame.columns or frame[f].isna().all()]
    if lacking:
        raise UsageError(f"{run_dir / where} lacks {', '.join(lacking)}: calibrate needs them (a newer run has them)")


def _hop_fits(run: RunData, gateway: pd.DataFrame, backend: pd.DataFrame) -> list[Fit]:
    assert run.scenario is not None
    tries = backend["gateway_request_id"].value_counts()
    once = backend[backend["gateway_request_id"].map(tries) == 1]  # a retried request's hops overlap
    both = gateway[["gateway_request_id", "t", "duration_s"]].merge(
        once[list(_HOP_BACKEND)], on="gateway_request_id", suffixes=("_gw", "_be")
    )
    there = both["t_be"] - both["t_gw"] + both["network_in_s"].fillna(0.0)
    machine_back = both["duration_s_gw"] - (both["t_be"] - both["t_gw"]) - both["duration_s_be"]
    both = both.assign(there=there, back=machine_back + both["network_out_s"].fillna(0.0))
    fits = []
    for index, backend in enumerate(run.scenario.backends):
        mine = both[both["backend"] == backend.name]
        samples = pd.concat([mine["there"], mine["back"]], ignore_index=True).dropna()
        if len(samples) < MIN_SAMPLES:
            continue  # a backend that served (almost) nothing keeps its setting
        fits.append(_fit(f"backends[{index}].network_latency", samples, f"one way, gateway <-> {backend.name}"))
    if not fits:
        raise UsageError(f"{run.run_dir}: fewer than {MIN_SAMPLES} requests went to one backend once: nothing to fit")
    return fits


def client_hop(run: RunData) -> pd.Series | None:
    """The callers' one-way hop to the gateway (scenario s): the gateway's arrival minus the client's send."""
    if run.gateway is None or "gateway_request_id" not in run.records.columns:
        return None
    both = run.records[["gateway_request_id", "t_scenario"]].merge(
        run.gateway[["gateway_request_id", "t"]], on="gateway_request_id"
    )
    return (both["t"] - both["t_scenario"]).dropna() if not both.empty else None


def _latency_fits(run: RunData) -> list[Fit]:
    assert run.scenario is not None
    records = run.records
    _require(records, _CLIENT_VIEW, RECORDS_FILE, run.run_dir)
    streamed = records[(records["status"] == 200) & records["stream"].astype(bool)]
    fits = []
    for deployment, rows in streamed.groupby("deployment"):
        ttft, gaps = rows["ttft_s"].dropna(), rows["inter_token_s"].dropna()
        if len(ttft) < MIN_SAMPLES:
            continue
        for index, backend in enumerate(run.scenario.backends):
            if str(deployment) not in backend.deployments:
                continue
            prefix = f"backends[{index}].deployments.{deployment}.latency"
            fits.append(_fit(f"{prefix}.ttft", ttft, f"time to first token of {deployment}, every hop included"))
            if len(gaps) >= MIN_SAMPLES:
                fits.append(_fit(f"{prefix}.per_token", gaps, f"time between tokens of {deployment}"))
    if not fits:
        raise UsageError(
            f"{run.run_dir} has no gateway or backend log and fewer than {MIN_SAMPLES} streamed answers with "
            "ttft_s: nothing to fit (stream some requests: workload.mixes[].stream_share)"
        )
    return fits


def _fit(path: str, samples: pd.Series, what: str) -> Fit:
    q = samples.quantile([0.5, 0.95, 0.99])
    return Fit(path, fit_lognormal(samples), len(samples), float(q[0.5]), float(q[0.95]), float(q[0.99]), what)


def run(args: argparse.Namespace) -> int:
    """`harness calibrate RUN_DIR`: print the `--set` lines; keep them with their figures in calibration.json."""
    run_dir = Path(args.run_dir)
    live = _live_run(run_dir)  # read once: the fits, the time scale and the callers' hop all come from it
    fits = _fits(live)
    scale = (live.run_info or {}).get("time_scale")
    print(f"# fitted from {run_dir} (live, time scale {scale}); scenario seconds; paste into harness simulate/sweep")
    for fit in fits:
        print(
            f"# {fit.what}: {fit.samples} samples, p50 {fit.p50 * 1000:.1f} ms, p95 {fit.p95 * 1000:.1f} ms, "
            f"p99 {fit.p99 * 1000:.1f} ms"
        )
        print(fit.set_line())
    hop = client_hop(live)
    if hop is not None and len(hop):
        print(
            f"# callers -> gateway (not set: the simulator has no such hop): p50 {hop.median() * 1000:.1f} ms, "
            f"p95 {hop.quantile(0.95) * 1000:.1f} ms"
        )
    payload = {
        "run_dir": str(run_dir),
        "time_scale": scale,
        "overrides": [f"{fit.path}={flow(fit.distribution)}" for fit in fits],
        "fits": [fit.__dict__ for fit in fits],
    }
    (run_dir / CALIBRATION_FILE).write_text(json.dumps(payload, indent=2, default=_finite) + "\n", encoding="utf-8")
    return 0


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
