"""The clocks: virtual time only moves when told; scaled time runs k times faster and agrees across processes."""

import asyncio

import pytest

from harness.clock import ScaledClock, VirtualClock


def test_virtual_clock_moves_only_when_told() -> None:
    clock = VirtualClock(start=100.0)
    assert clock.now() == 100.0
    clock.sleep(2.5)
    assert clock.now() == 102.5
    asyncio.run(clock.asleep(0.5))
    assert clock.now() == 103.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_scaled_clock_runs_faster_by_its_factor() -> None:
    clock = ScaledClock(10.0, origin=clock_origin())
    start, wall_start = clock.now(), clock.wall()
    clock.sleep(0.5)  # half a scenario second = 50 ms of wall time
    elapsed_wall = clock.wall() - wall_start
    elapsed_scenario = clock.now() - start
    assert 0.045 <= elapsed_wall < 0.5
    assert elapsed_scenario == pytest.approx(elapsed_wall * 10, rel=0.05)


def test_clocks_sharing_an_origin_agree_on_scenario_time() -> None:
    origin = clock_origin() - 30.0  # anchored 30 wall seconds ago
    a, b = ScaledClock(4.0, origin=origin), ScaledClock(4.0, origin=origin)
    assert abs(a.now() - b.now()) < 0.05
    # 30 wall seconds at scale 4 are 120 scenario seconds after the origin
    assert a.now() - origin == pytest.approx(120.0, abs=0.5)


def test_scale_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ScaledClock(0)


def clock_origin() -> float:
    return ScaledClock(1.0).wall()
