"""Read a run directory into typed DataFrames: records, gateway log, backend log, scenario and run info.

Every problem with a records file is one `RecordsError` naming the file and the line; a missing gateway or
backend log is not an error: the report says what it could not show (`RunData.missing`).

    >>> run = load_run("reports/runs/quickstart-20250101T000000")  # doctest: +SKIP
    >>> run.records["status"].value_counts()  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from harness.errors import RecordsError, ScenarioError, one_line
from harness.inputs import SCENARIO_LIMIT, InputError, read_text
from harness.records import (
    BACKEND_LOG,
    BACKEND_LOG_COLUMNS,
    ENDED,
    GATEWAY_LOG,
    GATEWAY_LOG_COLUMNS,
    RECORD_COLUMNS,
    RECORD_FIELDS,
    RECORDS_FILE,
    RUN_INFO_FILE,
    SCENARIO_FILE,
    Column,
)
from harness.scenario import Scenario, load_scenario_text
from harness.scenario.yaml_reader import read_yaml

# Integers are read as float64: they may be empty, and a writer may have written 256 as 256.0.
_ARROW_TYPES = {"str": pa.string(), "int": pa.float64(), "float": pa.float64(), "bool": pa.bool_()}

# The record fields the report uses. Every line is still checked for its number of fields, but only these
# columns are converted and kept, which keeps a million-row run well under a gigabyte.
REPORT_COLUMNS = (
    "run_id", "t_scenario", "app_id", "client_profile", "logical_id", "attempt", "operation", "deployment",
    "stream", "max_tokens", "status", "error_kind", "retry_after_s", "retry_after_ms", "backend", "region",
    "ttft_s", "latency_s", "usage_prompt", "usage_completion", "usage_total", "decision", "retry_wait_s",
    "retry_wait_source", "replica", "request_id",
)  # fmt: skip
# Few distinct values: held as categories (a small integer per row) instead of one string per row.
CATEGORICAL = {
    "run_id", "app_id", "client_profile", "operation", "deployment", "error_kind", "backend", "region",
    "decision", "retry_wait_source", "kind", "model", "to",
}  # fmt: skip
_CATEGORY = pa.dictionary(pa.int32(), pa.string())

# The log fields the report uses, read with the kinds `harness.records.logs` declares; numbers as float64 so
# that a null, an int and a float in the same field never clash.
_LOG_TYPES = {"str": pa.string(), "int": pa.float64(), "float": pa.float64(), "bool": pa.bool_()}
_GATEWAY_USED = (
    "kind", "t", "gateway_request_id", "client_request_id", "app_id", "deployment", "model", "stream", "backend", "status",
    "retry_after", "prompt_tokens", "completion_tokens", "total_tokens", "duration_s", "to", "until", "replica",
    "shared_state", "fallbacks",
)  # fmt: skip
_BACKEND_USED = (
    "t", "backend", "gateway_request_id", "client_request_id", "deployment", "model", "stream", "status", "decision", "estimate",
    "estimate_charged", "prompt_tokens", "completion_tokens", "total_tokens", "remaining_tokens", "utilization",
    "retry_after", "duration_s",
)  # fmt: skip


def log_schema(columns: tuple[Column, ...], used: tuple[str, ...]) -> pa.Schema:
    """The Arrow schema that reads `used` fields of a log with the kinds its columns declare."""
    kinds = {c.name: c.kind for c in columns}
    return pa.schema([(name, _LOG_TYPES[kinds[name]]) for name in used])


GATEWAY_SCHEMA = log_schema(GATEWAY_LOG_COLUMNS, _GATEWAY_USED)
BACKEND_SCHEMA = log_schema(BACKEND_LOG_COLUMNS, _BACKEND_USED)


@dataclass
class RunData:
    """One run directory, read and typed. Log frames are None when the log is absent."""

    run_dir: Path
    records: pd.DataFrame
    gateway: pd.DataFrame | None = None  # gateway log rows of kind "request"
    breakers: pd.DataFrame | None = None  # gateway log rows of kind "breaker"
    shared_state: pd.DataFrame | None = None  # gateway log rows of kind "shared_state" (Redis lost or back)
    backend: pd.DataFrame | None = None
    scenario: Scenario | None = None
    scenario_data: dict[str, Any] = field(default_factory=dict)  # scenario.yaml as written, for diffs
    run_info: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # what the report cannot show, and why

    @property
    def name(self) -> str:
        return str(self.run_info.get("run_id") or self.run_dir.name)


def load_run(run_dir: str | Path) -> RunData:
    """Read every file of a run directory; only the records are required."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RecordsError(str(run_dir), "no such run directory")
    missing: list[str] = []
    info = _read_run_info(run_dir / RUN_INFO_FILE, missing)
    # a run that never wrote its end may have been killed mid-write: its last, partial record is left out
    never_ended = ENDED in info and info[ENDED] is None
    records = read_records(run_dir / RECORDS_FILE, missing if never_ended else None)
    run = RunData(run_dir=run_dir, records=records, run_info=info, missing=missing)
    run.scenario_data, run.scenario = _read_scenario(run_dir / SCENARIO_FILE, run.missing)
    gateway_path = run_dir / GATEWAY_LOG
    if gateway_path.exists():
        log = read_json_lines(gateway_path, GATEWAY_SCHEMA, run.missing)
        run.gateway = log[log["kind"] == "request"].reset_index(drop=True)
        run.breakers = log[log["kind"] == "breaker"].sort_values("t", kind="stable").reset_index(drop=True)
        run.shared_state = log[log["kind"] == "shared_state"].sort_values("t", kind="stable").reset_index(drop=True)
    else:
        run.missing.append(
            f"no gateway log ({GATEWAY_LOG}): no breaker bands, no gateway token counts, no chargeback table"
        )
    backend_path = run_dir / BACKEND_LOG
    if backend_path.exists():
        run.backend = read_json_lines(backend_path, BACKEND_SCHEMA, run.missing)
    else:
        run.missing.append(f"no backend log ({BACKEND_LOG}): no admission drain, no backend usage for chargeback")
    return run


