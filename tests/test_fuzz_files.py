"""Property-based fuzz of the files a user gives: scenario YAML (the shipped ones, mutated), `--set` overrides and
trace files (CSV and JSON lines). Each is either accepted or refused with one ScenarioError line; nothing else.
Bounded: a fixed number of examples per property.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.scenario import Scenario, load_scenario, load_scenario_text
from harness.workload.trace import load_trace

SCENARIOS = sorted(Path(__file__).resolve().parent.parent.glob("scenarios/*.yaml"))
SHIPPED = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in SCENARIOS]
EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # bounded by the example count; a shared machine is slow, not wrong
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# -- values a careless or hostile file holds ------------------------------------------------------------------------

ODD_NUMBERS = st.sampled_from(
    [math.nan, math.inf, -math.inf, -1, -0.5, 0, 10**400, -(10**30), 1e308, 2**63, 1e15 + 1, 5e-324]
)
ODD_TEXT = st.sampled_from(
    ["P99999999999D", "PT-5S", "P1Y", "P-1D", "PT1M", "-3s", "1e400s", "nan", "inf", "", "2024-13-45", "\x00", "é"]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12), ODD_NUMBERS, ODD_TEXT)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# deeper nesting than PyYAML can write is tried as raw text in the examples below
NEW_VALUES = st.one_of(VALUES, st.integers(min_value=30, max_value=150).map(_nested))


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path of a YAML tree, the root included."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _places(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _places(value, (*path, i))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {**node, head: _replace(node[head], rest, value)}
    copy = list(node)
    copy[head] = _replace(node[head], rest, value)
    return copy


@st.composite
def mutated_scenarios(draw: st.DrawFn) -> str:
    """A shipped scenario with a few values, keys or nestings changed, as YAML text."""
    data = draw(st.sampled_from(SHIPPED))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_places(data)))
        action = draw(st.sampled_from(["value", "key", "wrap"]))
        here: Any = data
        for key in path:
            here = here[key]
        if action == "value":
            data = _replace(data, path, draw(NEW_VALUES))
        elif action == "key" and isinstance(here, dict):
            data = _replace(data, path, {**here, draw(st.text(max_size=8)): draw(VALUES)})
        else:
            data = _replace(data, path, _nested(draw(st.integers(min_value=1, max_value=50))) if not path else [here])
    return yaml.safe_dump(data, allow_unicode=True, width=10**6)


def _short_id(value: Any) -> str:
    return repr(value)[:40]


def _expect_one_line(call: Any) -> Scenario | None:
    try:
        scenario = call()
    except ScenarioError as exc:
        assert "\n" not in str(exc) and str(exc).strip()
        return None
    assert isinstance(scenario, Scenario)
    # what a run writes (the scenario copy) is made of the accepted values: it must write and read back
    text = yaml.safe_dump(scenario.model_dump(mode="json", by_alias=True))
    load_scenario_text(text, workload=False)
    return scenario


@FUZZ
@given(text=mutated_scenarios(), encoding=st.sampled_from(["utf-8", "utf-8", "utf-16", "bad-byte"]))
def test_a_mutated_scenario_file_is_accepted_or_one_line(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "s.yaml"
    raw = text.encode("utf-8") + b"\n# \xff\xfe\n" if encoding == "bad-byte" else text.encode(encoding)
    path.write_bytes(raw)
    _expect_one_line(lambda: load_scenario(path))


@FUZZ
@given(
    base=st.sampled_from(SCENARIOS),
    path=st.one_of(
        st.sampled_from(["run.duration", "run.time_scale", "workload.mixes[0].prompt_tokens", "backends[0].faults"]),
        st.text(max_size=30),
    ),
    value=st.one_of(
        NEW_VALUES.map(lambda v: yaml.safe_dump(v, width=10**6).removesuffix("\n...\n").strip()),
        st.text(max_size=30),
        st.integers(min_value=30, max_value=1_200).map(lambda n: "[" * n + "]" * n),
    ),
)
def test_a_set_override_is_accepted_or_one_line(base: Path, path: str, value: str) -> None:
    _expect_one_line(lambda: load_scenario(base, [f"{path}={value}"]))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("run: {duration: P99999999999D}", "run.duration: 'P99999999999D' is longer than P365D"),
        ("run: {duration: P400D}", "run.duration: must be at most P365D"),
        ("run: {time_scale: .nan}", "run.time_scale: must be a finite number"),
        ("workload: {mixes: [{prompt_tokens: .inf}]}", "workload.mixes[0].prompt_tokens: must be a finite number"),
        ("workload: {mixes: [{prompt_tokens: -5}]}", "workload.mixes[0].prompt_tokens.value: must be >= 0"),
        ("workload: {mixes: [{prompt_tokens: 3000000}]}", "workload.mixes[0].prompt_tokens: must stay at most"),
        ("workload: {think_time: {kind: uniform, low: -1, high: 2}}", "workload.think_time.low: must be >= 0"),
        ("run: {seed: 10000000000000000000000}", "run.seed: must be a number between"),
        ("run: {duration: 2024-13-45}", "month must be in 1..12"),
        ("run: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("sweep: {parameters: {run.seed: [" + "[" * 40 + "]" * 40 + "]}}", "nested deeper than 32 levels"),
    ],
    ids=_short_id,
)
def test_values_no_field_takes_are_one_line_naming_the_place(text: str, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, source="s.yaml")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_scenario_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"run: {seed: 1}\n# caf\xe9\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: line 2: not UTF-8 text \(byte 20\)"):
        load_scenario(path)


# -- trace files ------------------------------------------------------------------------------------------------

CELL = st.one_of(
    SCALARS,
    st.integers(min_value=0, max_value=100_000),
    st.floats(min_value=0, max_value=3600),
    st.lists(SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=4), SCALARS, max_size=2),
    st.sampled_from(["chat", "embeddings", "completions", "true", "false", "1e400", "-1", "20.5"]),
)
COLUMNS = ["offset_s", "t", "app", "operation", "prompt_tokens", "max_tokens", "stream", "deployment"]
TRACE_ROWS = st.lists(
    st.dictionaries(st.one_of(st.sampled_from(COLUMNS), st.text(max_size=5)), CELL, max_size=7), max_size=5
)


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    names = list(dict.fromkeys(k for row in rows for k in row)) or ["offset_s"]
    writer = csv.DictWriter(out, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _json_lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)  # NaN and Infinity come out as words


@FUZZ
@given(
    rows=TRACE_ROWS,
    form=st.sampled_from(["csv", "jsonl"]),
    damage=st.sampled_from([None, b"\xff\xfe", b"\x00", b"{" * 3000, b'"unclosed', b"\r\n,,,\r\n"]),
)
def test_a_trace_file_is_accepted_or_one_line_naming_file_and_line(
    tmp_path: Path, rows: list[dict[str, Any]], form: str, damage: bytes | None
) -> None:
    path = tmp_path / f"t.{form}"
    raw = (_csv(rows) if form == "csv" else _json_lines(rows)).encode("utf-8")
    path.write_bytes(raw + damage if damage is not None else raw)
    try:
        loaded = load_trace(path, apps=("a", "b"), deployments=("gpt-4o",))
    except ScenarioError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(str(path)), message
        return
    for row in loaded:
        assert math.isfinite(row.offset_s) and row.offset_s >= 0 and row.prompt_tokens >= 1
        assert row.max_tokens is None or row.max_tokens >= 0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("offset_s,prompt_tokens\n1,1e400\n", "t.csv:2: prompt_tokens must be a whole number"),
        ("offset_s,prompt_tokens\ninf,1\n", "t.csv:2: offset_s must be a number of seconds"),
        ("offset_s,prompt_tokens\n-1,1\n", "t.csv:2: offset_s must be a number of seconds"),
        ("offset_s,max_tokens\n1,2.5\n", "t.csv:2: max_tokens must be empty or a whole number"),
        ('{"offset_s": NaN}\n', "t.csv:1: not a JSON object"),
        ('{"offset_s": 1}\n{"offset_s": 1, "deployment": ["x"]}\n', "t.csv:2: app and deployment must be names"),
        ('{"offset_s": 1}\n' + "[" * 5000 + "\n", "t.csv:2: not a JSON object"),
        ('{"offset_s": 1, "prompt_tokens": ' + "9" * 400 + "}\n", "t.csv:1: prompt_tokens must be a whole number"),
    ],
    ids=_short_id,
)
def test_trace_values_no_row_takes_are_one_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_trace(path)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_trace_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"offset_s,app\n1,a\n2,caf\xe9\n")
    with pytest.raises(ScenarioError, match=r"t\.csv:3: not UTF-8 text"):
        load_trace(path)


@pytest.mark.parametrize(
    ("command", "file", "words"),
    [
        ("simulate", "run: {duration: P99999999999D}\n", "run.duration: 'P99999999999D' is longer than P365D"),
        ("serve", "run: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to read"),
        ("simulate", "workload: {trace: {file: t.csv}}\n", "t.csv:2: prompt_tokens must be a whole number"),
    ],
    ids=["overflowing-duration", "deep-nesting", "trace-row"],
)
def test_the_command_line_shows_one_line_and_exits_2(tmp_path: Path, command: str, file: str, words: str) -> None:
    (tmp_path / "t.csv").write_text("offset_s,prompt_tokens\n1,1e400\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(file, encoding="utf-8")
    done = run_harness([command, "--scenario", "bad.yaml"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and words in done.stderr, done.stderr
