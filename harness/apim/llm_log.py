"""APIM's own LLM logs -> a trace the harness replays, and a scenario skeleton around it.

Reads the Log Analytics table ApiManagementGatewayLlmLog (TimeGenerated, CorrelationId, DeploymentName,
ModelName, IsStreamCompletion, PromptTokens, CompletionTokens, TotalTokens, OperationName, Region) and,
optionally, ApiManagementGatewayLogs joined on CorrelationId (ApimSubscriptionId, BackendId, ResponseCode,
CallerIpAddress), each as Log Analytics exports them: CSV (headers may carry a ` [UTC]` suffix, times as
`11/24/2026, 2:00:03.959 PM` or ISO 8601), a JSON array of rows, JSON lines, or the query API's
`{"tables": [{"columns": [...], "rows": [...]}]}`.

The log does not carry `max_tokens`, so a rule gives it (`MaxTokensRule`). Requests APIM refused are kept:
a gateway-log row with no LLM row, or an LLM row counting no tokens, is sized from the request (`RequestSize`)
and its peers, and marked with its production status. Rows that cannot be replayed are summed up by reason,
with the first file:line of each, in one line; AzureDiagnostics column names (`responseCode_d`) are read as the
resource-specific tables spell them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import ScenarioError
from harness.inputs import TRACE_LIMIT, read_text

ANONYMOUS = "no-subscription"  # the app of a request without a subscription (a valid app id)
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


# The trace column the import adds when production refused some of the requests: the status APIM answered
# (429, 403, ...). The replay ignores it; it says which replayed requests production never served.
PRODUCTION_STATUS_COLUMN = "production_status"
# Request bytes per prompt token when the log has no request to learn it from: ~4 characters per token
# for English text with OpenAI's tokenizers, the usual rule of thumb.
DEFAULT_BYTES_PER_TOKEN = 4.0
GATEWAY_CATEGORY, LLM_CATEGORY = "gatewaylogs", "gatewayllmlogs"  # AzureDiagnostics' Category, lower case


@dataclass
class Imported:
    rows: list[dict[str, Any]]  # trace rows (harness.records.TRACE_COLUMNS, + PRODUCTION_STATUS_COLUMN)
    backends: dict[str, set[str]]  # backend id -> deployments it served
    models: dict[str, str]  # deployment -> model
    apps: list[str]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows
    first_at: dict[str, str] = field(default_factory=dict)  # reason -> file:line of its first row
    kept: Counter[str] = field(default_factory=Counter)  # how each kept request was read -> requests
    total: int = 0  # requests seen (LLM log correlation ids, and gateway-only requests)

    @property
    def refused_in_production(self) -> int:
        return sum(1 for row in self.rows if row.get(PRODUCTION_STATUS_COLUMN) not in (None, "", 200))

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.first_at.setdefault(reason, where)

    def summary(self) -> list[str]:
        """What was kept and what was dropped, by reason: two lines."""
        how = ", ".join(f"{n} {what}" for what, n in self.kept.most_common())
        lines = [f"kept {len(self.rows)} of {self.total} requests" + (f" ({how})" if how else "")]
        if self.skipped:
            why = "; ".join(
                f"{n} {reason} (first at {self.first_at[reason]})" for reason, n in self.skipped.most_common()
            )
            lines.append(f"dropped {sum(self.skipped.values())} rows: {why}")
        return lines


def import_llm_log(llm_path: Path, gateway_path: Path | None, options: Options) -> Imported:
    result = Imported(rows=[], backends={}, models={}, apps=[])
    joined = _gateway_rows(gateway_path, result) if gateway_path else {}
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for where, row in read_table(llm_path):
        category = str(row.get("Category") or LLM_CATEGORY).lower()
        if category not in (LLM_CATEGORY, "gatewayllmlog"):
            result.skip(f"not an LLM log row (Category {row.get('Category')})", where)
            continue
        cid = str(row.get("CorrelationId") or "").strip()
        if not cid:
            result.skip("no CorrelationId", where)
            continue
        groups.setdefault(cid, []).append((where, row))
    calibration = _bytes_per_token(groups, joined)
    candidates: list[tuple[str, datetime, dict[str, Any], str, str]] = []
    for cid, rows in groups.items():
        result.total += 1
        usage = [(w, r) for w, r in rows if _has_counts(r)]
        where, row = usage[0] if usage else rows[0]
        for other, other_row in rows:
            if other != where:
                reason = (
                    "a CorrelationId seen before (one request per id)"
                    if _has_counts(other_row)
                    else ("message rows (their request's usage is on another row)")
                )
                result.skip(reason, other)
        gateway = joined.pop(cid, (where, None))[1]
        try:
            when, trace_row, backend, how = _llm_request(row, gateway, options, calibration, bool(usage))
        except _Skip as skip:
            result.skip(skip.reason, where)
            continue
        candidates.append((where, when, trace_row, backend, how))
    for where, gateway in joined.values():
        result.total += 1
        try:
            when, trace_row, backend = _refused_request(gateway, options, calibration)
        except _Skip as skip:
            result.skip(skip.reason, where)
            continue
        how = "refused in production with no LLM log row, sized from RequestSize"
        candidates.append((where, when, trace_row, backend, how))
    _fill_unknown_max_tokens([c[2] for c in candidates], options)
    kept: list[tuple[datetime, dict[str, Any]]] = []
    names: dict[str, str] = {}
    for where, when, trace_row, backend, how in candidates:
        model = trace_row.pop("_model", None)
        if (options.start and when < options.start) or (options.end and when >= options.end):
            result.skip("outside the time window", where)
            continue
        if options.anonymise:
            trace_row["app"] = names.setdefault(trace_row["app"], f"app-{len(names) + 1}")
        kept.append((when, trace_row))
        result.kept[how] += 1
        result.backends.setdefault(backend, set()).add(trace_row["deployment"])
        result.models.setdefault(trace_row["deployment"], model or trace_row["deployment"])
    kept.sort(key=lambda item: item[0])
    first = kept[0][0] if kept else None
    for when, trace_row in kept:
        assert first is not None
        trace_row["offset_s"] = round((when - first).total_seconds() / options.rate, 3)
        result.rows.append(trace_row)
        if trace_row["app"] not in result.apps:
            result.apps.append(trace_row["app"])
    return result


def _gateway_rows(path: Path, result: Imported) -> dict[str, tuple[str, dict[str, Any]]]:
    """The gateway log's rows by CorrelationId (rows of other AzureDiagnostics categories left out)."""
    joined: dict[str, tuple[str, dict[str, Any]]] = {}
    for where, row in read_table(path):
        category = str(row.get("Category") or GATEWAY_CATEGORY).lower()
        if category != GATEWAY_CATEGORY:
            continue
        cid = str(row.get("CorrelationId") or "").strip()
        if not cid:
            raise ScenarioError(where, "no CorrelationId: the gateway log is joined to the LLM log on it")
        joined.setdefault(cid, (where, row))
    return joined


