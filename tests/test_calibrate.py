"""`harness calibrate`: the hops a live run paid for, fitted as scenario settings the simulator takes.

The fitting is checked on runs whose hops are known: a simulated run has no hop of its own, so with its
run.json relabelled live, calibration must give back the network_latency it was simulated with. One short
real Locust run shows the fits work end to end (calibrate, then simulate with the printed --set lines).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from loadgen_helpers import LOCUST, LOCUSTFILE, ROOT, RUN_TIMEOUT_S

from harness.cli import main
from harness.records import BACKEND_LOG
from harness.report.calibrate import CALIBRATION_FILE, calibrate
from harness.sim import simulate

BREAKER = str(ROOT / "scenarios" / "breaker-trip-duration.yaml")
KNOWN_HOP = "{kind: lognormal, median: 0.02, p95: 0.05}"


def relabel_live(run_dir: Path) -> Path:
    info = json.loads((run_dir / "run.json").read_text())
    info["engine"] = "live"
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def test_calibration_recovers_the_network_latency_a_run_had(tmp_path: Path) -> None:
    run_dir = simulate(BREAKER, ["run.duration=240", f"backends[0].network_latency={KNOWN_HOP}"], tmp_path / "r")
    fits = {fit.path: fit for fit in calibrate(relabel_live(run_dir))}
    primary = fits["backends[0].network_latency"].distribution
    assert primary["kind"] == "lognormal"
    assert primary["median"] == pytest.approx(0.02, rel=0.1)
    assert primary["p95"] == pytest.approx(0.05, rel=0.15)
    # the other backend had no network at all: a constant zero, not a made-up spread
    assert fits["backends[1].network_latency"].distribution == {"kind": "constant", "value": 0.0}


def test_calibrate_prints_set_lines_that_simulate_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = relabel_live(simulate(BREAKER, ["run.duration=120", "backends[0].network_latency=0.03"], tmp_path / "r"))
    assert main(["calibrate", str(run_dir)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("--set")]
    overrides = [shlex.split(line)[1] for line in lines]
    assert overrides == json.loads((run_dir / CALIBRATION_FILE).read_text())["overrides"]
    assert "backends[0].network_latency={kind: constant, value: 0.03}" in overrides
    again = simulate(BREAKER, ["run.duration=60", *overrides], tmp_path / "again")
    rows = [json.loads(line) for line in (again / BACKEND_LOG).read_text().splitlines()]
    assert {r["network_in_s"] for r in rows if r["backend"] == "primary"} == {0.03}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "absent", "no such directory"),
        (lambda tmp: tmp, "is not a run directory (no records.csv)"),
        (lambda tmp: simulate(BREAKER, ["run.duration=30"], tmp / "sim"), "is a simulated run"),
    ],
)
def test_calibrate_refuses_what_is_not_a_live_run_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    assert main(["calibrate", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_calibrate_names_the_fields_an_older_log_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = relabel_live(simulate(BREAKER, ["run.duration=60"], tmp_path / "r"))
    rows = [json.loads(line) for line in (run_dir / BACKEND_LOG).read_text().splitlines()]
    for row in rows:
        del row["network_in_s"], row["network_out_s"]
    (run_dir / BACKEND_LOG).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["calibrate", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "backend.jsonl lacks network_in_s, network_out_s" in err and len(err.splitlines()) == 1


@pytest.mark.e2e
@pytest.mark.serial  # the loopback's share of a hop: under 19 wall ms at time scale 10
def test_a_live_runs_hops_include_what_the_loopback_adds(tmp_path: Path) -> None:
    """A real run: the primary's fitted one-way hop is its configured 10 ms plus the machine's own."""
    run_dir = tmp_path / "live"
    command = [
        LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary", "--scenario", BREAKER,
        "--set", "run.duration=60", "--set", "run.time_scale=10", "--run-dir", str(run_dir),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    fits = {fit.path: fit for fit in calibrate(run_dir)}
    primary = fits["backends[0].network_latency"]
    assert primary.samples >= 40
    assert 0.010 < primary.p50 < 0.2  # scenario seconds: 10 ms configured, plus loopback at time scale 10
