"""The backend log: one JSON object per request, in `backend.jsonl` (the contract with the reports).

Rows are buffered and written in batches, at least once a wall second and on close, so a SIGTERM that
closes the log loses nothing.

    >>> log = MemoryLog(); log.write({"status": 200}); log.rows
    [{'status': 200}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from harness.clock import Clock
from harness.compact_json import to_text
from harness.records import BACKEND_LOG
from harness.records.logs import BACKEND_LOG_FIELDS

__all__ = ["BACKEND_LOG_FIELDS", "BACKEND_LOG_NAME", "BackendLog", "JsonlLog", "MemoryLog", "NullLog"]

BACKEND_LOG_NAME = BACKEND_LOG


class BackendLog(Protocol):
    """Where the mock writes its rows."""

    def write(self, row: dict[str, Any]) -> None: ...


class MemoryLog:
    """Keeps rows in a list (tests, in-process use)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)


class NullLog:
    """Drops rows (no --log-dir)."""

    def write(self, row: dict[str, Any]) -> None:
        pass


class JsonlLog:
    """Appends rows to a JSON-lines file in batches; `flush()` at least once a second, `close()` at the end."""

    flush_interval = 1.0  # wall seconds

    def __init__(self, path: str | Path, clock: Clock) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._file = self.path.open("a", encoding="utf-8")
        self._pending: list[str] = []
        self._last_flush = clock.wall()

    def write(self, row: dict[str, Any]) -> None:
        self._pending.append(to_text(row))
        if self.clock.wall() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = self.clock.wall()
        if self._pending and not self._file.closed:
            self._file.write("\n".join(self._pending) + "\n")
            self._pending.clear()
            self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
