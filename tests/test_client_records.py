"""The records writer and reader: one header row, typed cells, flushed at least every second."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.clock import VirtualClock
from harness.errors import RecordsError
from harness.records import RECORD_FIELDS, RecordWriter, read_records


def test_round_trip_keeps_types_and_absent_cells(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path, VirtualClock()) as writer:
        writer.write({"run_id": "r", "attempt": 2, "stream": True, "latency_s": 0.25, "error_kind": "", "status": 429})
    (row,) = read_records(path)
    assert row["attempt"] == 2 and row["stream"] is True and row["latency_s"] == 0.25 and row["status"] == 429
    assert row["ttft_s"] is None and row["error_kind"] is None
    assert path.read_text().splitlines()[0] == ",".join(RECORD_FIELDS)


def test_rows_reach_the_disk_within_a_second(tmp_path: Path) -> None:
    clock = VirtualClock()
    path = tmp_path / "records.csv"
    writer = RecordWriter(path, clock)
    writer.write({"run_id": "r", "status": 200})
    before = len(path.read_text().splitlines())
    clock.advance(1.0)
    writer.write({"run_id": "r", "status": 200})
    # both rows are on disk without close(): the second write found the last flush a second old
    assert len(path.read_text().splitlines()) == 3
    assert before <= 2
    writer.close()


def test_truncated_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path, VirtualClock()) as writer:
        writer.write({"run_id": "r", "status": 200})
    path.write_text(path.read_text() + "r,1.0\n")
    with pytest.raises(RecordsError, match=r"records.csv:3: 2 cells"):
        read_records(path)


def test_bad_cell_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    with RecordWriter(path, VirtualClock()) as writer:
        writer.write({"run_id": "r", "status": 200})
    path.write_text(path.read_text().replace("200", "OK"))
    with pytest.raises(RecordsError, match="column status: 'OK' is not a int"):
        read_records(path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RecordsError, match="empty file"):
        read_records(empty)


def test_fast_cells_write_what_format_cell_writes() -> None:
    """The writers' hot path gives every cell the text `format_cell` gives it (None, bool, int, float, NaN)."""
    from harness.records import RECORD_FIELDS, format_cell, record_cells

    values = [None, True, False, 0, 429, 1.0, 1767225601.1234567, float("nan"), 0.1 + 0.2, "chat", ""]
    record = {name: values[i % len(values)] for i, name in enumerate(RECORD_FIELDS)}
    fast = ["" if cell is None else str(cell) for cell in record_cells(record)]
    assert fast == [format_cell(record.get(name)) for name in RECORD_FIELDS]
