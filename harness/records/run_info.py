"""run.json fields that one component writes and another reads: how the load ran and how it ended.

The load generator and the simulator write them; the report reads them to measure the run over the
time the load actually ran and to say when a run was cut short.
"""

from __future__ import annotations

from enum import StrEnum

LOAD_STARTED_AT = "load_started_at"  # scenario time (epoch s) the users started
SCENARIO_SECONDS = "scenario_seconds"  # scenario seconds from the users' start to their stop
ENDED_BY = "ended_by"  # an EndedBy value
TIME_MISSING = "scenario_time_missing_s"  # planned scenario seconds the load did not get to run (0 if none)
ATTEMPTS_CUT = "attempts_cut_at_stop"  # attempts still unanswered when a signal's bounded wait for them ended
ENDED = "ended"  # wall time (ISO 8601) the run's end was written; absent or null when the run never got there
# the load offered against the load planned, in user-seconds of scenario time, in total and per process:
# {"planned_user_s", "offered_user_s", "offered_share", "short", "by_process": {name: {...}}}
OFFERED_LOAD = "offered_load"
# below this share of its planned user-seconds a run says, first thing, that it offered less load than planned
OFFERED_SHARE_MIN = 0.98
# the summary the run computed as it ended (harness.report.summary.schema.Summary), or null when it could not
RUN_SUMMARY = "summary"


class EndedBy(StrEnum):
    """Why the load stopped."""

    COMPLETED = "completed"  # it ran its planned duration
    STOPPED = "stopped"  # a user stopped it before (Stop in the web UI, quitting early)
    SIGTERM = "signal:SIGTERM"
    SIGINT = "signal:SIGINT"
    STACK_DIED = "stack_died"  # the embedded servers exited during the run
