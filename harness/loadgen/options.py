"""The harness's own Locust command-line options (also shown in `locust --help` and the web UI)."""

from __future__ import annotations

import os
from typing import Any

from harness.client import PROFILE_NAMES
from harness.errors import UsageError
from harness.scenario.handoff import SET_ENV_OPTION, overrides_from_env

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


def add_arguments(parser: Any, default_scenario: str) -> None:
    """Register the options on Locust's parser (a configargparse parser with `include_in_web_ui`)."""
    # Locust's own parser (not an argument group) knows `include_in_web_ui`.
    group = parser
    group.add_argument(
        "--scenario", default=default_scenario, metavar="FILE", include_in_web_ui=True, help="scenario YAML file"
    )
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        include_in_web_ui=False,
        help="override a scenario field (repeatable), e.g. --set gateway.circuit_breaker.tripDuration=PT30S",
    )
    group.add_argument(
        SET_ENV_OPTION,
        dest="set_env",
        default="",
        metavar="NAME",
        include_in_web_ui=False,
        help="also read overrides from the environment variable NAME (a JSON list of PATH=VALUE), so that secrets "
        "stay off the command line",
    )
    group.add_argument(
        "--run-dir",
        default="",
        metavar="DIR",
        include_in_web_ui=True,
        help="where to write (default reports/runs/<run-id>)",
    )
    group.add_argument(
        "--client-profile",
        default="",
        choices=["", *PROFILE_NAMES],
        include_in_web_ui=True,
        help="retry profile for every app, overriding the scenario's",
    )
    group.add_argument(
        "--time-scale", type=float, default=0.0, include_in_web_ui=True, help="scenario seconds per wall second"
    )
    group.add_argument(
        "--api-key",
        default=os.environ.get("AZURE_OPENAI_API_KEY", ""),
        include_in_web_ui=False,
        help="api-key header for every request (default: $AZURE_OPENAI_API_KEY)",
    )
    exit_codes(parser)
    group.add_argument(
        "--bearer-token",
        default="",
        include_in_web_ui=False,
        help="Authorization: Bearer token for every request; `entra` fetches one with azure-identity",
    )


def exit_codes(parser: Any) -> None:
    """Locust's --exit-code-on-error, with the harness's default: throttled and failed requests are what a run
    measures, so by default they do not fail it (0); given, the option acts as in Locust: a run in which any
    request failed exits with that code (unless a failed check or a dead stack gives its own, 3 or 4)."""
    for action in parser._actions:  # Locust's own option: its default and help, not a second option
        if action.dest == "exit_code_on_error":
            action.default = 0
            action.help = (
                "exit code when any request failed (Locust's convention). Default 0 in the harness: throttling "
                "is what a run measures; a failed check exits 3 whatever this says"
            )


def overrides_of(options: Any) -> list[str]:
    """The scenario overrides: every --set, then --time-scale as run.time_scale."""
    overrides = list(getattr(options, "overrides", None) or [])
    if isinstance(overrides, str):  # the web UI hands lists back as text
        overrides = [o for o in overrides.split(",") if o]
    if getattr(options, "set_env", ""):
        overrides = [*overrides_from_env(options.set_env), *overrides]
    scale = getattr(options, "time_scale", 0.0) or 0.0
    if scale < 0:
        raise UsageError("--time-scale must be > 0")
    if scale:
        overrides.append(f"run.time_scale={scale}")
    return overrides


def bearer_token(value: str) -> str | None:
    """The bearer token to send: as given, or an Entra ID token (azure-identity, the `entra` extra)."""
    if not value:
        return None
    if value != "entra":
        return value
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise UsageError("--bearer-token entra needs azure-identity: pip install -e '.[entra]'") from None
    try:
        return str(DefaultAzureCredential().get_token(ENTRA_SCOPE).token)
    except Exception as exc:  # every credential failure becomes one line
        raise UsageError(f"could not get an Entra ID token: {exc.__class__.__name__}: {exc}") from None
