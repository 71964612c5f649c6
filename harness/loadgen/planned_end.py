"""Stop the load at its planned end, to the millisecond rather than at Locust's next shape tick.

Locust checks a shape once a wall second, so a run at time scale 10 would overrun its planned duration by
up to ten scenario seconds, and its duration, goodput and rates would cover load the scenario never asked
for. A timer set when the users start stops them when the planned scenario time has passed, the way the
shape would have.
"""

from __future__ import annotations

from typing import Any

import gevent

from harness.loadgen.scenario_shape import planned_limit
from harness.loadgen.state import LoadRun
from harness.records import EndedBy


def arm(runner: Any, run: LoadRun) -> None:
    """Stop the users `run.duration` (or -t, or the stages' end) scenario seconds after the load's start."""
    disarm(run)
    timeline = run.timeline
    assert timeline.started_at is not None
    limit = planned_limit(runner, run)
    timeline.planned_s = limit
    wall_s = max(0.0, timeline.started_at + limit - run.clock.now()) / run.clock.scale
    timeline.planned_end = gevent.spawn_later(wall_s, _end, runner, run)


def disarm(run: LoadRun) -> None:
    timer = run.timeline.planned_end
    # not when the timer itself is stopping the users: the end of a web UI run is written in that greenlet
    if timer is not None and timer is not gevent.getcurrent():
        timer.kill(block=False)
    run.timeline.planned_end = None


def _end(runner: Any, run: LoadRun) -> None:
    if runner.state not in ("spawning", "running"):
        return
    run.timeline.stopped_at = run.clock.now()  # the load ends now; stopping the users takes a few ms more
    run.timeline.note_cause(EndedBy.COMPLETED)
    options = getattr(runner.environment, "parsed_options", None)
    if options is not None and getattr(options, "headless", False):
        runner.quit()
    else:
        runner.stop()
