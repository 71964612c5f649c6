"""The `checks` and `sweep` sections: pass/fail thresholds of a run, and the settings a sweep varies."""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import Field, NonNegativeFloat, model_validator

from harness.errors import UsageError
from harness.scenario.common import FieldError, Section
from harness.scenario.objectives import parse_constraint, parse_objective


class Checks(Section):
    """Thresholds that make a headless run exit non-zero when violated (each off when unset).

    Each limits one number of the run's summary.json, named in its description; a number that cannot be
    measured (no finished request, no stream) fails its check.

    >>> Checks(max_failure_rate=0.05).limits()
    {'max_failure_rate': 0.05}
    """

    max_failure_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="largest share of finished logical requests the caller saw fail "
        "(summary.json requests.client_failure_rate; requests cut off while waiting to retry are left out)",
    )
    max_p95_latency_s: NonNegativeFloat | None = Field(
        None,
        description="largest p95 of end-to-end latency of succeeded logical requests, retries and waits "
        "included, scenario seconds (summary.json end_to_end_latency.p95)",
    )
    max_p95_ttft_s: NonNegativeFloat | None = Field(
        None,
        description="largest p95 time to first token of successful stream attempts, scenario seconds "
        "(summary.json ttft.stream.p95)",
    )
    min_goodput_tpm: NonNegativeFloat | None = Field(
        None,
        description="least usage total tokens of successful attempts per scenario minute "
        "(summary.json throughput.goodput_tpm)",
    )
    max_retries_per_request: NonNegativeFloat | None = Field(
        None,
        description="largest mean number of retries per logical request started (summary.json retries.per_request)",
    )
    min_requests: int | None = Field(
        None, ge=0, description="least number of finished logical requests (summary.json requests.logical)"
    )
    max_shared_state_lost_s: NonNegativeFloat | None = Field(
        None,
        description="most scenario seconds gateway replicas enforced limits on their own counters because Redis "
        "was lost (summary.json run.shared_state_lost_s; 0 fails a run on any loss; unmeasurable without "
        "gateway.shared_state: redis)",
    )

    def limits(self) -> dict[str, float]:
        """The thresholds that are set, by name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class Sweep(Section):
    """Settings `harness sweep` varies: each override path gets a list of values; several paths make a grid.

    >>> Sweep.model_validate({"parameters": {"gateway.circuit_breaker.tripDuration": ["PT10S", "PT1M"]}}).points()
    [{'gateway.circuit_breaker.tripDuration': 'PT10S'}, {'gateway.circuit_breaker.tripDuration': 'PT1M'}]
    """

    parameters: dict[str, list[Any]] = Field(
        default_factory=dict, description="override path (as in --set) -> the values to try, e.g. [PT10S, PT1M]"
    )
    objective: str = Field(
        "goodput",
        description="what the best setting maximises or minimises among the feasible ones: max:METRIC or "
        "min:METRIC (a dotted path into summary.json), or goodput, failure_rate, p95_latency (--objective wins)",
    )
    constraints: list[str] = Field(
        default_factory=list,
        description="limits a setting's mean must meet to be feasible, e.g. 'requests.rate_429<=0.01' "
        "(--constraint replaces them)",
    )

    @model_validator(mode="after")
    def _check_parameters(self) -> Sweep:
        for path, values in self.parameters.items():
            if not values:
                raise FieldError(f"parameters.{path}", "needs at least one value")
        try:
            parse_objective(self.objective)
        except UsageError as exc:
            raise FieldError("objective", str(exc).split(": ", 1)[-1]) from None
        for i, text in enumerate(self.constraints):
            try:
                parse_constraint(text)
            except UsageError as exc:
                raise FieldError(f"constraints[{i}]", str(exc).split(": ", 1)[-1]) from None
        return self

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the parameters' values (the grid), in order."""
        paths = list(self.parameters)
        return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*self.parameters.values())]
