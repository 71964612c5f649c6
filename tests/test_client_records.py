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
    assert record_cells(record) == [format_cell(record.get(name)) for name in RECORD_FIELDS]


def test_cells_of_floats_in_a_row_are_each_their_own() -> None:
    """A float equal to the one before reuses its text; zeros of either sign and NaNs never do, and enums
    are written as their text."""
    from harness.records import RECORD_FIELDS, format_cell, record_cells
    from harness.records.outcomes import Decision, ErrorKind

    runs = [
        [1767225601.5, 1767225601.5, 0.25, 0.25],
        [0.0, -0.0, -0.0, 0.0],
        [float("nan"), float("nan"), 3.0, 3.0],
        [2.0**40, 2.0**40, 1e-7, 1e-7],
    ]
    floats = [n for n in RECORD_FIELDS if n in ("t_scenario", "t_wall", "ttft_s", "latency_s")]
    for values in runs:
        record = {"error_kind": ErrorKind.BACKEND_429, "decision": Decision.RETRY, "stream": True}
        record.update(zip(floats, values, strict=True))
        cells = record_cells(record)
        assert cells == [format_cell(record.get(name)) for name in RECORD_FIELDS]
        assert {type(cell) for cell in cells} == {str}  # plain text, as workers ship cells
    assert record_cells({"t_scenario": 0.0, "t_wall": -0.0})[1:3] == ["0.0", "-0.0"]


def test_float_cells_are_the_repr_of_the_value_rounded_to_six_places() -> None:
    """`float_cell` writes what `repr(round(v, 6))` writes, for the values records hold (times since the epoch,
    latencies, waits, percentages) and for arbitrary doubles, edges of its fast range included."""
    import random
    import struct

    from harness.records.attempts import float_cell

    rng = random.Random(7)
    values = [0.0, -0.0, 1e-4, -1e-4, 0.99999e-4, 0.00005, 2.0**33, 2.0**33 - 2**-20, 8.6e9, 1e16, 1.5e300, 5e-324]
    values += [float("inf"), float("-inf")]
    for _ in range(20_000):
        values.append(1_767_225_600 + rng.uniform(0, 86_400 * 30))  # scenario and wall times
        values.append(rng.uniform(0, 120))  # latencies and waits
        values.append(rng.randint(0, 10**7) / 10 ** rng.randint(0, 9))  # decimals of every length
        values.append(rng.uniform(-1e-3, 1e-3))
        bits = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if bits == bits:
            values.append(bits)
    mismatches = [v for v in values if float_cell(v) != repr(round(v, 6))]
    assert mismatches == []


def test_cells_that_need_quoting_read_back_as_written(tmp_path: Path) -> None:
    """Plain rows are joined directly, byte for byte what the csv module writes; a row with a comma, a quote,
    a line break or a bare carriage return in a cell is quoted, and every row reads back as written."""
    import csv

    tricky = ["a,b", 'say "hi"', "two\nlines", "cr\rhere", "plain", " spaced "]
    records = [{"run_id": "r", "attempt": i, "user": text, "mix": "m", "t_wall": 1.5} for i, text in enumerate(tricky)]
    path = tmp_path / "records.csv"
    with RecordWriter(path, VirtualClock()) as writer:
        for record in records:
            writer.write(record)
    assert [(row["attempt"], row["user"], row["t_wall"]) for row in read_records(path)] == [
        (i, text, 1.5) for i, text in enumerate(tricky)
    ]
    plain = next(line for line in path.read_bytes().decode().split("\n") if ",plain," in line)
    expected = tmp_path / "plain.csv"
    with expected.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file, lineterminator="\n").writerow(
            ["" if records[4].get(n) is None else str(records[4][n]) for n in RECORD_FIELDS]
        )
    assert plain + "\n" == expected.read_text(encoding="utf-8")
