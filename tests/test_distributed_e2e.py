"""A master with two workers offers the load one process offers: real Locust processes on loopback, headless.

Each run is the shipped scenario as it stands (its users, stages, duration and time scale 10), once in one
process and once as a master with two workers. Users follow one schedule on the master's scenario clock in
both, and the k-th user of the run draws the same requests in both, so what differs is only the timing of
the processes: attempts and goodput within 3 %, the 429 rate within 0.3 points, the first attempt within
0.5 scenario s of the load's start, and every worker reporting the load it offered.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed_helpers import figures, run_scenario

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("scenario", ["breaker-trip-duration.yaml", "ptu-spillover.yaml"])
def test_two_workers_offer_the_load_of_one_process(tmp_path: Path, scenario: str) -> None:
    runs = {}
    for name, workers in (("one", 0), ("workers", 2)):
        result = run_scenario(tmp_path / name, scenario, workers)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "not all reports received" not in result.stderr
        runs[name] = figures(tmp_path / name)
    one, two = runs["one"], runs["workers"]
    assert two["workers"] == ["worker 0", "worker 1"]
    for run in (one, two):
        assert run["offered_share"] >= 0.98, run
        assert 0 <= run["first_attempt_s"] <= 0.5, run
    assert two["attempts"] == pytest.approx(one["attempts"], rel=0.03), runs
    assert two["goodput_tpm"] == pytest.approx(one["goodput_tpm"], rel=0.03), runs
    assert abs(two["rate_429"] - one["rate_429"]) <= 0.003, runs
