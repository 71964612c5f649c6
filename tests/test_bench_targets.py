"""The fidelity bench's verdicts: a simulated number holds within its target of the live one, is noise when
the live value still lies within the simulated seeds' range, and misses otherwise."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_sim_fidelity", ROOT / "bench" / "bench_sim_fidelity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_targets_take_the_larger_of_the_relative_and_absolute_tolerance() -> None:
    bench = load_bench()
    assert bench.target_met("rate_429", 0.015, 0.012)  # 0.3 points, larger than 10 % of 1.5 %
    assert not bench.target_met("rate_429", 0.015, 0.0119)
    assert bench.target_met("rate_429", 0.40, 0.36)  # 10 % of 40 %, larger than 0.3 points
    assert not bench.target_met("rate_429", 0.40, 0.355)
    assert bench.target_met("goodput", 1000.0, 970.0) and not bench.target_met("goodput", 1000.0, 960.0)
    assert bench.target_met("share:ptu", 0.38, 0.40) and not bench.target_met("share:ptu", 0.38, 0.41)
    assert bench.target_met("trips", 2.0, 2.5) and not bench.target_met("trips", 20.0, 22.5)


def test_a_miss_within_the_simulated_spread_is_noise_else_it_misses() -> None:
    bench = load_bench()
    live = [{"rate_429": 0.020}]
    noisy = [{"rate_429": v} for v in (0.010, 0.012, 0.025)]  # mean 1.57 %, range covers 2 %
    tight = [{"rate_429": v} for v in (0.010, 0.011, 0.012)]
    assert bench.compare(live, noisy)[0][2] == "noise"
    assert bench.compare(live, tight)[0][2] == "MISSES"
    assert bench.compare(live, [{"rate_429": 0.019}])[0][2] == "holds"
