"""The `workload` section: apps, request mixes, and the arrival shape the Locust users replay."""

from __future__ import annotations

from harness.scenario.common import Section


class Workload(Section):
    """What the load generator sends, and when."""
