"""A summary read back from JSON goes through one checked loader: every summary the harness writes loads
unchanged, and a malformed one is refused with one line naming the file and the first bad field."""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from test_report_cost import write_run as write_priced_run
from test_report_metrics import write_synthetic_run

from harness.inputs import SUMMARY_LIMIT, InputError
from harness.report.html import write_report
from harness.report.load import load_run
from harness.report.summary.build import summarize
from harness.report.summary.load import SummaryError, load_summary, run_info_summary, summary_from
from harness.report.summary.schema import to_json
from harness.sim import simulate
from harness.sweep import run_summary

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "synthetic-summary.json"
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return data


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(SummaryError) as caught:
        load_summary(path)
    text = str(caught.value)
    assert "\n" not in text
    return text


# ---- what the harness writes loads, unchanged ----


def test_a_written_summary_json_loads_as_the_very_same_data(tmp_path: Path) -> None:
    run_dir = tmp_path / "synthetic"
    write_synthetic_run(run_dir)
    write_report(run_dir)
    written = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    loaded = load_summary(run_dir / "summary.json")
    assert loaded == written and list(loaded) == list(written)  # key order kept: written back byte for byte
    assert "figures" in loaded  # a key Summary does not declare is kept
    assert json.dumps(loaded, indent=2) + "\n" == (run_dir / "summary.json").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "variant", ["golden", "synthetic", "no gateway log", "no logs", "priced", "priced, no PTU log"]
)
def test_every_summary_the_report_writes_loads(tmp_path: Path, variant: str) -> None:
    run_dir = tmp_path / "run"
    if variant == "golden":
        path = GOLDEN
    else:
        if variant.startswith("priced"):
            write_priced_run(run_dir, with_ptu_log=variant == "priced")
        else:
            write_synthetic_run(run_dir, with_gateway=variant == "synthetic", with_backend=variant != "no logs")
        # summary.json's content as `harness report` writes it, less its figures (drawn in the test above)
        path = write(run_dir / "summary.json", to_json(summarize(load_run(run_dir))))
    assert load_summary(path)["requests"]["attempts"] > 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_simulated_stores_a_summary_that_loads(tmp_path: Path, scenario: Path) -> None:
    run_dir = simulate(str(scenario), ["run.duration=60"], tmp_path / "run")
    stored = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["summary"]
    loaded = run_info_summary(run_dir / "run.json")
    assert loaded == stored and loaded is not None and loaded["requests"]["attempts"] > 0
    assert run_summary(run_dir) == stored  # the sweep reads it through the loader


def test_integers_are_numbers_but_nothing_is_converted(tmp_path: Path) -> None:
    data = golden()
    data["throughput"]["goodput_tpm"] = 3  # a float field written as an integer: still a number
    loaded = load_summary(write(tmp_path / "summary.json", data))
    assert type(loaded["throughput"]["goodput_tpm"]) is int


def test_no_run_json_or_a_null_summary_is_no_summary(tmp_path: Path) -> None:
    assert run_info_summary(tmp_path / "run.json") is None
    assert run_info_summary(write(tmp_path / "run.json", {"run_id": "x", "summary": None})) is None


# ---- a malformed summary is one line naming the file and the field ----


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("breaker", "aoai-east", "trips"), "3", "breaker.aoai-east.trips: expected an integer"),
        (("requests", "attempts"), 1.5, "requests.attempts: expected an integer"),
        (("requests", "attempts"), True, "requests.attempts: expected an integer"),
        (("retries", "wait_s_total"), None, "retries.wait_s_total: expected a number"),
        (("run", "run_id"), 7, "run.run_id: expected a string"),
        (("run", "never_ended"), 0, "run.never_ended: expected true or false"),
        (("latency", "all"), [], "latency.all: expected an object"),
        (("verdict",), "all good", "verdict: expected a list"),
        (("chargeback", 0, "error"), "x", "chargeback[0].error: expected a number"),
    ],
)
def test_a_wrong_type_names_the_file_and_the_field(
    tmp_path: Path, path: tuple[str | int, ...], value: Any, expected: str
) -> None:
    data = golden()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    file = write(tmp_path / "summary.json", data)
    assert refusal(file) == f"{file}: {expected}"