def _has_counts(row: dict[str, Any]) -> bool:
    return any(row.get(c) not in (None, "") for c in ("PromptTokens", "CompletionTokens", "TotalTokens"))


def _status(gateway: dict[str, Any] | None) -> int | None:
    if gateway is None:
        return None
    try:
        return int(float(gateway.get("ResponseCode")))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _bytes_per_token(
    groups: dict[str, list[tuple[str, dict[str, Any]]]], joined: dict[str, tuple[str, dict[str, Any]]]
) -> float:
    """Request bytes per prompt token, learned from the requests that have both (the median), else 4."""
    ratios = []
    for cid, rows in groups.items():
        gateway = joined.get(cid)
        if gateway is None or not 200 <= (_status(gateway[1]) or 0) < 300:
            continue
        size = _number(gateway[1].get("RequestSize"))
        prompt = next((_number(r.get("PromptTokens")) for _, r in rows if _has_counts(r)), None)
        if size and prompt:
            ratios.append(size / prompt)
    return statistics.median(ratios) if ratios else DEFAULT_BYTES_PER_TOKEN


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _operation(row: dict[str, Any], gateway: dict[str, Any] | None) -> str:
    """embeddings or chat, from the LLM row's OperationName or model, or the gateway row's Url and OperationId."""
    columns = ("OperationName", "ModelName", "OperationId", "Url")
    text = " ".join(str(source.get(column, "")) for source in (row, gateway or {}) for column in columns).lower()
    return "embeddings" if "embedding" in text else "chat"


