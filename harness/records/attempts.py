"""The record schema: one flat row per HTTP attempt. The contract between the load generator and reports.

Reports read only these records and the two server logs. A column is never renamed or removed without
changing every reader; new columns go at the end.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from harness.clock import Clock
from harness.errors import RecordsError


class Column(NamedTuple):
    name: str
    kind: str  # "str", "int", "float" or "bool"; empty cells mean "not present"
    description: str


RECORD_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "str", "identifier of the run (the run directory name)"),
    Column("t_scenario", "float", "scenario time the attempt started, seconds since the Unix epoch"),
    Column("t_wall", "float", "wall-clock time the attempt started, seconds since the Unix epoch"),
    Column("user", "str", "Locust user that sent it"),
    Column("app_id", "str", "app of the workload (also the JWT appid the gateway sees)"),
    Column("client_profile", "str", "client retry profile: none, openai-python-legacy, openai-python, custom"),
    Column("logical_id", "str", "id shared by every attempt of one logical request"),
    Column("attempt", "int", "1 for the first attempt, 2 for the first retry, ..."),
    Column("request_id", "str", "x-ms-client-request-id the client sent"),
    Column("gateway_request_id", "str", "the gateway's own request id (response header)"),
    Column("backend_request_id", "str", "apim-request-id / x-request-id of the backend that answered"),
    Column("operation", "str", "chat, completions or embeddings"),
    Column("deployment", "str", "deployment (or model on the v1 route) requested"),
    Column("stream", "bool", "streamed response requested"),
    Column("max_tokens", "int", "max_tokens sent (empty when unset)"),
    Column("prompt_tokens_est", "int", "prompt tokens as the client counted them"),
    Column("status", "int", "HTTP status; 0 when no response arrived (connection error, timeout)"),
    Column(
        "error_kind",
        "str",
        "empty on success, else: gateway_token_limit, gateway_quota, backend_429, "
        "breaker_open, server_error, unauthorized, client_error, timeout, connection, truncated_stream",
    ),
    Column("retry_after_s", "float", "Retry-After header as received, in seconds"),
    Column("retry_after_ms", "float", "retry-after-ms header as received"),
    Column("ratelimit_remaining_requests", "int", "x-ratelimit-remaining-requests"),
    Column("ratelimit_remaining_tokens", "int", "x-ratelimit-remaining-tokens"),
    Column("ratelimit_limit_requests", "int", "x-ratelimit-limit-requests"),
    Column("ratelimit_limit_tokens", "int", "x-ratelimit-limit-tokens"),
    Column("ratelimit_reset_requests", "float", "x-ratelimit-reset-requests (s)"),
    Column("ratelimit_reset_tokens", "float", "x-ratelimit-reset-tokens (s)"),
    Column("ptu_utilization", "float", "azure-openai-deployment-utilization: a PTU deployment's level after it, %"),
    Column("policy_id", "str", "policy-id of a backend 429"),
    Column("gateway_remaining_tokens", "int", "the gateway's remaining-tokens header"),
    Column("gateway_remaining_quota", "int", "the gateway's remaining-quota-tokens header"),
    Column("gateway_tokens_consumed", "int", "the gateway's tokens-consumed header"),
    Column("backend", "str", "pool member that served (x-backend)"),
    Column("region", "str", "x-ms-region"),
    Column("ttft_s", "float", "time to first token (streams) or to headers, scenario seconds"),
    Column("latency_s", "float", "time to the end of the body, scenario seconds"),
    Column("inter_token_s", "float", "mean time between streamed chunks, scenario seconds"),
    Column("usage_prompt", "int", "usage.prompt_tokens"),
    Column("usage_completion", "int", "usage.completion_tokens"),
    Column("usage_total", "int", "usage.total_tokens"),
    Column("usage_source", "str", "where usage came from: body, stream_usage_chunk, counted_deltas"),
    Column("decision", "str", "what the client did next: success, retry, give_up, fail"),
    Column("retry_wait_s", "float", "scenario seconds the client waited before the next attempt"),
    Column("retry_wait_source", "str", "retry-after-ms, retry-after, backoff (own backoff), or empty"),
    Column("request_type", "str", "logical request type as Locust names it: `chat`, `chat stream`, `embeddings`, ..."),
    Column("mix", "str", "workload mix the request was drawn from (or `trace`)"),
    Column("replica", "str", "gateway replica that answered, 0-based (x-gateway-replica; empty with one replica)"),
    Column(
        "stream_end",
        "str",
        "how a stream ended (empty for other answers): done, bare_done, no_done_marker, cut_after_finish or "
        "json_body (whole), no_finish or cut (truncated_stream); values in harness.aoai.sse",
    ),
)

RECORD_FIELDS: tuple[str, ...] = tuple(c.name for c in RECORD_COLUMNS)

RECORD_KINDS: dict[str, str] = {c.name: c.kind for c in RECORD_COLUMNS}

FLUSH_INTERVAL_S = 1.0


# Below 2**33 a double's spacing is under 1e-6, so each double holds at most one six-decimal number: the fixed
# six-decimal text, its trailing zeros cut, is then exactly the shortest repr of the rounded value (which repr
# writes without an exponent from 1e-4 up). tests/test_client_records.py checks it against repr on random doubles.
_FIXED_DECIMALS_BELOW = 2.0**33


def float_cell(value: float) -> str:
    """`repr(round(value, 6))`, the cell of a (non-NaN) float, at half the cost for most values.

    >>> float_cell(1767225600.1234567), float_cell(2.5), float_cell(0.00001), float_cell(-0.0)
    ('1767225600.123457', '2.5', '1e-05', '-0.0')
    """
    if 1e-4 <= abs(value) < _FIXED_DECIMALS_BELOW:
        text = f"{value:.6f}".rstrip("0")
        return text + "0" if text[-1] == "." else text
    return repr(round(value, 6))  # exponent notation, zero and huge values: as repr writes them


def format_cell(value: Any) -> str:
    """One CSV cell: empty for None/NaN, `true`/`false` for booleans, shortest round-tripping numbers."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:  # most cells: checked first, as every record has some forty of them
        return value
    if kind is int:
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return float_cell(value)
    return str(value)


