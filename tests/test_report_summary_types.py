"""summary.json after the split into one module per section: the same bytes as before, and every key typed.

`tests/data/synthetic-summary.json` is what `harness report` wrote for the synthetic run of
`test_report_metrics` with the single-module summary this package replaced; the split must not change a
byte of it (key order included). Rewrite it only when a summary number is meant to change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from test_report_cost import write_run as write_priced_run
from test_report_metrics import write_synthetic_run
from typing_extensions import is_typeddict  # the schema's TypedDicts are typing_extensions' (pydantic reads those)

from harness.report.html import write_report
from harness.report.load import load_run
from harness.report.summary.build import summarize
from harness.report.summary.schema import Summary, SummaryFile, to_json

BEFORE = Path(__file__).parent / "data" / "synthetic-summary.json"


def test_summary_json_is_byte_identical_to_the_single_module_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "synthetic"  # the run's id is its directory's name
    write_synthetic_run(run_dir)
    write_report(run_dir)
    assert (run_dir / "summary.json").read_bytes() == BEFORE.read_bytes()


def _typed_keys(shape: Any, value: Any, path: str) -> list[str]:
    """Where `value` has a key its TypedDict does not declare, or lacks one it does (nested sections too)."""
    origin = get_origin(shape)
    if value is None:
        return []
    if is_typeddict(shape):
        hints = get_type_hints(shape)
        problems = [f"{path}.{k}: not declared" for k in value if k not in hints]
        problems += [f"{path}.{k}: missing" for k in hints if k not in value]
        for key, hint in hints.items():
            if key in value:
                problems += _typed_keys(hint, value[key], f"{path}.{key}")
        return problems
    if origin is dict:
        _, inner = get_args(shape)
        return [p for k, v in value.items() for p in _typed_keys(inner, v, f"{path}.{k}")]
    if origin is list:
        (inner,) = get_args(shape)
        return [p for i, v in enumerate(value) for p in _typed_keys(inner, v, f"{path}[{i}]")]
    args = [a for a in get_args(shape) if a is not type(None)]
    if len(args) == 1:  # X | None
        return _typed_keys(args[0], value, path)
    return []


def test_every_key_of_a_summary_is_declared_by_its_section_type(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path / "synthetic")
    summary = summarize(load_run(tmp_path / "synthetic"))
    assert summary["run"]["shared_state_lost"] is not None  # the nested sections are there to check
    assert summary["chargeback"] and summary["breaker"] and summary["lockout"]
    assert _typed_keys(Summary, summary, "summary") == []
    written = json.loads(BEFORE.read_text(encoding="utf-8"))
    assert _typed_keys(SummaryFile, written, "summary.json") == []


def test_the_cost_and_ptu_sections_are_declared_too(tmp_path: Path) -> None:
    summary = summarize(load_run(write_priced_run(tmp_path / "priced")))
    assert summary["cost"] is not None
    assert any(b["ptu_utilization"] is not None for b in summary["backends"].values())
    assert _typed_keys(Summary, summary, "summary") == []


def test_the_checker_finds_an_undeclared_key_and_a_missing_one(tmp_path: Path) -> None:
    write_synthetic_run(tmp_path / "synthetic")
    summary: Any = to_json(summarize(load_run(tmp_path / "synthetic")))
    summary["retries"]["extra"] = 1
    del summary["run"]["shared_state_lost"]["by_app"]
    assert _typed_keys(Summary, summary, "summary") == [
        "summary.run.shared_state_lost.by_app: missing",
        "summary.retries.extra: not declared",
    ]