def _app(row: dict[str, Any], gateway: dict[str, Any] | None, options: Options) -> str:
    value = (gateway or {}).get(options.app_column) or row.get(options.app_column)
    return str(value).strip() if value not in (None, "") and str(value).strip() else ANONYMOUS


def _llm_request(
    row: dict[str, Any], gateway: dict[str, Any] | None, options: Options, bytes_per_token: float, counted: bool
) -> tuple[datetime, dict[str, Any], str, str]:
    when = parse_time(row.get("TimeGenerated"))
    if when is None:
        raise _Skip("no readable TimeGenerated", f"TimeGenerated {row.get('TimeGenerated')!r} is not a time")
    deployment = str(row.get("DeploymentName") or "").strip() or _deployment_of(gateway)
    if not deployment:
        raise _Skip("no DeploymentName", "DeploymentName is empty")
    status = _status(gateway)
    refused = status is not None and not 200 <= status < 300
    if not counted and not refused:
        raise _Skip("LLM log rows without token counts", "no PromptTokens or CompletionTokens")
    operation = _operation(row, gateway)
    prompt = _count(row, "PromptTokens") if counted else 0
    completion = _count(row, "CompletionTokens") if counted else 0
    stream = _flag(row.get("IsStreamCompletion"))
    how = "from the LLM log"
    max_tokens: int | str | None = None if operation == "embeddings" else options.max_tokens.value(completion)
    if refused and completion == 0:
        # refused before the model ran (a 429 or 403 from the token limit): the log counts no completion and
        # perhaps no prompt, yet the request asked for tokens; its prompt comes from the request's bytes when
        # the log has none, its max_tokens from its peers
        prompt = prompt or _estimated_prompt(gateway, bytes_per_token)
        max_tokens = None if operation == "embeddings" else _UNKNOWN
        how = f"refused in production ({status}), tokens estimated"
    elif prompt == 0 and completion == 0 and operation == "chat":
        # nothing counted and no status to say why (no gateway log): sized like the deployment's other requests
        max_tokens = _UNKNOWN
        how = "no tokens counted (refused?), sized like their peers"
    trace_row = {
        "offset_s": 0.0,
        "app": _app(row, gateway, options),
        "operation": operation,
        "prompt_tokens": prompt,
        "max_tokens": max_tokens,
        "stream": stream and operation == "chat",
        "deployment": deployment,
        PRODUCTION_STATUS_COLUMN: status,
        "_model": str(row.get("ModelName") or "") or None,
    }
    return when, trace_row, str((gateway or {}).get("BackendId") or "aoai"), how


_UNKNOWN = "unknown"  # max_tokens to fill from the kept requests of the same deployment


def _refused_request(
    gateway: dict[str, Any], options: Options, bytes_per_token: float
) -> tuple[datetime, dict[str, Any], str]:
    status = _status(gateway)
    if status is None:
        raise _Skip("gateway log rows without an LLM row or a ResponseCode", "no ResponseCode")
    if 200 <= status < 300:
        raise _Skip("gateway log rows answered without an LLM log row (a cache hit, or not an LLM API)", "2xx")
    deployment = _deployment_of(gateway)
    if not deployment:
        raise _Skip("gateway log rows without an LLM row and no deployment in their Url", "no deployment")
    when = parse_time(gateway.get("TimeGenerated"))
    if when is None:
        raise _Skip("no readable TimeGenerated", "TimeGenerated is not a time")
    operation = _operation({}, gateway)
    trace_row = {
        "offset_s": 0.0,
        "app": _app({}, gateway, options),
        "operation": operation,
        "prompt_tokens": _estimated_prompt(gateway, bytes_per_token),
        "max_tokens": None if operation == "embeddings" else _UNKNOWN,
        "stream": False,
        "deployment": deployment,
        PRODUCTION_STATUS_COLUMN: status,
    }
    return when, trace_row, str(gateway.get("BackendId") or "aoai")