def parse_cell(kind: str, text: str) -> Any:
    """The typed value of a cell (None when empty); raises ValueError when it does not fit `kind`."""
    if text == "":
        return None
    if kind == "int":
        return int(float(text)) if "." in text or "e" in text else int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(f"'{text}' is not true or false")
    return text


_POSITION = {name: i for i, name in enumerate(RECORD_FIELDS)}
_EMPTY_CELLS = [""] * len(RECORD_FIELDS)
_SEPARATORS = len(RECORD_FIELDS) - 1


def record_cells(record: Mapping[str, Any]) -> list[str]:
    """A record's cells in RECORD_FIELDS order, each the text `format_cell` gives it.

    The hot path of every writer, a few microseconds per record: only the record's own fields are visited (a
    record leaves most columns empty). A key that is not a column (a misspelled `usage_totl`) is a TypeError,
    not a value silently left out.

        >>> record_cells({"usage_totl": 3})
        Traceback (most recent call last):
        ...
        TypeError: not a records.csv column: usage_totl
    """
    cells = _EMPTY_CELLS.copy()
    position = _POSITION
    # A record often holds one float twice in a row (t_scenario and t_wall in the simulator, ttft_s and
    # latency_s of a whole answer): formatting costs most, so an equal value reuses the text just made.
    # Zeros are formatted each time (0.0 == -0.0), and NaN never equals anything.
    last_float: float | None = None
    last_text = ""
    try:
        for name, value in record.items():
            kind = type(value)
            if kind is str:
                cells[position[name]] = value
            elif kind is float:
                if value != last_float or not value:
                    last_float = value
                    last_text = float_cell(value) if value == value else ""  # NaN: an empty cell
                cells[position[name]] = last_text
            elif kind is int:
                cells[position[name]] = str(value)
            elif value is None:
                position[name]  # the cell stays empty; the name is still checked
            elif isinstance(value, str):  # a record value's enum (ErrorKind, Decision, ...): its plain text
                cells[position[name]] = str(value)
            else:
                cells[position[name]] = format_cell(value)  # booleans, other numbers
    except KeyError:
        unknown = sorted(name for name in record if name not in position)
        raise TypeError(f"not a records.csv column: {', '.join(unknown)}") from None
    return cells


