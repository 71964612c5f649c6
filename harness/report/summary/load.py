"""A summary read back from JSON (summary.json, or run.json's `summary`), checked against `schema.Summary`.

Whoever reads a summary back gets the typed `Summary` the schema declares, or one `SummaryError` line naming
the file and the first field that is wrong:

    runs/x/summary.json: breaker.primary.trips: expected an integer

What is checked, and why:
- every section and key the schema declares must be there (none is marked NotRequired): a summary written
  by an older harness that lacks a section is refused, not half-read. For summary.json the error says
  `harness report RUN_DIR` writes it anew from the run's own files (records and logs), the only source of its
  numbers anyway; a sweep reads the summary its runs stored in run.json as they ended, never an older one;
- values have the declared JSON type, strictly: a number for a float (an integer is a number), an integer
  for an int (not 1.5, not true), a string, a list, an object, or null where the schema allows None. Nothing
  is converted: the summary returned is the parsed JSON itself, so it is written back byte for byte;
- keys the schema does not declare are tolerated and kept (summary.json's `figures`, sections a newer
  harness added): the readers only name declared keys, and a misspelled key still fails as the declared
  one missing;
- the file is read as any user-handed file is (`harness.inputs`: regular files only, at most
  `SUMMARY_LIMIT` bytes, UTF-8) and must be strict JSON (no NaN or Infinity: the summary writes those as null).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, cast

from pydantic import TypeAdapter, ValidationError

from harness.errors import HarnessError, one_line
from harness.inputs import SUMMARY_LIMIT, read_text
from harness.records import RUN_SUMMARY
from harness.report.summary.schema import Summary
from harness.scenario.common import join_path

# pydantic's error type -> what the field should have held, in JSON's words
_EXPECTED = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "typed_dict_type": "expected an object",
    "model_type": "expected an object",
    "none_required": "expected null",
    "finite_number": "expected a finite number",
}
_OLDER = "written by an older harness?"
_REPORT_AGAIN = "`harness report RUN_DIR` writes it anew"


class SummaryError(HarnessError):
    """A summary read back from JSON does not match the schema: `file: field: what is wrong`."""

    def __init__(self, file: str | Path, field: str, message: str) -> None:
        self.file = str(file)
        self.field = field
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        at = f"{self.file}: {self.field}" if self.field else self.file
        return one_line(f"{at}: {self.message}")

    def __reduce__(self) -> tuple[type[SummaryError], tuple[str, str, str]]:
        # a simulated sweep reads summaries in worker processes: the error crosses back pickled
        return (SummaryError, (self.file, self.field, self.message))


@functools.cache
def _adapter() -> TypeAdapter[Summary]:
    return TypeAdapter(Summary)


def summary_from(data: object, file: str | Path, field: str = "", remedy: str = "") -> Summary:
    """`data` (parsed JSON) as a `Summary`, unchanged, once it matches the schema; `field` is where it sits in
    `file` (e.g. run.json's `summary`), for the error line; `remedy` what to do about a missing key."""
    try:
        _adapter().validate_python(data, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = join_path([field, *first["loc"]] if field else first["loc"])
        kind = first["type"]
        if kind == "missing":
            why = f"{_OLDER} {remedy}" if remedy else _OLDER
            raise SummaryError(file, where, f"missing ({why})") from None
        raise SummaryError(file, where, _EXPECTED.get(kind, str(first["msg"]).lower())) from None
    return cast(Summary, data)


def load_summary(path: str | Path) -> Summary:
    """summary.json at `path`, checked (see the module's rules)."""
    return summary_from(_read_json(path, "summary"), path, remedy=_REPORT_AGAIN)


def run_info_summary(path: str | Path) -> Summary | None:
    """The summary run.json at `path` stored as its run ended, checked; None when there is no run.json or
    it holds no summary (a run whose summary could not be computed stores null). The summary in run.json is
    the one the run computed as it ended; nothing rewrites it, so a refused one means the run is refused."""
    if not Path(path).exists():
        return None
    info = _read_json(path, "run.json")
    if not isinstance(info, dict):
        raise SummaryError(path, "", "expected an object")
    summary = info.get(RUN_SUMMARY)
    return None if summary is None else summary_from(summary, path, RUN_SUMMARY)


def _read_json(path: str | Path, what: str) -> Any:
    text = read_text(path, what, SUMMARY_LIMIT)
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise SummaryError(path, "", f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:
        raise SummaryError(path, "", str(exc)) from None


def _not_json(constant: str) -> Any:
    raise ValueError(f"not strict JSON: {constant} (a summary writes a number it could not measure as null)")
