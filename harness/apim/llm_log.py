"""APIM's own LLM logs -> a trace the harness replays, and a scenario skeleton around it.

Reads the Log Analytics table ApiManagementGatewayLlmLog (TimeGenerated, CorrelationId, DeploymentName,
ModelName, IsStreamCompletion, PromptTokens, CompletionTokens, TotalTokens, OperationName, Region) and,
optionally, ApiManagementGatewayLogs joined on CorrelationId (ApimSubscriptionId, BackendId, ResponseCode,
CallerIpAddress), each as Log Analytics exports them: CSV (headers may carry a ` [UTC]` suffix, times as
`11/24/2026, 2:00:03.959 PM` or ISO 8601), a JSON array of rows, JSON lines, or the query API's
`{"tables": [{"columns": [...], "rows": [...]}]}`.

The log does not carry `max_tokens`, so a rule gives it (`MaxTokensRule`). A row that cannot be replayed is
skipped with one line naming file:line, and the skipped rows are summed up by reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import ScenarioError

ANONYMOUS = "(no subscription)"
_TIME_FORMATS = ("%m/%d/%Y, %I:%M:%S.%f %p", "%m/%d/%Y, %I:%M:%S %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S")
_MAX_ROWS = 5_000_000  # a trace is replayed in memory: beyond this, cut the export into windows


@dataclass(frozen=True)
class MaxTokensRule:
    """What max_tokens a replayed request sends: `completion:F` (its completion tokens x F, rounded up),
    `fixed:N`, or `unset` (none sent).

    >>> MaxTokensRule.parse("completion:1.5").value(41), MaxTokensRule.parse("fixed:256").value(41)
    (62, 256)
    """

    kind: str
    amount: float = 0.0

    @staticmethod
    def parse(text: str) -> MaxTokensRule:
        kind, _, amount = text.partition(":")
        if kind == "unset" and not amount:
            return MaxTokensRule("unset")
        try:
            number = float(amount)
        except ValueError:
            number = math.nan
        if kind in ("completion", "fixed") and math.isfinite(number) and number > 0:
            return MaxTokensRule(kind, number)
        raise ScenarioError("--max-tokens", f"'{text}' is not completion:FACTOR, fixed:N or unset")

    def value(self, completion_tokens: int) -> int | None:
        if self.kind == "unset":
            return None
        if self.kind == "fixed":
            return int(self.amount)
        return max(1, math.ceil(completion_tokens * self.amount))


@dataclass
class Options:
    app_column: str = "ApimSubscriptionId"
    max_tokens: MaxTokensRule = field(default_factory=lambda: MaxTokensRule("completion", 1.0))
    start: datetime | None = None  # rows before are left out
    end: datetime | None = None  # rows at or after are left out
    rate: float = 1.0  # 2: replay twice as fast
    anonymise: bool = False  # apps become app-1, app-2, ... in order of first appearance


@dataclass
class Imported:
    rows: list[dict[str, Any]]  # trace rows (harness.records.TRACE_COLUMNS)
    backends: dict[str, set[str]]  # backend id -> deployments it served
    models: dict[str, str]  # deployment -> model
    apps: list[str]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows
    lines: list[str] = field(default_factory=list)  # one per skipped row: file:line: why
    total: int = 0


def import_llm_log(llm_path: Path, gateway_path: Path | None, options: Options) -> Imported:
    joined = {row["CorrelationId"]: row for _, row in read_table(gateway_path)} if gateway_path else {}
    result = Imported(rows=[], backends={}, models={}, apps=[])
    seen: set[str] = set()
    kept: list[tuple[datetime, dict[str, Any]]] = []
    names: dict[str, str] = {}
    for where, row in read_table(llm_path):
        result.total += 1
        try:
            when, trace_row, backend = _trace_row(row, joined, options)
        except _Skip as skip:
            result.skipped[skip.reason] += 1
            result.lines.append(f"{where}: {skip.detail}: skipped")
            continue
        if row.get("CorrelationId") in seen:
            result.skipped["a CorrelationId seen before (one request per id)"] += 1
            continue
        seen.add(str(row.get("CorrelationId")))
        if (options.start and when < options.start) or (options.end and when >= options.end):
            result.skipped["outside the time window"] += 1
            continue
        if options.anonymise:
            trace_row["app"] = names.setdefault(trace_row["app"], f"app-{len(names) + 1}")
        kept.append((when, trace_row))
        result.backends.setdefault(backend, set()).add(trace_row["deployment"])
        result.models.setdefault(trace_row["deployment"], str(row.get("ModelName") or trace_row["deployment"]))
    kept.sort(key=lambda item: item[0])
    first = kept[0][0] if kept else None
    for when, trace_row in kept:
        assert first is not None
        trace_row["offset_s"] = round((when - first).total_seconds() / options.rate, 3)
        result.rows.append(trace_row)
        if trace_row["app"] not in result.apps:
            result.apps.append(trace_row["app"])
    return result


class _Skip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _trace_row(
    row: dict[str, Any], joined: dict[str, dict[str, Any]], options: Options
) -> tuple[datetime, dict[str, Any], str]:
    when = parse_time(row.get("TimeGenerated"))
    if when is None:
        raise _Skip("no readable TimeGenerated", f"TimeGenerated {row.get('TimeGenerated')!r} is not a time")
    deployment = str(row.get("DeploymentName") or "").strip()
    if not deployment:
        raise _Skip("no DeploymentName", "DeploymentName is empty")
    prompt = _count(row, "PromptTokens")
    completion = _count(row, "CompletionTokens")
    stream = _flag(row.get("IsStreamCompletion"))
    gateway = joined.get(str(row.get("CorrelationId")), {})
    app = str(gateway.get(options.app_column) or row.get(options.app_column) or ANONYMOUS)
    operation = "embeddings" if "embedding" in str(row.get("OperationName", "")).lower() else "chat"
    trace_row = {
        "offset_s": 0.0,
        "app": app,
        "operation": operation,
        "prompt_tokens": prompt,
        "max_tokens": None if operation == "embeddings" else options.max_tokens.value(completion),
        "stream": stream and operation == "chat",
        "deployment": deployment,
    }
    return when, trace_row, str(gateway.get("BackendId") or "aoai")


def _count(row: dict[str, Any], column: str) -> int:
    value = row.get(column)
    try:
        number = float(value) if value not in (None, "") else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or number != int(number) or number > 10_000_000:
        raise _Skip(f"bad {column}", f"{column} {value!r} is not a count of tokens")
    return int(number)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise _Skip("bad IsStreamCompletion", f"IsStreamCompletion {value!r} is not true or false")


def parse_time(value: Any) -> datetime | None:
    """A Log Analytics time: ISO 8601 (`2026-11-24T14:00:03.959Z`) or its CSV export (`11/24/2026, 2:00:03.959 PM`),
    in UTC.

    >>> parse_time("11/24/2026, 2:00:03.959 PM").isoformat()
    '2026-11-24T14:00:03.959000+00:00'
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
        for pattern in _TIME_FORMATS:
            try:
                parsed = datetime.strptime(text, pattern)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def read_table(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file:line, row) of a Log Analytics export; column names without their ` [UTC]`-style suffix."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ScenarioError(str(path), "no such file") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    stripped = text.lstrip()
    rows = _json_rows(text, path) if stripped.startswith(("[", "{")) else _csv_rows(text, path)
    for count, (where, row) in enumerate(rows, start=1):
        if count > _MAX_ROWS:
            raise ScenarioError(str(path), f"more than {_MAX_ROWS:,} rows: export a shorter time window")
        yield where, row