_DEPLOYMENT_IN_URL = re.compile(r"/deployments/([^/?#]+)")


def _deployment_of(gateway: dict[str, Any] | None) -> str:
    found = _DEPLOYMENT_IN_URL.search(str((gateway or {}).get("Url") or ""))
    return found.group(1) if found else ""


def _estimated_prompt(gateway: dict[str, Any] | None, bytes_per_token: float) -> int:
    size = _number((gateway or {}).get("RequestSize"))
    return max(1, round(size / bytes_per_token)) if size else 0


def _fill_unknown_max_tokens(rows: list[dict[str, Any]], options: Options) -> None:
    """max_tokens of refused requests: the median of the deployment's served chat requests (of all served
    requests when it has none), following the --max-tokens rule; an unknown prompt likewise."""
    served = [row for row in rows if row["max_tokens"] != _UNKNOWN and row["prompt_tokens"] > 0]
    for row in rows:
        peers = [p for p in served if p["deployment"] == row["deployment"]] or served
        if row["max_tokens"] == _UNKNOWN:
            completions = [p["max_tokens"] for p in peers if isinstance(p["max_tokens"], int)]
            row["max_tokens"] = statistics.median_low(completions) if completions else None
        if row["prompt_tokens"] == 0:
            prompts = [p["prompt_tokens"] for p in peers if p["prompt_tokens"] > 0]
            row["prompt_tokens"] = statistics.median_low(prompts) if prompts else 1


class _Skip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


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
    text = read_text(path, "log export", TRACE_LIMIT, encoding="utf-8-sig")
    stripped = text.lstrip()
    rows = _json_rows(text, path) if stripped.startswith(("[", "{")) else _csv_rows(text, path)
    for count, (where, row) in enumerate(rows, start=1):
        if count > _MAX_ROWS:
            raise ScenarioError(str(path), f"more than {_MAX_ROWS:,} rows: export a shorter time window")
        yield where, row


# Columns the import reads, by their lower-case name: the resource-specific tables' names. AzureDiagnostics
# writes the same properties camel-cased with a type suffix (`responseCode_d`, `apimSubscriptionId_s`).
KNOWN_COLUMNS = {
    name.lower(): name
    for name in (
        "TimeGenerated", "CorrelationId", "Category", "DeploymentName", "ModelName", "IsStreamCompletion",
        "PromptTokens", "CompletionTokens", "TotalTokens", "OperationName", "Region", "SequenceNumber",
        "ApimSubscriptionId", "BackendId", "ResponseCode", "CallerIpAddress", "Url", "OperationId", "RequestSize",
        "Method", "ApiId",
    )
}  # fmt: skip
_TYPE_SUFFIX = re.compile(r"_(s|d|b|g|t|n|z)$")


def column_name(name: str) -> str:
    """A column's name as the resource-specific tables spell it.

    >>> column_name("TimeGenerated [UTC]"), column_name("responseCode_d"), column_name("apimSubscriptionId_s")
    ('TimeGenerated', 'ResponseCode', 'ApimSubscriptionId')
    """
    base = name.split(" [", 1)[0].strip()
    for candidate in (base, _TYPE_SUFFIX.sub("", base)):
        if candidate.lower() in KNOWN_COLUMNS:
            return KNOWN_COLUMNS[candidate.lower()]
    return base


_column = column_name


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
