"""A scenario's question, and which findings of a run answer it (the report's opening sentences).

The findings are named here, once; `harness.report.verdict` turns each into a sentence from a run's
numbers (and a test checks that every name here has one):

    >>> Question(ask="Is the polite app protected?", answered_by=["by_app"]).answered_by
    ['by_app']
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.scenario.common import Section

# What a finding says, for `harness scenario` docs and the validation error.
FINDINGS = {
    "outcomes": "attempts by outcome and who refused them, the client-visible failure rate, goodput",
    "by_app": "each app's throttled share of attempts by source, and its failed requests",
    "by_client_profile": "what each client profile did after a throttled attempt, and its failed requests",
    "by_backend": "each backend's share of tokens served and its own 429 rate",
    "ptu_utilization": "each PTU backend's mean and p95 utilization",
    "breaker": "how often each breaker tripped and how long it stayed open",
    "drain": "tokens charged at admission against tokens used",
    "chargeback": "tokens the gateway counted per app against the backends' usage",
    "cost": "the run's cost and cost per 1M tokens of goodput",
    "lockout": "request-limit 429s that came while the token window had room",
    "token_limit": "tokens per minute each app got through against the gateway's limit, and over how many replicas",
}
Finding = Literal[
    "outcomes", "by_app", "by_client_profile", "by_backend", "ptu_utilization", "breaker", "drain", "chargeback",
    "cost", "lockout", "token_limit",
]  # fmt: skip


class Question(Section):
    """The question a scenario asks, opening its report; the findings that answer it, in order."""

    ask: str = Field(min_length=1, description="the question, as a user would ask it")
    answered_by: list[Finding] = Field(
        min_length=1, description=f"findings that answer it, in order: {', '.join(FINDINGS)}"
    )
