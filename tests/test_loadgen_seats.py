"""The run's schedule as seats: who starts and stops when, the same whichever processes hold the users."""

from __future__ import annotations

import random

import pytest

from harness.loadgen.seats import LoadTally, deal, load_facts, seats_from_message, seats_to_message
from harness.scenario.workload import Stage
from harness.workload.shape import Seat, StagePlan, peak_users, schedule, spawn_offsets

BURSTS = StagePlan([Stage(duration=60, users=14), Stage(duration=60, users=3)], repeat=True)


def live_at(seats: list[Seat], t: float) -> int:
    return sum(1 for s in seats if s.start_s <= t < s.end_s)


@pytest.mark.parametrize("t", [0.0, 30.0, 59.9, 60.0, 119.9, 120.0, 200.0, 239.0, 240.0, 479.9])
def test_the_seats_live_at_any_moment_are_the_stage_users(t: float) -> None:
    seats = schedule(BURSTS, 0, 0, 480.0)
    assert live_at(seats, t) == BURSTS.at(t).users  # type: ignore[union-attr]


def test_a_quieter_stage_retires_the_latest_started_and_a_burst_adds_them_back_at_its_edge() -> None:
    seats = schedule(BURSTS, 0, 0, 480.0)
    # the three users of the quiet minutes run the whole run; the eleven of each burst live exactly its minute
    assert sorted((s.start_s, s.end_s) for s in seats if s.slot < 3) == [(0.0, 480.0)] * 3
    bursts = sorted({(s.start_s, s.end_s) for s in seats if s.slot >= 3})
    assert bursts == [(0.0, 60.0), (120.0, 180.0), (240.0, 300.0), (360.0, 420.0)]
    assert [s.number for s in seats] == list(range(len(seats)))  # numbered in start order, as the simulator's
    assert peak_users(seats) == 14


def test_a_ramp_follows_the_spawn_rate_and_the_run_ends_every_seat() -> None:
    seats = schedule(None, 5, 2.5, 30.0)
    assert [s.start_s for s in seats] == spawn_offsets(5, 2.5) == [0.0, 0.0, 0.8, 0.8, 1.6]
    assert {s.end_s for s in seats} == {30.0}


def test_no_process_is_dealt_more_seats_at_once_than_it_has_users() -> None:
    seats = schedule(BURSTS, 0, 0, 480.0)
    users = {"worker 0": 7, "worker 1": 7}
    dealt = deal(seats, users)
    assert sorted(s.number for mine in dealt.values() for s in mine) == [s.number for s in seats]
    for name, mine in dealt.items():
        assert peak_users(mine) <= users[name]
    # the load spreads evenly: the workers' user-seconds differ by less than the longest seat
    shares = [sum(s.user_seconds() for s in mine) for mine in dealt.values()]
    assert abs(shares[0] - shares[1]) < max(s.user_seconds() for s in seats)


def test_seats_cross_a_message_unchanged() -> None:
    seats = [Seat(i, i % 4, random.Random(i).random() * 60, 60.0 + i, f"app-{i % 2}") for i in range(20)]
    assert seats_from_message(seats_to_message(seats)) == seats


def test_offered_load_against_planned_over_the_time_that_ran() -> None:
    seats = schedule(BURSTS, 0, 0, 480.0)
    tally = LoadTally()
    tally.plan(seats)
    assert tally.planned_user_s == 3 * 480 + 4 * 11 * 60
    # a run stopped at 150 s: planned is what the schedule had up to then; one worker offered nothing
    facts = load_facts({"worker 0": {"offered_user_s": 700.0}, "worker 1": {"offered_user_s": 0.0}}, seats, 150.0)
    assert facts["planned_user_s"] == 3 * 150 + 11 * 60 + 11 * 30
    assert facts["short"] and facts["offered_share"] == pytest.approx(700 / 1440, abs=1e-4)
    full = load_facts({"local": {"offered_user_s": 1439.0}}, seats, 150.0)
    assert not full["short"]