def _column(name: str) -> str:
    return name.split(" [", 1)[0].strip()


def _csv_rows(text: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            yield f"{path}:{reader.line_num}", {_column(k): v for k, v in row.items() if k is not None}
    except csv.Error as exc:
        raise ScenarioError(f"{path}:{reader.line_num}", f"not CSV ({exc})") from None


def _json_rows(text: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError:
        yield from _json_lines(text, path)
        return
    except (ValueError, RecursionError):
        raise ScenarioError(str(path), "not JSON (a NaN or infinity, or nested too deeply)") from None
    if isinstance(data, dict) and isinstance(data.get("tables"), list) and data["tables"]:
        table = data["tables"][0]
        names = [_column(str(c.get("name", ""))) for c in table.get("columns", []) if isinstance(c, dict)]
        for i, values in enumerate(table.get("rows", []), start=1):
            if not isinstance(values, list) or len(values) != len(names):
                raise ScenarioError(f"{path}: tables[0].rows[{i - 1}]", f"needs {len(names)} values")
            yield f"{path}: row {i}", dict(zip(names, values, strict=True))
        return
    if not isinstance(data, list):
        raise ScenarioError(str(path), "expected a JSON array of rows, JSON lines or a query result with tables")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise ScenarioError(f"{path}: row {i}", "not a JSON object")
        yield f"{path}: row {i}", {_column(k): v for k, v in row.items()}


def _json_lines(text: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise ScenarioError(f"{path}:{number}", "not a JSON object") from None
        if not isinstance(row, dict):
            raise ScenarioError(f"{path}:{number}", "not a JSON object")
        yield f"{path}:{number}", {_column(k): v for k, v in row.items()}


def _no_constant(name: str) -> Any:
    raise ValueError(name)


PEAK_WINDOW_S = 10.0  # users = the most requests the trace starts within this many scenario seconds


def trace_users(rows: list[dict[str, Any]]) -> int:
    """Users enough to send the trace on time: the most requests started within any 10 scenario seconds."""
    offsets = [row["offset_s"] for row in rows]
    most, low = 1, 0
    for high, offset in enumerate(offsets):
        while offsets[low] <= offset - PEAK_WINDOW_S:
            low += 1
        most = max(most, high - low + 1)
    return min(most, 10_000)


def scenario_skeleton(imported: Imported, trace_file: str, tpm: int, source: str) -> dict[str, Any]:
    """A scenario that replays the trace: one backend per BackendId with the deployments it served, one app per
    caller, all backends at priority 1 (import the real pool with `harness scenario from-apim`)."""
    last = imported.rows[-1]["offset_s"] if imported.rows else 0.0
    return {
        "description": f"replay of {len(imported.rows)} requests from {source}",
        "question": {
            "ask": "What would this traffic have done under these settings?",
            "answered_by": ["outcomes", "by_app", "by_backend"],
        },
        "run": {"duration": math.ceil(last) + 60, "time_scale": 10, "seed": 1},
        "backends": [
            {
                "name": name,
                "deployments": {d: {"tpm": tpm, "model": imported.models.get(d, d)} for d in sorted(deployments)},
            }
            for name, deployments in sorted(imported.backends.items())
        ],
        "workload": {
            "apps": [{"id": app, "client_profile": "openai-python"} for app in imported.apps],
            "trace": {"file": trace_file, "users": trace_users(imported.rows)},
        },
    }