def plain_line(cells: list[str]) -> str | None:
    """The cells joined as one CSV line when none needs quoting (no comma, quote or line break), else None:
    the csv module's output for such cells, without its per-character scan of every cell."""
    line = ",".join(cells)
    if line.count(",") != _SEPARATORS or '"' in line or "\n" in line or "\r" in line:
        return None
    return line


class RecordWriter:
    """Append records to a CSV file (one header row, RECORD_FIELDS order), flushed at least every second.

    Rows are written through at once; the file is flushed when a write finds the last flush a second
    old, and by `flush()` (the load generator calls it every second), so a crash loses at most a second.

        >>> import tempfile, pathlib
        >>> from harness.clock import VirtualClock
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "records.csv"
        >>> with RecordWriter(path, VirtualClock()) as writer:
        ...     writer.write({"run_id": "r1", "attempt": 1, "status": 200})
        >>> [row["status"] for row in read_records(path)]
        [200]
    """

    def __init__(self, path: str | Path, clock: Clock, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        self.path = Path(path)
        self.clock = clock
        self.flush_interval = flush_interval
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        # csv quotes a cell for a comma, a quote or "\n", not for a bare "\r", which a reader takes for a line end
        self._quoted = csv.writer(self._file, lineterminator="\n", quoting=csv.QUOTE_ALL)
        if new:
            self._csv.writerow(RECORD_FIELDS)
        self._last_flush = clock.wall()
        self.rows = 0

    def write(self, record: Mapping[str, Any]) -> None:
        if self._file.closed:
            return  # a request that ended after the run closed its records
        self._write_row(record_cells(record))
        if self.clock.wall() - self._last_flush >= self.flush_interval:
            self.flush()

    def write_cells(self, rows: Iterable[list[str]]) -> None:
        """Rows already formatted as cells in RECORD_FIELDS order (batches shipped by workers)."""
        if self._file.closed:
            return
        for cells in rows:
            if len(cells) != len(RECORD_FIELDS):
                raise RecordsError(
                    str(self.path), f"a shipped row has {len(cells)} cells, expected {len(RECORD_FIELDS)}"
                )
            self._write_row(cells)
        if self.clock.wall() - self._last_flush >= self.flush_interval:
            self.flush()

    def _write_row(self, cells: list[str]) -> None:
        line = plain_line(cells)
        if line is None:
            self._quoted.writerow(cells)  # a cell to quote: every cell quoted, a bare carriage return included
        else:
            self._file.write(line + "\n")
        self.rows += 1

    def write_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._last_flush = self.clock.wall()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Typed records from a records CSV; a bad header or cell is a RecordsError naming the file and line.

    Columns this version does not know are kept as text, and known columns missing from an older file
    read as None, so readers survive columns being added at the end.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise RecordsError(str(path), f"cannot read ({exc.__class__.__name__})") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise RecordsError(str(path), "empty file (no header row)", line=1)
        if "run_id" not in header or "status" not in header:
            raise RecordsError(str(path), "not a records file (the header lacks run_id/status)", line=1)
        for number, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) != len(header):
                raise RecordsError(
                    str(path), f"{len(cells)} cells where the header has {len(header)} (truncated?)", line=number
                )
            record: dict[str, Any] = dict.fromkeys(RECORD_FIELDS)
            for name, text in zip(header, cells, strict=True):
                try:
                    record[name] = parse_cell(RECORD_KINDS.get(name, "str"), text)
                except ValueError:
                    raise RecordsError(
                        str(path), f"column {name}: '{text}' is not a {RECORD_KINDS[name]}", line=number
                    ) from None
            yield record


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a records CSV (see `iter_records`)."""
    return list(iter_records(path))


def records_to_csv_text(records: Iterable[Mapping[str, Any]]) -> str:
    """Records as CSV text without a header (what a worker ships to the master)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for record in records:
        writer.writerow([format_cell(record.get(name)) for name in RECORD_FIELDS])
    return out.getvalue()
