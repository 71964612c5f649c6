"""`harness report`: every figure is produced and embedded; bad records give one line naming file and line;
a run without logs still reports and says what is missing."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_report_metrics import write_synthetic_run

from harness.cli import main
from harness.errors import RecordsError
from harness.records import RECORD_FIELDS
from harness.report.html import write_report
from harness.report.load import read_records

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = {"timeline", "outcomes_by", "throughput", "retry_after", "latency", "retries", "drain"}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("full")
    write_synthetic_run(run_dir)
    return run_dir


def test_report_command_writes_every_figure_embedded_in_the_html(full_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(full_run), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out / "report.html")
    page = (out / "report.html").read_text(encoding="utf-8")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["figures"]) == {f"{name}.png" for name in ALL_FIGURES}
    for name in ALL_FIGURES:
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
        assert base64.b64encode(data).decode("ascii") in page, f"{name}.png is not embedded"
    assert "<img" in page and 'src="data:image/png;base64,' in page
    assert 'src="http' not in page  # self-contained
    assert "Chargeback" in page and "app-c" in page


def test_report_defaults_to_the_run_directory(full_run: Path) -> None:
    path = write_report(full_run)
    assert path == full_run / "report.html" and path.stat().st_size > 50_000
    assert (full_run / "summary.json").exists()


def test_run_without_logs_still_reports_and_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "bare"
    write_synthetic_run(run_dir, with_gateway=False, with_backend=False)
    assert main(["report", str(run_dir)]) == 0
    err = capsys.readouterr().err
    assert "no gateway log (gateway.jsonl)" in err and "no backend log (backend.jsonl)" in err
    assert "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["breaker"] is None and summary["chargeback"] is None and summary["drain"] is None
    assert any("gateway.jsonl" in m for m in summary["run"]["missing"])
    assert summary["requests"]["attempts"] > 0
    page = (run_dir / "report.html").read_text()
    assert "Not shown, because data is missing" in page and "no gateway log" in page
    assert set(summary["figures"]) == {f"{n}.png" for n in ALL_FIGURES - {"drain"}}


def _records_text(full_run: Path) -> list[str]:
    return (full_run / "records.csv").read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.mark.parametrize(
    ("mutate", "line", "message"),
    [
        (lambda lines: [], 1, "the file is empty"),
        (lambda lines: lines[:1], 2, "no records after the header"),
        (
            lambda lines: [*lines[:5], lines[5].rstrip("\n") + ",extra\n", *lines[6:]],
            6,
            f"expected {len(RECORD_FIELDS)} fields, found {len(RECORD_FIELDS) + 1}",
        ),
        (
            lambda lines: [*lines[:7], "synthetic,1700000000.5\n", *lines[8:]],
            8,
            f"expected {len(RECORD_FIELDS)} fields, found 2",
        ),
        (lambda lines: [*lines[:-1], lines[-1][: len(lines[-1]) // 2]], None, "truncated"),
        (
            lambda lines: [lines[0].replace("t_scenario", "t_start"), *lines[1:]],
            1,
            "lacks the record field(s): t_scenario",
        ),
    ],
    ids=["empty", "header-only", "extra-field", "short-row", "truncated", "missing-column"],
)
def test_bad_records_file_gives_one_line_naming_file_and_line(
    full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, line, message
) -> None:
    lines = _records_text(full_run)
    run_dir = tmp_path / "bad"
    run_dir.mkdir()
    (run_dir / "records.csv").write_text("".join(mutate(lines)), encoding="utf-8")
    if line is None:  # the truncated last line is the file's last line
        line = len(lines)
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"records.csv:{line}: " in err and message in err


def test_a_value_of_the_wrong_type_is_located(full_run: Path, tmp_path: Path) -> None:
    lines = _records_text(full_run)
    cells = lines[9].rstrip("\n").split(",")
    cells[RECORD_FIELDS.index("status")] = "OK"
    path = tmp_path / "records.csv"
    path.write_text("".join([*lines[:9], ",".join(cells) + "\n", *lines[10:]]), encoding="utf-8")
    with pytest.raises(RecordsError) as caught:
        read_records(path)
    assert caught.value.line == 10 and "'status' must be int, got 'OK'" in str(caught.value)


def test_a_missing_required_value_is_located(full_run: Path, tmp_path: Path) -> None:
    lines = _records_text(full_run)
    cells = lines[3].rstrip("\n").split(",")
    cells[RECORD_FIELDS.index("t_scenario")] = ""
    path = tmp_path / "records.csv"
    path.write_text("".join([*lines[:3], ",".join(cells) + "\n", *lines[4:]]), encoding="utf-8")
    with pytest.raises(RecordsError, match=r"records.csv:4: 't_scenario' is empty"):
        read_records(path)


def test_a_malformed_log_line_is_located_and_an_incomplete_last_one_dropped(full_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "logs"
    write_synthetic_run(run_dir)
    log = (run_dir / "gateway.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "gateway.jsonl").write_text("".join([*log, '{"kind": "request", "t": 1']))
    write_report(run_dir)
    missing = json.loads((run_dir / "summary.json").read_text())["run"]["missing"]
    assert missing == [f"gateway.jsonl: dropped the incomplete last line {len(log) + 1}"]
    (run_dir / "gateway.jsonl").write_text("".join([*log[:3], "{not json}\n", *log[3:]]))
    with pytest.raises(RecordsError, match=r"gateway.jsonl:4: not valid JSON"):
        write_report(run_dir)
    (run_dir / "gateway.jsonl").write_text("".join([*log[:4], '{"kind": "request", "t": "soon"}\n', *log[4:]]))
    with pytest.raises(RecordsError, match=r"gateway.jsonl:5: 't' must be a number"):
        write_report(run_dir)


def test_missing_run_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip().endswith("nope: no such run directory")
