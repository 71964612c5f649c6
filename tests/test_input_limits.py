"""Files and arguments a user hands the harness cannot hang it, exhaust its memory or end in a traceback: an alias
bomb, `/dev/zero` or a FIFO where a file goes, absurd numbers and a file where a folder goes are each one line
and exit 2, within two seconds. The readers are fuzzed too (JWKS here; scenario and trace in test_fuzz_files).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.clock import VirtualClock
from harness.errors import ScenarioError
from harness.gateway.jwt_check import SigningKeys
from harness.scenario import load_scenario, load_scenario_text
from harness.scenario.gateway import JwtValidation
from harness.scenario.yaml_reader import MAX_ALIAS_EXPANSION, MAX_ALIASES
from harness.workload.trace import load_trace

PROBE_LIMIT_S = 2.0
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


def alias_bomb(levels: int = 25) -> str:
    """Each level names the previous one twice: 2**levels values from a few hundred bytes."""
    names = [f"l{i}" for i in range(levels + 1)]
    lines = [f"{names[0]}: &{names[0]} [x, x]"]
    lines += [f"{name}: &{name} [*{prev}, *{prev}]" for prev, name in itertools.pairwise(names)]
    return "\n".join(lines) + "\n"


def _one_line_exit_2(args: list[str], cwd: Path, words: str) -> None:
    started = time.monotonic()
    done = run_harness(args, cwd, timeout=30)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
    assert words in done.stderr, done.stderr
    assert took < PROBE_LIMIT_S, f"{args} took {took:.2f} s"


# -- YAML aliases --------------------------------------------------------------------------------------------------


def test_an_alias_bomb_is_one_line_within_a_second() -> None:
    started = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(alias_bomb(), source="bomb.yaml")
    assert time.monotonic() - started < 1.0
    assert str(info.value) == f"bomb.yaml: aliases expand to more than {MAX_ALIAS_EXPANSION} values (an alias bomb?)"


def test_an_alias_bomb_in_a_set_override_is_one_line() -> None:
    levels = [f"l{i}" for i in range(26)]
    flow = "[&l0 [x, x], " + ", ".join(f"&{name} [*{prev}, *{prev}]" for prev, name in itertools.pairwise(levels)) + "]"
    with pytest.raises(ScenarioError, match=r"^description: aliases expand to more than"):
        load_scenario_text("", overrides=[f"description={flow}"])


def test_too_many_aliases_are_one_line_naming_the_line() -> None:
    text = "base: &b 1\nmany: [" + ", ".join(["*b"] * (MAX_ALIASES + 1)) + "]\n"
    with pytest.raises(ScenarioError, match=rf"^s\.yaml: line 2: more than {MAX_ALIASES} aliases"):
        load_scenario_text(text, source="s.yaml")


def test_an_alias_inside_its_own_anchor_is_one_line() -> None:
    with pytest.raises(ScenarioError, match=r"an alias refers to a node that contains it"):
        load_scenario_text("run: &r {seed: *r}\n", source="s.yaml")


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    text = (
        "backends:\n"
        "  - {name: a, deployments: {gpt-4o: &d {tpm: 30000, model: gpt-4o}}}\n"
        "  - {name: b, deployments: {gpt-4o: {<<: *d, tpm: 60000}}}\n"
        "  - {name: c, deployments: {gpt-4o: *d}}\n"
    )
    scenario = load_scenario_text(text)
    assert [b.deployments["gpt-4o"].tpm for b in scenario.backends] == [30000, 60000, 30000]


@st.composite
def aliased_yaml(draw: st.DrawFn) -> str:
    """Anchored lists whose items are aliases of earlier anchors: from harmless to a bomb."""
    levels = draw(st.integers(min_value=1, max_value=40))
    lines = ["a0: &a0 [x]"]
    for level in range(1, levels):
        width = draw(st.integers(min_value=1, max_value=6))
        refs = [f"*a{draw(st.integers(min_value=0, max_value=level - 1))}" for _ in range(width)]
        lines.append(f"a{level}: &a{level} [{', '.join(refs)}]")
    return "description: fuzz\nx:\n" + "\n".join("  " + line for line in lines) + "\n"


@FUZZ
@given(text=aliased_yaml())
def test_aliases_of_any_shape_are_read_or_one_line_quickly(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, source="s.yaml")  # `x` is no field: refused either way, the question is how
    assert "\n" not in str(info.value)
    assert time.monotonic() - started < 1.0


# -- files that are not regular files -------------------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_a_scenario_fifo_or_device_is_one_line(fifo: Path) -> None:
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ScenarioError, match=r"is not a regular file \(a scenario must be one\)"):
            load_scenario(path)


def test_a_trace_fifo_or_device_is_one_line(fifo: Path) -> None:
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ScenarioError, match=r"^workload\.trace\.file: .*is not a regular file"):
            load_trace(path)


def _jwks_rule(path: str | Path) -> JwtValidation:
    return JwtValidation.model_validate({"jwks-file": str(path)})


def test_a_jwks_fifo_or_device_is_one_line(fifo: Path) -> None:
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ScenarioError, match=r"^gateway\.auth\.jwt\.jwks-file: .*is not a regular file"):
            SigningKeys(_jwks_rule(path), VirtualClock())


def test_a_jwks_file_over_its_cap_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"keys": [' + " " * (2 * 1024 * 1024) + "]}")
    with pytest.raises(ScenarioError, match=r"larger than 1048576 bytes"):
        SigningKeys(_jwks_rule(path), VirtualClock())


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
JWK_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["RSA", "EC", "oct", "OKP", "x"]) | st.text(max_size=4),
        "kid": st.text(max_size=8),
        "alg": st.sampled_from(["RS256", "ES256", "HS256", "none"]) | st.text(max_size=5),
        "n": st.text(max_size=12),
        "e": st.sampled_from(["AQAB", ""]),
        "crv": st.sampled_from(["P-256", "P-384", "x"]),
        "x": st.text(max_size=12),
        "y": st.text(max_size=12),
        "k": st.text(max_size=12),
        "use": st.text(max_size=4),
    },
)
JWKS_DOCUMENTS = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.lists(JWK_FIELDS, max_size=3).map(lambda keys: json.dumps({"keys": keys}).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"", b"\xff\xfe{}", b"[" * 5000, b'{"keys": NaN}', b'{"keys": [' + b"1," * 10 + b"]}"]),
)


@FUZZ
@given(raw=JWKS_DOCUMENTS)
def test_a_jwks_file_is_read_or_one_line(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(raw)
    try:
        SigningKeys(_jwks_rule(path), VirtualClock())
    except ScenarioError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("gateway.auth.jwt.jwks"), str(exc)


# -- the command line -----------------------------------------------------------------------------------------------


def test_an_alias_bomb_at_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    _one_line_exit_2(["simulate", "--scenario", "bomb.yaml"], tmp_path, "an alias bomb?")


def test_dev_zero_as_a_jwks_file_at_the_command_line(tmp_path: Path) -> None:
    scenario = {"backends": [{"url": "http://127.0.0.1:9"}], "gateway": {"auth": {"jwt": {"jwks-file": "/dev/zero"}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    _one_line_exit_2(["serve", "--scenario", "s.yaml", "--only", "gateway"], tmp_path, "/dev/zero: is not a regular")


def test_a_fifo_as_scenario_and_as_jwks_file_at_the_command_line(tmp_path: Path, fifo: Path) -> None:
    _one_line_exit_2(["simulate", "--scenario", str(fifo)], tmp_path, "is not a regular file")
    scenario = {"backends": [{"url": "http://127.0.0.1:9"}], "gateway": {"auth": {"jwt": {"jwks-file": str(fifo)}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    _one_line_exit_2(["serve", "--scenario", "s.yaml", "--only", "gateway"], tmp_path, "is not a regular file")


def _llm_log(path: Path) -> None:
    path.write_text(
        "TimeGenerated,CorrelationId,DeploymentName,ModelName,IsStreamCompletion,PromptTokens,CompletionTokens,"
        "TotalTokens,OperationName,Region,RequestId,SequenceNumber\n"
        "2024-01-01T00:00:00Z,c1,gpt-4o,gpt-4o,false,10,5,15,chat,x,r1,0\n"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["trace", "import", "--llm-log", "llm.csv", "--out-dir", "out", "--rate", "1e-300"], "--rate: 1e-300 is not"),
        (
            ["trace", "import", "--llm-log", "llm.csv", "--out-dir", "out", "--rate", "nan"],
            "--rate: nan is not a number up",
        ),
        (["trace", "import", "--llm-log", "llm.csv", "--out-dir", "a-file"], "a-file: File exists (a folder is"),
        (["trace", "import", "--llm-log", "llm.csv", "--out-dir", "out", "--tpm", "-5"], "--tpm: -5 is not"),
        (["simulate", "--run-dir", "a-file", "--scenario", "q.yaml"], "a-file: File exists (a folder is needed"),
        (["serve", "--scenario", "q.yaml", "--log-dir", "a-file"], "a-file: File exists (a folder is needed"),
        (["serve", "--scenario", "q.yaml", "--ready-file", "a-file/ready"], "a-file: File exists"),
        (["serve", "--scenario", "q.yaml", "--origin", "nan"], "--origin: nan is not a number up to 1e+11"),
        (["serve", "--scenario", "q.yaml", "--origin", "1e300"], "--origin: 1e+300 is not a number up to 1e+11"),
        (["sweep", "--scenario", "q.yaml", "--jobs", "100000000"], "--jobs: 100000000 is not a number up to 256"),
        (["sweep", "--scenario", "q.yaml", "--repeats", "1000000000"], "--repeats: 1000000000 is not a number up"),
        (["serve", "--scenario", "q.yaml", "--host", " "], "--host: empty"),
        (["report", "a-file", "--out", "a-file"], "a-file"),
        (["simulate", "--scenario", "q.yaml", "--set-env", "NO_SUCH_VARIABLE"], "no environment variable"),
        (["simulate", "--scenario", "q.yaml", "--set-env", "HOME"], "HOME must hold a JSON list of PATH=VALUE"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_absurd_arguments_are_one_line_and_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    _llm_log(tmp_path / "llm.csv")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "q.yaml").write_text("run: {duration: PT2S}\n")
    _one_line_exit_2(args, tmp_path, words)


def test_a_secret_one_character_short_is_told_so(tmp_path: Path) -> None:
    secret = "s" * 31
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"gateway": {"auth": {"jwt": {"signing-secret": secret}}}}))
    _one_line_exit_2(
        ["simulate", "--scenario", "s.yaml"],
        tmp_path,
        "gateway.auth.jwt.signing-secret: too short (at least 32 characters)",
    )
    empty: dict[str, Any] = {"gateway": {"auth": {"subscriptions": [{"id": "", "key": "k"}]}}}
    with pytest.raises(ScenarioError, match=r"subscriptions\[0\]\.id: must not be empty"):
        load_scenario_text(yaml.safe_dump(empty))