def read_records(path: Path, cut_notes: list[str] | None = None) -> pd.DataFrame:
    """records.csv -> DataFrame with the schema's types; any malformed line is a RecordsError naming it.

    With `cut_notes` (a run that was cut off), a last line without its newline is the record being written
    when the run died: it is left out, and a note says so, rather than failing the report.
    """
    file = str(path)
    if not path.exists():
        raise RecordsError(file, "no records file (is this a run directory?)")
    if path.stat().st_size == 0:
        raise RecordsError(file, "the file is empty (expected a header row of record fields)", line=1)
    header = _read_header(path)
    missing = [name for name in RECORD_FIELDS if name not in header]
    if missing:
        raise RecordsError(file, f"header lacks the record field(s): {', '.join(missing)}", line=1)
    last_line = _incomplete_last_line(path)
    source: Any = path
    if last_line is not None:
        if cut_notes is None:
            raise RecordsError(
                file, "truncated: the last line ends without a newline (the run stopped mid-write?)", last_line
            )
        cut_notes.append(f"{path.name}: line {last_line}, half written when the run was cut off, is left out")
        source = _without_partial_line(path)
    types = {c.name: _CATEGORY if c.name in CATEGORICAL else _ARROW_TYPES[c.kind] for c in RECORD_COLUMNS}
    bad_rows: list[Any] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append(row)
        return "skip"

    try:
        table = pa_csv.read_csv(
            source,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                include_columns=list(REPORT_COLUMNS),
                null_values=[""],
                strings_can_be_null=True,
                true_values=["true", "True", "TRUE", "1"],
                false_values=["false", "False", "FALSE", "0"],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise _locate_bad_value(path, header, str(exc)) from None
    if bad_rows:
        row = bad_rows[0]
        raise RecordsError(file, f"expected {row.expected_columns} fields, found {row.actual_columns}", row.number)
    if table.num_rows == 0:
        raise RecordsError(file, "no records after the header", line=2)
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    for required in ("t_scenario", "logical_id", "status"):
        nulls = frame[required].isna().to_numpy().nonzero()[0]
        if len(nulls):
            raise RecordsError(file, f"'{required}' is empty", line=int(nulls[0]) + 2)
    return frame


def read_json_lines(path: Path, schema: pa.Schema, notes: list[str]) -> pd.DataFrame:
    """A JSON-lines log -> DataFrame of the schema's fields (others ignored); a bad line is a RecordsError.

    A server stopped mid-write may leave the last line incomplete: that line is dropped with a note.
    """
    source: Any = path
    if _incomplete_last_line(path) is not None:
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        line = data.count(b"\n", 0, cut) + 1
        notes.append(f"{path.name}: dropped the incomplete last line {line}")
        source = pa.BufferReader(data[:cut])
    if path.stat().st_size == 0 or (isinstance(source, pa.BufferReader) and source.size() == 0):
        return pd.DataFrame(
            {name: pd.Series(dtype=_pandas_dtype(t)) for name, t in zip(schema.names, schema.types, strict=True)}
        )
    try:
        table = pa_json.read_json(
            source,
            read_options=pa_json.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except pa.ArrowInvalid as exc:
        raise _locate_bad_json(path, schema, str(exc)) from None
    for i, name in enumerate(table.column_names):
        if name in CATEGORICAL:
            table = table.set_column(i, name, table.column(i).dictionary_encode())
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _pandas_dtype(arrow_type: pa.DataType) -> str:
    return "float64" if pa.types.is_floating(arrow_type) else "boolean" if pa.types.is_boolean(arrow_type) else "str"


def _read_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        try:
            return next(csv.reader(handle))
        except (StopIteration, UnicodeDecodeError, csv.Error):
            raise RecordsError(str(path), "the first line is not a CSV header row", line=1) from None


def _without_partial_line(path: Path) -> pa.BufferReader:
    """The file up to its last newline, mapped rather than copied."""
    size = path.stat().st_size
    tail = max(0, size - (1 << 20))  # a record is far shorter than a MiB
    with path.open("rb") as handle:
        handle.seek(tail)
        end = handle.read().rfind(b"\n")
    keep = tail + end + 1 if end >= 0 else 0
    return pa.BufferReader(pa.memory_map(str(path)).read_buffer(keep))


def _incomplete_last_line(path: Path) -> int | None:
    with path.open("rb") as handle:
        if handle.seek(0, 2) == 0:
            return None
        handle.seek(-1, 2)
        if handle.read(1) == b"\n":
            return None
        handle.seek(0)
        newlines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 22), b""))
    return newlines + 1


