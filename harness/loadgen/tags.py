"""Locust's `--tags` / `--exclude-tags` select the scenario's request mixes by name.

Locust's tags pick a user's tasks; the harness's user has one task (send the next request), and what a user of
the harness would tag is a kind of request: a mix (`workload.mixes[].name`, the operation when unnamed). So
`--tags chat-long` sends only that mix, `--exclude-tags embeddings` every mix but that one. Left to Locust,
the one untagged task would be filtered away and every user would fail with "No tasks defined". The
selection is checked once, at the start of a run: an unknown name, a trace (which has no mixes), or a
selection that leaves nothing to send (or an app none of its mixes) is one line, exit 2. It travels to
workers in the run's options, as the harness's own options do.

    >>> from types import SimpleNamespace
    >>> from harness.scenario import load_scenario_text
    >>> scenario = load_scenario_text(
    ...     "backends: [{name: east}]\\nworkload: {mixes: [{name: short}, {name: long}, {operation: embeddings,"
    ...     " deployment: emb}]}\\nbackends: [{name: east, deployments: {gpt-4o: {}, emb: {}}}]"
    ... )
    >>> select_mixes(scenario, SimpleNamespace(tags=None, exclude_tags=["long"]))
    ['short', 'embeddings']
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from harness.errors import UsageError
from harness.scenario import Scenario

REQUEST_MIXES = "request_mixes"  # the attribute of Locust's options the selection travels in


def select_mixes(scenario: Scenario, options: Any) -> list[str] | None:
    """The names of the mixes to send (None: every mix), from --tags/--exclude-tags; UsageError when they
    name no mix of the scenario or leave nothing to send."""
    chosen = getattr(options, REQUEST_MIXES, None)
    if chosen is not None:  # chosen at an earlier run of this process, or by the master
        return list(chosen)
    tags = set(getattr(options, "tags", None) or [])
    excluded = set(getattr(options, "exclude_tags", None) or [])
    if not tags and not excluded:
        return None
    option = "--tags" if tags else "--exclude-tags"
    workload = scenario.workload
    if workload.trace is not None:
        raise UsageError(f"{option} selects request mixes, and this scenario replays a trace, which has none")
    names = [mix.label for mix in workload.mixes]
    unknown = sorted((tags | excluded) - set(names))
    if unknown:
        raise UsageError(
            f"{option}: no request mix named {', '.join(unknown)} in the scenario (its mixes: {', '.join(names)})"
        )
    chosen = [name for name in names if (not tags or name in tags) and name not in excluded]
    if not chosen:
        raise UsageError(f"{option} leaves no request mix to send (the scenario's mixes: {', '.join(names)})")
    for app in workload.apps:
        if app.mixes and not set(app.mixes) & set(chosen):
            raise UsageError(f"{option} leaves app '{app.id}' no request mix to send (it sends {', '.join(app.mixes)})")
    # Locust filters tasks by these: the harness's one task must stay, the selection is the harness's own
    options.tags = options.exclude_tags = None
    setattr(options, REQUEST_MIXES, chosen)
    return chosen


def selected(environment: Any) -> Collection[str] | None:
    """The mixes this process's users send (None: every mix), as the run's options carry them."""
    return getattr(getattr(environment, "parsed_options", None), REQUEST_MIXES, None)
