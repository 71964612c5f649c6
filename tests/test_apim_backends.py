"""Backends in every shape a user has: the REST list, ARM templates as `bicep build` writes them (copy loops,
nested deployments, languageVersion 2 resources), and `az apim backend list` output; what cannot be evaluated is
one line naming the construct. A folder holding a FIFO is read without hanging.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from harness.apim.backends import read_backends
from harness.apim.convert import from_apim
from harness.cli import main
from harness.scenario import validate_scenario

FIXTURES = Path(__file__).parent / "fixtures" / "apim"
COPY_LOOP = FIXTURES / "bicep-copy-loop.backends.json"


def test_copy_loops_and_nested_deployments_are_evaluated() -> None:
    warn: list[str] = []
    backends = read_backends(COPY_LOOP, warn)
    assert sorted(backends) == ["foundry-eus", "foundry-frc", "foundry-pool", "foundry-swc"]
    assert backends["foundry-frc"].url == "https://foundry-frc.openai.azure.com/openai"
    pool = backends["foundry-pool"]
    assert [(m["backend"], m["priority"], m["weight"]) for m in pool.members] == [
        ("foundry-swc", 1, 50), ("foundry-frc", 1, 50), ("foundry-eus", 2, 100),
    ]  # fmt: skip
    assert all(b.generated for b in backends.values())  # made by loops: an export cannot edit them in place
    assert not any("aiServicesConfig" in w for w in warn)


def template(resource: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"parameters": {"apim": {"type": "string"}}, "resources": [resource], **extra}


BACKEND = "Microsoft.ApiManagement/service/backends"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (template({"type": BACKEND, "copy": {"name": "b", "count": "[length(reference('x').items)]"},
                   "name": "[format('{0}/{1}', parameters('apim'), copyIndex())]", "properties": {}}),
         "reference() is not an ARM function the harness evaluates"),
        (template({"type": BACKEND, "name": "[format('{0}/{1}', parameters('apim'), parameters('backendName'))]",
                   "properties": {}}),
         "parameters('backendName') is not a parameter of the template"),
        (template({"type": BACKEND, "name": "[concat(parameters('apim'), '/', parameters('apim'))]", "properties": {}}),
         "depends on a template parameter without a default"),
        (template({"type": "Microsoft.Resources/deployments", "name": "linked",
                   "properties": {"templateLink": {"uri": "https://example.net/t.json"}}}),
         "nested deployment 'linked' has no inline template (templateLink)"),
        (template({"type": BACKEND, "name": "x", "properties": {}}, variables={"copy": [{"name": "v", "count": 2}]}),
         "a variables copy loop is not evaluated"),
    ],
)  # fmt: skip
def test_what_cannot_be_evaluated_is_one_line_naming_the_construct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any], message: str
) -> None:
    path = tmp_path / "backends.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    code = main(["scenario", "from-apim", "--backends", str(path), "--out", str(tmp_path / "s.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and str(path) in err[0]


def test_language_version_2_resources_by_symbolic_name_are_read(tmp_path: Path) -> None:
    document = {
        "languageVersion": "2.0",
        "parameters": {"apim": {"type": "string", "defaultValue": "apim-prod"}},
        "resources": {
            "primary": {"type": BACKEND, "name": "[format('{0}/{1}', parameters('apim'), 'primary')]",
                        "properties": {"url": "https://primary.openai.azure.com/openai", "protocol": "http"}},
        },
    }  # fmt: skip
    path = tmp_path / "main.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert list(read_backends(path, [])) == ["primary"]


def test_az_apim_backend_list_output_is_accepted_with_one_line_on_pools_and_breakers() -> None:
    path = FIXTURES / "semantic-cache-global.backends.json"
    imported = from_apim(path)
    assert [b["name"] for b in imported.data["backends"]] == ["aoai-eastus2", "embeddings-backend"]
    hints = [w for w in imported.warnings if "az rest" in w]
    assert hints == [
        f"{path}: `az apim backend list` output has no pools or circuit breakers: read them with: az rest --method "
        'get --url "https://management.azure.com/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/'
        'rg-genai/providers/Microsoft.ApiManagement/service/apim-genai/backends?api-version=2024-05-01"'
    ]
    validate_scenario(imported.data, "x", workload=False)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_a_backends_folder_does_not_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "backends"
    folder.mkdir()
    (folder / "a.json").write_text(
        json.dumps({"name": "a", "type": BACKEND, "properties": {"url": "https://a.openai.azure.com/openai"}}),
        encoding="utf-8",
    )
    os.mkfifo(folder / "pipe.json")
    started = time.monotonic()
    assert list(read_backends(folder, [])) == ["a"]  # the FIFO is never opened
    code = main(["scenario", "from-apim", "--backends", str(folder / "pipe.json"), "--out", str(tmp_path / "s.yaml")])
    assert time.monotonic() - started < 2
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a regular file" in err[0]