def _locate_bad_value(path: Path, header: list[str], arrow_message: str) -> RecordsError:
    # Arrow says what failed but not reliably where: find the first cell that does not parse, line by line.
    kinds = {c.name: c.kind for c in RECORD_COLUMNS}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            for name, cell in zip(header, row, strict=False):
                kind = kinds.get(name)
                if cell and kind and not _parses(cell, kind):
                    return RecordsError(str(path), f"'{name}' must be {kind}, got {cell[:40]!r}", reader.line_num)
    return RecordsError(str(path), arrow_message.splitlines()[0])


def _parses(cell: str, kind: str) -> bool:
    try:
        if kind in ("int", "float"):
            float(cell)
        elif kind == "bool":
            return cell.lower() in ("true", "1", "false", "0")
    except ValueError:
        return False
    return True


def _locate_bad_json(path: Path, schema: pa.Schema, arrow_message: str) -> RecordsError:
    # Arrow's row numbers count within a block: find the first bad line ourselves (error path only).
    numeric = {n for n, t in zip(schema.names, schema.types, strict=True) if pa.types.is_floating(t)}
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = list(handle)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return RecordsError(str(path), f"not valid JSON ({exc.msg})", number)
        if not isinstance(row, dict):
            return RecordsError(str(path), "each line must be a JSON object", number)
        for name in numeric & row.keys():
            value = row[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                return RecordsError(str(path), f"'{name}' must be a number, got {value!r:.40}", number)
    return RecordsError(str(path), arrow_message.splitlines()[0])


def _read_run_info(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.exists():
        notes.append(f"no {RUN_INFO_FILE}: run id, client profile and time scale come from the records only")
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordsError(str(path), f"not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(info, dict):
        raise RecordsError(str(path), "must hold a JSON object")
    return info


def _read_scenario(path: Path, notes: list[str]) -> tuple[dict[str, Any], Scenario | None]:
    """scenario.yaml as written and validated; a RecordsError in one line when it is there but cannot be read.

    Without it a report loses its limits, gateway facts, planned duration and question findings: a run that
    has one the report cannot read fails loudly rather than quietly drawing less.
    """
    if not path.exists():
        notes.append(f"no {SCENARIO_FILE}: limits are not drawn on the throughput figures")
        return {}, None
    try:
        text = read_text(path, "scenario", SCENARIO_LIMIT)
        scenario = load_scenario_text(text, source=str(path))
        data = read_yaml(text) or {}  # already validated, so within the alias limits
    except (InputError, ScenarioError) as exc:
        detail = f"{exc.path}: {exc.message}" if isinstance(exc, ScenarioError) and exc.path else exc.message
        raise RecordsError(
            str(path),
            one_line(
                f"the run's scenario cannot be read ({detail}); a report without it would lack its "
                "limits, gateway facts and findings"
            ),
        ) from None
    return data, scenario


def finite_or_none(value: Any) -> Any:
    """JSON-safe number: NaN and infinities become None, numpy scalars plain Python."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
