"""The `checks` and `sweep` sections: pass/fail thresholds of a run, and the settings a sweep varies."""

from __future__ import annotations

from harness.scenario.common import Section


class Checks(Section):
    """Thresholds that make a headless run exit non-zero when violated."""
