"""Stop the load at its planned end, to the millisecond rather than at Locust's next shape tick.

Locust checks a shape once a wall second, so a run at time scale 10 would overrun its planned duration by
up to ten scenario seconds, and its duration, goodput and rates would cover load the scenario never asked
for. A timer set when the users start stops them when the planned scenario time has passed, the way the
shape would have.
"""

from __future__ import annotations

from typing import Any

import gevent

from harness.loadgen.run_end import note_cause
from harness.loadgen.scenario_shape import planned_limit
from harness.loadgen.state import STATE
from harness.records import EndedBy

_timer: gevent.Greenlet | None = None


def arm(runner: Any) -> None:
    """Stop the users `run.duration` (or -t, or the stages' end) scenario seconds after the load's start."""
    disarm()
    assert STATE.clock is not None and STATE.test_started_at is not None
    limit = planned_limit(runner)
    STATE.planned_s = limit
    global _timer
    wall_s = max(0.0, STATE.test_started_at + limit - STATE.clock.now()) / STATE.clock.scale
    _timer = gevent.spawn_later(wall_s, _end, runner)


def disarm() -> None:
    global _timer
    # not when the timer itself is stopping the users: the end of a web UI run is written in that greenlet
    if _timer is not None and _timer is not gevent.getcurrent():
        _timer.kill(block=False)
    _timer = None


def _end(runner: Any) -> None:
    if runner.state not in ("spawning", "running"):
        return
    assert STATE.clock is not None
    STATE.test_stopped_at = STATE.clock.now()  # the load ends now; stopping the users takes a few ms more
    note_cause(EndedBy.COMPLETED)
    options = getattr(runner.environment, "parsed_options", None)
    if options is not None and getattr(options, "headless", False):
        runner.quit()
    else:
        runner.stop()
