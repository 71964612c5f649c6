"""Trace replay: a recorded workload (CSV or JSON lines) sent again in time order.

Columns: `offset_s` (scenario seconds from the start; `t` and `time` also accepted), `app`, `operation`,
`prompt_tokens`, `max_tokens` (empty = unset), `stream` (true/false), optionally `deployment`. An empty
`app` is the workload's first app; any other must be one of the workload's apps.

    >>> rows = parse_trace_text("offset_s,app,operation,prompt_tokens,max_tokens,stream\\n1.5,a,chat,20,,false\\n", "t.csv")
    >>> rows[0].offset_s, rows[0].max_tokens
    (1.5, None)
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.aoai.routes import OPERATIONS
from harness.errors import ScenarioError, not_utf8
from harness.inputs import TRACE_LIMIT, InputError, read_bytes
from harness.scenario.common import MAX_DURATION_S
from harness.scenario.workload import MAX_PROMPT_TOKENS

# max_tokens is a 32-bit integer on the service
MAX_TOKENS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class TraceRow:
    offset_s: float
    app: str
    operation: str
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    deployment: str | None = None


def trace_path(scenario_path: str, file: str) -> Path:
    """Where a scenario's trace file is: as given, else next to the scenario file.

    >>> trace_path("scenarios/x.yaml", "/abs/t.csv").as_posix()
    '/abs/t.csv'
    """
    path = Path(file)
    if not path.is_absolute() and not path.exists():
        path = Path(scenario_path).parent / file
    return path


def load_trace(path: str | Path, apps: Collection[str] = (), deployments: Collection[str] = ()) -> list[TraceRow]:
    """Rows of a trace file, sorted by offset; a bad row (or an app not in `apps`, a deployment not in
    `deployments`, when given) is a one-line error naming file and line."""
    path = Path(path)
    try:
        # a regular file of bounded size: a FIFO or a device is one line, never a hang
        text = read_bytes(path, "trace", TRACE_LIMIT).decode("utf-8")
    except InputError as exc:
        raise ScenarioError("workload.trace.file", str(exc)) from None
    except UnicodeDecodeError as exc:  # file:line, as every other trace error
        raise ScenarioError("", f"{path}:{not_utf8(exc).removeprefix('line ')}") from None
    return parse_trace_text(text, str(path), apps, deployments)


def parse_trace_text(
    text: str, source: str, apps: Collection[str] = (), deployments: Collection[str] = ()
) -> list[TraceRow]:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        raw = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    raw.append((number, json.loads(line, parse_constant=_not_json)))
                except (ValueError, RecursionError):
                    raise ScenarioError("", f"{source}:{number}: not a JSON object") from None
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        raw = []
        try:
            for row in reader:
                raw.append((reader.line_num, row))
        except csv.Error as exc:
            raise ScenarioError("", f"{source}:{reader.line_num}: not CSV ({exc})") from None
    rows = [_row(item, source, number, apps, deployments) for number, item in raw]
    rows.sort(key=lambda r: r.offset_s)
    return rows


def _row(item: Any, source: str, line: int, apps: Collection[str], deployments: Collection[str]) -> TraceRow:
    if not isinstance(item, dict):
        raise ScenarioError("", f"{source}:{line}: a trace row must be an object")

    def fail(message: str) -> ScenarioError:
        return ScenarioError("", f"{source}:{line}: {message}")

    offset = next((item[k] for k in ("offset_s", "t", "time", "offset") if item.get(k) not in (None, "")), None)
    offset_s = _number(offset, MAX_DURATION_S)
    if offset_s is None:
        raise fail(f"offset_s must be a number of seconds from 0 to {MAX_DURATION_S:.0f}")
    operation = item.get("operation") or "chat"
    if operation not in OPERATIONS:
        raise fail(f"operation must be one of {', '.join(OPERATIONS)}")
    prompt = _number(item.get("prompt_tokens") or 0, MAX_PROMPT_TOKENS, whole=True)
    if prompt is None:
        raise fail(f"prompt_tokens must be a whole number from 0 to {MAX_PROMPT_TOKENS}")
    max_raw = item.get("max_tokens")
    max_tokens = None if max_raw in (None, "") else _number(max_raw, MAX_TOKENS, whole=True)
    if max_raw not in (None, "") and max_tokens is None:
        raise fail(f"max_tokens must be empty or a whole number from 0 to {MAX_TOKENS}")
    app = item.get("app") or ""
    deployment = item.get("deployment") or None
    if not isinstance(app, str) or not isinstance(deployment, str | None):
        raise fail("app and deployment must be names (text)")
    if app and apps and app not in apps:
        raise fail(f"app '{app}' is not one of the workload's apps ({', '.join(apps)})")
    if deployment and deployments and deployment not in deployments:
        raise fail(f"deployment '{deployment}' is not one the backends have ({', '.join(sorted(deployments))})")
    stream_raw = item.get("stream", False)
    stream = stream_raw if isinstance(stream_raw, bool) else str(stream_raw).strip().lower() in ("true", "1", "yes")
    return TraceRow(
        offset_s,
        app,
        operation,
        max(1, int(prompt)),
        None if max_tokens is None else int(max_tokens),
        stream,
        deployment,
    )


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _number(value: Any, largest: float, *, whole: bool = False) -> float | None:
    """`value` (a number, or its text in CSV) as a finite number from 0 to `largest`; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
        return None
    if not (math.isfinite(number) and 0 <= number <= largest) or (whole and not number.is_integer()):
        return None
    return number
