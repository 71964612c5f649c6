"""The scenario file model: one YAML file describes a whole experiment.

Every field has a default and a description; every error names its path in one line:

    >>> load_scenario_text("backends: [{deployments: {gpt-4o: {tpm: -5}}}]")
    Traceback (most recent call last):
    ...
    harness.errors.ScenarioError: backends[0].deployments.gpt-4o.tpm: must be a positive integer
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, ValidationInfo, model_validator
from pydantic_core import ErrorDetails

from harness.errors import ScenarioError
from harness.inputs import SCENARIO_LIMIT, InputError, read_text
from harness.scenario.backends import BackendInstance, Cost, Deployment, FaultProfile, LatencyProfile
from harness.scenario.checks import Checks, Sweep
from harness.scenario.common import (
    Distribution,
    Duration,
    FieldError,
    Section,
    check_values,
    format_duration,
    index_unique,
    join_path,
    parse_duration,
)
from harness.scenario.gateway import GatewayConfig
from harness.scenario.question import Question
from harness.scenario.run import RunSettings
from harness.scenario.workload import Workload
from harness.scenario.yaml_reader import YamlLimit, read_yaml

__all__ = [
    "BackendInstance",
    "Checks",
    "Cost",
    "Deployment",
    "Distribution",
    "Duration",
    "FaultProfile",
    "GatewayConfig",
    "LatencyProfile",
    "Question",
    "RunSettings",
    "Scenario",
    "Sweep",
    "Workload",
    "apply_overrides",
    "format_duration",
    "load_scenario",
    "load_scenario_text",
    "parse_duration",
]


# validation context: whether the workload's deployments must exist in the backends
CHECK_WORKLOAD = "check_workload"


class Scenario(Section):
    """A whole experiment: mock pool, gateway, workload, run settings and checks."""

    description: str = Field("", description="what this scenario runs, in a line")
    question: Question | None = Field(None, description="the question the report opens by answering")
    run: RunSettings = Field(default_factory=RunSettings, description="duration, time scale, seed")
    backends: list[BackendInstance] = Field(
        default_factory=lambda: [BackendInstance()], description="the mock AOAI pool (one entry per resource)"
    )
    gateway: GatewayConfig = Field(default_factory=GatewayConfig, description="the reference gateway")
    workload: Workload = Field(default_factory=Workload, description="what the Locust users send")
    checks: Checks = Field(default_factory=Checks, description="thresholds that fail a headless run")
    sweep: Sweep = Field(default_factory=Sweep, description="settings `harness sweep` varies (a grid)")

    @model_validator(mode="before")
    @classmethod
    def _name_backends(cls, data: Any) -> Any:
        # Unnamed instances get distinct names (aoai-0, aoai-1, ...) so logs and the pool can refer to them.
        if isinstance(data, dict) and isinstance(data.get("backends"), list):
            data = dict(data)
            data["backends"] = [
                {**b, "name": b.get("name") or f"aoai-{i}"} if isinstance(b, dict) else b
                for i, b in enumerate(data["backends"])
            ]
        return data

    @model_validator(mode="after")
    def _check_backends(self, info: ValidationInfo) -> Scenario:
        seen = index_unique((backend.name for backend in self.backends), "backends", "name")
        if not self.backends:
            raise FieldError("backends", "needs at least one backend instance")
        self.gateway.check_members(seen)
        if (info.context or {}).get(CHECK_WORKLOAD, True):
            self.workload.check_deployments(self.deployment_names())
        self._check_currencies()
        return self

    def _check_currencies(self) -> None:
        # The report adds every instance's cost into one total: one currency per run.
        first: tuple[int, str] | None = None
        for i, backend in enumerate(self.backends):
            if backend.cost is None:
                continue
            if first is None:
                first = (i, backend.cost.currency)
            elif backend.cost.currency != first[1]:
                raise FieldError(
                    f"backends[{i}].cost.currency",
                    f"'{backend.cost.currency}' differs from backends[{first[0]}].cost.currency '{first[1]}' "
                    "(one currency per run)",
                )

    def backend(self, name: str) -> BackendInstance:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def deployment_names(self) -> set[str]:
        return {name for backend in self.backends for name in backend.deployments}

    def load_duration(self) -> float:
        """Scenario seconds the load runs: `run.duration`, or less when stages that do not repeat end first."""
        workload = self.workload
        if workload.stages and not workload.repeat_stages:
            return min(self.run.duration, sum(stage.duration for stage in workload.stages))
        return self.run.duration


def load_scenario(path: str | Path, overrides: list[str] | None = None, *, workload: bool = True) -> Scenario:
    """Read, override (`a.b=value`) and validate a scenario file; every failure is one ScenarioError line.

    `workload=False` leaves out the check that the workload's deployments exist: a server that only serves
    (`harness serve --only mock`) does not send the workload, so another process's deployments are no concern.
    """
    path = Path(path)
    try:
        # a regular file of bounded size: a FIFO or /dev/zero is one line, never a hang
        text = read_text(path, "scenario", SCENARIO_LIMIT)
    except InputError as exc:
        raise ScenarioError("", exc.message, file=str(path)) from None
    return load_scenario_text(text, source=str(path), overrides=overrides, workload=workload)


def load_scenario_text(
    text: str, source: str | None = None, overrides: list[str] | None = None, *, workload: bool = True
) -> Scenario:
    """Validate scenario YAML given as text (see `load_scenario`)."""
    try:
        data = read_yaml(text)
    except YamlLimit as exc:
        raise ScenarioError("", str(exc), file=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ScenarioError("", f"{where}{problem}", file=source) from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise ScenarioError("", _unreadable_yaml(exc), file=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError("", "a scenario must be a mapping of sections (run, backends, gateway, ...)", file=source)
    _check_values(data, source)
    if overrides:
        data = apply_overrides(data, overrides)
        _check_values(data, source)
    return validate_scenario(data, source, workload=workload)


def _check_values(data: dict[str, Any], source: str | None) -> None:
    try:
        check_values(data)
    except FieldError as exc:
        raise ScenarioError(exc.path, exc.message, file=source) from None


def _unreadable_yaml(exc: Exception) -> str:
    # PyYAML's own errors are YAMLErrors; these come from building the values (or from its recursive reader)
    if isinstance(exc, RecursionError):
        return "nested too deeply to read"
    return f"a value cannot be read ({exc})"


def validate_scenario(data: dict[str, Any], source: str | None = None, *, workload: bool = True) -> Scenario:
    try:
        return Scenario.model_validate(data, context={CHECK_WORKLOAD: workload})
    except ValidationError as exc:
        raise _first_error(exc, source) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted paths to YAML values: `gateway.circuit_breaker.tripDuration=PT30S`, `backends[0].region=X`.

    >>> apply_overrides({"run": {"seed": 1}}, ["run.seed=7"])
    {'run': {'seed': 7}}
    """
    data = copy.deepcopy(data)
    for override in overrides:
        if "=" not in override:
            raise ScenarioError(override, "an override must look like path=value")
        path, _, raw = override.partition("=")
        try:
            value = read_yaml(raw)
        except YamlLimit as exc:
            raise ScenarioError(path, str(exc)) from None
        except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
            raise ScenarioError(path, f"'{_clip(raw)}' is not a YAML value") from None
        keys = _split_path(path.strip())
        node: Any = data
        for depth, key in enumerate(keys[:-1]):
            nxt = keys[depth + 1]
            if isinstance(key, int):
                if not isinstance(node, list) or key >= len(node):
                    raise ScenarioError(join_path(keys[: depth + 1]), "no such list item to override")
                node = node[key]
            else:
                if not isinstance(node, dict):
                    raise ScenarioError(join_path(keys[: depth + 1]), "cannot override inside a non-mapping")
                node = node.setdefault(key, [] if isinstance(nxt, int) else {})
        last = keys[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ScenarioError(path, "no such list item to override")
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ScenarioError(path, "cannot override inside a non-mapping")
    return data


def _clip(text: str, length: int = 60) -> str:
    return text if len(text) <= length else text[: length - 3] + "..."


def _split_path(path: str) -> list[str | int]:
    keys: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            keys.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if not index.isdigit():
                raise ScenarioError(path, "list indexes must be numbers, as in backends[0]")
            keys.append(int(index))
            rest = rest.lstrip("[")
    if not keys:
        raise ScenarioError(path, "empty override path")
    return keys


def _first_error(exc: ValidationError, source: str | None) -> ScenarioError:
    """The most useful single line out of pydantic's error list."""
    errors = exc.errors()
    # Prefer the error whose location is deepest: with unions pydantic also reports the shallow alternatives.
    error = max(errors, key=lambda e: len(e["loc"]))
    loc = tuple(k for k in error["loc"] if not _is_union_tag(k))
    field_error = (error.get("ctx") or {}).get("error")
    if isinstance(field_error, FieldError):
        # A model-level check that belongs to one field: its path is relative to the model that raised it.
        return ScenarioError(join_path(loc + tuple(_split_path(field_error.path))), field_error.message, file=source)
    return ScenarioError(join_path(loc), _message(error), file=source)


def _is_union_tag(key: Any) -> bool:
    # pydantic inserts the member type's name (e.g. 'int', 'function-after[...]') into union locations
    return isinstance(key, str) and (key in {"int", "float", "str", "bool", "none"} or "[" in key)


def _too_short(min_length: Any) -> str:
    # an empty value and one a few characters short are different mistakes (a 31-character signing secret)
    if not isinstance(min_length, int) or min_length <= 1:
        return "must not be empty"
    return f"too short (at least {min_length} characters)"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    messages = {
        "extra_forbidden": "unknown field",
        "missing": "is required",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "string_type": "must be a string",
        "dict_type": "must be a mapping",
        "list_type": "must be a list",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
        "greater_than": f"must be > {ctx.get('gt')}",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "less_than": f"must be < {ctx.get('lt')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "enum": f"must be one of {ctx.get('expected')}",
        "string_pattern_mismatch": "must be a name of letters, digits, '.', '_' or '-'",
        "string_too_short": _too_short(ctx.get("min_length")),
        "too_short": f"needs at least {ctx.get('min_length')} item(s)",
        "too_long": f"allows at most {ctx.get('max_length')} item(s)",
        "finite_number": "must be a finite number",
    }
    if kind in messages:
        return messages[kind]
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message
