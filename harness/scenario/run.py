"""The `run` section: how long, how fast and with which random seed a scenario runs."""

from __future__ import annotations

from pydantic import Field

from harness.scenario.common import Duration, Section


class RunSettings(Section):
    """Duration, time compression and seed of one run."""

    name: str = Field("", description="label of the run in reports; the scenario file name when empty")
    duration: Duration = Field(120.0, description="scenario time the load runs for (ISO 8601 or seconds)")
    time_scale: float = Field(
        1.0,
        gt=0,
        le=1000,
        description="scenario seconds per wall second (10 runs a 10-minute scenario in 1 minute)",
    )
    seed: int = Field(0, description="seed of every random choice, so a run can be repeated")
