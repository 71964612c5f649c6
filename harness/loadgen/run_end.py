"""How a run ended, said honestly in run.json: completed, stopped early, cut by a signal, or its stack died.

Locust installs its SIGTERM handler only after a headless shape run has ended (its main loop waits on the
shape first), so without our own handler a SIGTERM during the run killed the process before run.json got
its end time and summary. Ours notes the cause and quits the way Ctrl-C does, so the end of the run is
written in both cases. SIGINT is handled the same way, so run.json can tell the two apart. Before the users
are stopped, the attempts in flight get up to `DRAIN_WALL_S` (or the client's timeout, if shorter) to be
answered and recorded, and no new one starts: a Ctrl-C no longer drops them. Those still unanswered then
are counted in run.json (`attempts_cut_at_stop`). A watchdog ends the run when the embedded servers die
under it, whether or not the scenario has `checks:`.

    >>> end_facts(EndedBy.STOPPED, planned_s=60.0, ran_s=45.5)
    {'ended_by': 'stopped', 'scenario_time_missing_s': 14.5}
    >>> end_facts(EndedBy.COMPLETED, planned_s=60.0, ran_s=59.999)
    {'ended_by': 'completed', 'scenario_time_missing_s': 0.0}
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

import gevent

from harness.loadgen.state import LoadRun, process_of
from harness.records import ATTEMPTS_CUT, ENDED_BY, TIME_MISSING, EndedBy

SIGNAL_CAUSES = {signal.SIGTERM: EndedBy.SIGTERM, signal.SIGINT: EndedBy.SIGINT}
STACK_WATCH_INTERVAL_S = 0.25
DRAIN_WALL_S = 10.0  # longest wall wait for the attempts in flight when a signal ends the run
DRAIN_POLL_S = 0.02
STACK_DIED_EXIT_CODE = 4  # 2 is a usage or pre-flight error, 3 a failed check (CHECKS_FAILED_EXIT_CODE)


def end_facts(cause: EndedBy, planned_s: float, ran_s: float) -> dict[str, Any]:
    """run.json's `ended_by` and `scenario_time_missing_s` (0 for a run that completed its plan)."""
    missing = 0.0 if cause is EndedBy.COMPLETED else max(0.0, round(planned_s - ran_s, 3))
    return {ENDED_BY: cause.value, TIME_MISSING: missing}


def install_signal_handlers(environment: Any) -> None:
    """SIGTERM and SIGINT: note the cause, then quit as Ctrl-C would (the end of the run gets written)."""
    # a libev watcher rather than signal.signal: the handler runs in a greenlet, where it may block
    for signum in SIGNAL_CAUSES:
        gevent.signal_handler(signum, _on_signal, environment, signum)


def _on_signal(environment: Any, signum: signal.Signals) -> None:
    # runs in its own greenlet. In the web UI Locust's own SIGTERM handler shuts down already (quitting
    # twice would print the statistics twice); headless, it is not installed before the shape ends.
    run = process_of(environment).run
    if run is not None:
        run.timeline.note_cause(SIGNAL_CAUSES[signum])
    options = environment.parsed_options
    if signum == signal.SIGINT or getattr(options, "headless", False):
        if run is not None:
            drain(run)
        quit_locust(environment)


def drain(run: LoadRun) -> int:
    """Let the attempts in flight finish and be recorded (bounded), starting none; returns those cut."""
    if not run.open:
        return 0
    in_flight = run.in_flight
    in_flight.draining = True
    deadline = time.monotonic() + min(DRAIN_WALL_S, run.setup.settings.timeout_s / run.clock.scale)
    while in_flight.count > 0 and time.monotonic() < deadline:
        gevent.sleep(DRAIN_POLL_S)
    cut = max(0, in_flight.count)
    run.recording.run_info[ATTEMPTS_CUT] = cut
    return cut


def quit_locust(environment: Any) -> None:
    """Stop the users and Locust's main loop; Locust then fires `quitting` and exits with our exit code."""
    runner = environment.runner
    if runner is not None:
        runner.quit()
    web_ui = getattr(environment, "web_ui", None)
    if web_ui is not None:
        web_ui.stop()


def watch_stack(environment: Any, run: LoadRun) -> None:
    """While the load runs: when the embedded servers exit on their own, say so in a line and end the run."""
    while run.open and run.stack is not None:
        code = run.stack.died()
        if code is not None:
            sys.stderr.write(
                f"locust: error: the embedded stack exited during the run (exit code {code}): "
                f"{run.stack.last_words()}\n"
            )
            sys.stderr.flush()
            run.timeline.note_cause(EndedBy.STACK_DIED)
            quit_locust(environment)
            return
        gevent.sleep(STACK_WATCH_INTERVAL_S)