@pytest.mark.parametrize(
    ("section", "key"), [("cost", None), ("requests", "in_flight_when_stopped"), ("run", "run_id")]
)
def test_a_missing_section_or_key_is_refused(tmp_path: Path, section: str, key: str | None) -> None:
    data = golden()
    if key is None:
        del data[section]
    else:
        del data[section][key]
    file = write(tmp_path / "summary.json", data)
    field = section if key is None else f"{section}.{key}"
    expected = f"{file}: {field}: missing (written by an older harness? `harness report RUN_DIR` writes it anew)"
    assert refusal(file) == expected
    run_json = write(tmp_path / "run.json", {"summary": data})
    with pytest.raises(SummaryError) as caught:
        run_info_summary(run_json)
    assert str(caught.value) == f"{run_json}: summary.{field}: missing (written by an older harness?)"


def test_not_json_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "summary.json"
    file.write_text('{"run": {\n  "run_id": "x",,\n}', encoding="utf-8")
    assert refusal(file) == f"{file}: not JSON (line 2, column 17: Expecting property name enclosed in double quotes)"


def test_nan_is_not_strict_json(tmp_path: Path) -> None:
    file = tmp_path / "summary.json"
    file.write_text(GOLDEN.read_text(encoding="utf-8").replace('"goodput_tpm": ', '"goodput_tpm": NaN, "x": ', 1))
    assert refusal(file).startswith(f"{file}: not strict JSON: NaN")


def test_not_an_object_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path / "summary.json", [golden()])
    assert refusal(file) == f"{file}: expected an object"
    run_json = write(tmp_path / "run.json", ["summary"])
    with pytest.raises(SummaryError, match=r"run\.json: expected an object$"):
        run_info_summary(run_json)


def test_too_large_is_refused_before_it_is_read(tmp_path: Path) -> None:
    file = tmp_path / "summary.json"
    with file.open("wb") as handle:  # sparse: past the limit without writing it
        handle.truncate(SUMMARY_LIMIT + 1)
    with pytest.raises(InputError) as caught:
        load_summary(file)
    assert str(caught.value) == f"{file}: summary is larger than {SUMMARY_LIMIT} bytes (the limit for a summary)"


def test_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not a summary file"):
        load_summary(tmp_path)
    fifo = tmp_path / "summary.json"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is not a regular file"):
        load_summary(fifo)


def test_run_json_names_the_summary_inside_it(tmp_path: Path) -> None:
    summary = golden()
    summary["breaker"]["aoai-east"]["trips"] = "3"
    run_json = write(tmp_path / "run.json", {"run_id": "x", "summary": summary})
    with pytest.raises(SummaryError) as caught:
        run_info_summary(run_json)
    assert str(caught.value) == f"{run_json}: summary.breaker.aoai-east.trips: expected an integer"
    with pytest.raises(SummaryError, match=r"summary\.breaker\.aoai-east\.trips: expected an integer$"):
        run_summary(tmp_path)  # a sweep refuses it rather than rank a run on it


def test_a_control_character_in_a_key_stays_on_one_line(tmp_path: Path) -> None:
    data = golden()
    data["by_app"]["evil\napp"] = copy.deepcopy(next(iter(data["by_app"].values())))
    data["by_app"]["evil\napp"]["attempts"] = "many"
    file = write(tmp_path / "summary.json", data)
    assert refusal(file) == f"{file}: by_app.evil\\napp.attempts: expected an integer"


def test_the_error_crosses_a_process_boundary_intact() -> None:
    error = SummaryError("runs/x/run.json", "summary.requests.attempts", "expected an integer")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, SummaryError) and str(again) == str(error) and again.field == error.field


def test_summary_from_checks_data_already_parsed() -> None:
    data = golden()
    assert summary_from(data, "comparison.json", "runs[0].summary") is data
    del data["verdict"]
    with pytest.raises(SummaryError, match=r"^comparison\.json: runs\[0\]\.summary\.verdict: missing"):
        summary_from(data, "comparison.json", "runs[0].summary")


def test_the_committed_example_summaries_load() -> None:
    """The example reports shipped in reports/examples (rebuilt by their regenerate.sh) are summaries this
    version reads: a schema change without rebuilding them fails here."""
    root = Path(__file__).resolve().parents[1] / "reports" / "examples"
    summaries = sorted(root.glob("*/summary.json"))
    confirmations = sorted(root.glob("*/confirm-live/*/*/run.json"))
    assert len(summaries) >= 10 and confirmations
    for path in summaries:
        assert load_summary(path)["run"]
    for path in confirmations:
        summary = run_info_summary(path)
        assert summary is not None and summary["run"]
