"""The readers of APIM files (policy XML, backends JSON, Log Analytics exports, named values) and the policy
editor, probed and fuzzed: a file that is not what it should be is one HarnessError line (exit 2 at the CLI),
never a traceback or a hang. Hypothesis examples are bounded; each probe finishes in under 2 s.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.apim.backends import read_backends
from harness.apim.cli import read_named_values
from harness.apim.llm_log import Options, import_llm_log
from harness.apim.policy import read_policy
from harness.apim.policy_edit import edit_policy
from harness.cli import main
from harness.errors import HarnessError
from harness.scenario.gateway import GatewayConfig

FIXTURES = Path(__file__).parent / "fixtures" / "apim"
POLICIES = sorted(FIXTURES.glob("*.policy.xml"))
BACKENDS = sorted(FIXTURES.glob("*.backends.json"))
FUZZ = settings(
    max_examples=150,
    deadline=None,  # bounded by the example count; a shared machine is slow, not wrong
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]><policies><inbound>&lol9;</inbound></policies>"
)
SEED = str(FIXTURES / "priority-weight-pool.backends.json")


def one_line_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    started = time.monotonic()
    code = main(args)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert elapsed < 2, f"{elapsed:.1f} s"
    return err[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not an APIM policy"),
        ("   \n", "not an APIM policy"),
        ("rate limit: 1000 tokens per minute\n", "not an APIM policy"),
        ('{"policies": {"inbound": ["llm-token-limit"]}}', "not an APIM policy"),
        (LAUGHS, "refused"),
        ("<policies><inbound>" * 2000, "not well-formed XML"),
    ],
)
def test_from_apim_refuses_what_is_not_a_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    policy = tmp_path / "policy.xml"
    policy.write_text(text, encoding="utf-8")
    line = one_line_exit_2(
        ["scenario", "from-apim", "--backends", SEED, "--policy", str(policy), "--out", str(tmp_path / "s.yaml")],
        capsys,
    )
    assert message in line and str(policy) in line
    assert not (tmp_path / "s.yaml").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("flag", ["--policy", "--backends", "--named-values"])
@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "big"])
def test_special_files_are_one_line_in_under_two_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, special: str
) -> None:
    if special == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    elif special == "big":
        path = tmp_path / "big.json"
        with path.open("wb") as handle:
            handle.truncate(17 * 1024 * 1024)  # past every cap, sparse
    else:
        path = Path(special)
    args = {"--policy": str(FIXTURES / "priority-weight-pool.policy.xml"), "--backends": SEED} | {flag: str(path)}
    command = ["scenario", "from-apim", *[x for pair in args.items() for x in pair], "--out", str(tmp_path / "s.yaml")]
    line = one_line_exit_2(command, capsys)
    assert str(path) in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("which", ["--llm-log", "--gateway-log"])
def test_trace_import_refuses_special_files_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    os.mkfifo(tmp_path / "pipe")
    llm = Path(__file__).parent / "data" / "apim-logs" / "ApiManagementGatewayLlmLog.csv"
    files = {"--llm-log": str(llm), "--gateway-log": str(llm)} | {which: str(tmp_path / "pipe")}
    command = ["trace", "import", *[x for pair in files.items() for x in pair], "--out-dir", str(tmp_path / "out")]
    assert "is not a regular file" in one_line_exit_2(command, capsys)
    files[which] = "/dev/zero"
    command = ["trace", "import", *[x for pair in files.items() for x in pair], "--out-dir", str(tmp_path / "out")]
    assert "/dev/zero" in one_line_exit_2(command, capsys)


def test_a_named_values_alias_bomb_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "named.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9)
    ), encoding="utf-8")  # fmt: skip
    line = one_line_exit_2(
        ["scenario", "from-apim", "--backends", SEED, "--named-values", str(bomb), "--out", str(tmp_path / "s")], capsys
    )
    assert "not a JSON or YAML object of named values" in line


# -- fuzz -----------------------------------------------------------------------------------------------------------


def mutated(texts: list[str]) -> st.SearchStrategy[str]:
    """A real file with a few characters deleted, repeated or replaced by markup that breaks things."""
    pieces = st.sampled_from(['"', "<", ">", "/>", "&", "@(", "{{", "}}", "<!--", "]]>", "\x00", "é", "\n", "'", "="])

    @st.composite
    def build(draw: Any) -> str:
        text = draw(st.sampled_from(texts))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text)))
            cut = draw(st.integers(0, 12))
            text = text[:at] + draw(st.one_of(pieces, st.text(max_size=4))) + text[at + cut :]
        return text

    return build()


POLICY_TEXTS = [p.read_text(encoding="utf-8") for p in POLICIES]


@FUZZ
@given(text=st.one_of(mutated(POLICY_TEXTS), st.text(max_size=200)))
def test_fuzzed_policies_read_or_fail_in_one_line(tmp_path: Path, text: str) -> None:
    policy = tmp_path / "policy.xml"
    policy.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_policy(policy, [])
    except HarnessError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(text=mutated(POLICY_TEXTS), tpm=st.integers(1, 10**6), key=st.sampled_from(["appid", "constant:x", "ip"]))
def test_fuzzed_policies_edit_or_fail_in_one_line(tmp_path: Path, text: str, tpm: int, key: str) -> None:
    gateway = GatewayConfig.model_validate(
        {"token_limit": {"counter-key": key, "tokens-per-minute": tpm}, "retry": {"enabled": True, "max_attempts": 2}}
    )
    try:
        edited = edit_policy(text, Path("policy.xml"), gateway, None, [])
    except HarnessError as exc:
        assert "\n" not in str(exc)
        return
    policy = tmp_path / "policy.xml"
    policy.write_text(edited.text, encoding="utf-8", errors="surrogatepass")
    read_policy(policy, [])  # what the editor writes reads back


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
              st.sampled_from(["[parameters('x')]", "[copyIndex()]", "[format('{0}', 1)]", "[[escaped", "PT1M", "inner",
                "[format('{3}')]", "[length(1)]", "[variables('x')[5].y]", "[concat([], 'a')]", "Microsoft.Resources/deployments",
                "Microsoft.ApiManagement/service/backends", "[resourceId('t', 'a', 'b')]"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "type", "properties", "pool", "services", "id", "copy", "count", "resources",
                         "circuitBreaker", "rules", "value", "url", "parameters", "variables", "template",
                "expressionEvaluationOptions", "scope", "input", "templateLink", "defaultValue", "priority"]),
        inner, max_size=4),
    max_leaves=16,
)  # fmt: skip


@FUZZ
@given(document=st.one_of(JSON_VALUES, mutated([p.read_text(encoding="utf-8") for p in BACKENDS])))
def test_fuzzed_backends_read_or_fail_in_one_line(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "backends.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8",
                    errors="surrogatepass")  # fmt: skip
    try:
        read_backends(path, [])
    except HarnessError as exc:
        assert "\n" not in str(exc)


ROW = st.dictionaries(
    st.sampled_from(["TimeGenerated", "CorrelationId", "DeploymentName", "PromptTokens", "CompletionTokens",
                     "IsStreamCompletion", "ResponseCode", "RequestSize", "Url", "ApimSubscriptionId", "Category",
                     "responseCode_d", "OperationId"]),
    st.one_of(st.none(), st.integers(-5, 10**8), st.floats(), st.booleans(), st.text(max_size=30),
              st.sampled_from(["2026-11-24T14:00:00Z", "cid-1", "cid-2", "GatewayLogs", "/deployments/gpt-4o/x"])),
    max_size=10,
)  # fmt: skip


@FUZZ
@given(llm=st.lists(ROW, max_size=8), gateway=st.lists(ROW, max_size=8), raw=st.text(max_size=80))
def test_fuzzed_logs_import_or_fail_in_one_line(tmp_path: Path, llm: list[Any], gateway: list[Any], raw: str) -> None:
    (tmp_path / "llm.json").write_text(json.dumps(llm, default=str), encoding="utf-8")
    (tmp_path / "gateway.json").write_text(json.dumps(gateway, default=str), encoding="utf-8")
    (tmp_path / "raw.csv").write_text(raw, encoding="utf-8", errors="surrogatepass")
    for llm_file, gateway_file in (("llm.json", "gateway.json"), ("raw.csv", None), ("llm.json", "raw.csv")):
        try:
            import_llm_log(tmp_path / llm_file, tmp_path / gateway_file if gateway_file else None, Options())
        except HarnessError as exc:
            assert "\n" not in str(exc)


@FUZZ
@given(
    text=st.one_of(st.text(max_size=120), st.sampled_from(["[1, 2]", "{a: [1]}", "- {name: x}", "a: !!python/none"]))
)
def test_fuzzed_named_values_read_or_fail_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "named.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_named_values(str(path))
    except HarnessError as exc:
        assert "\n" not in str(exc)
