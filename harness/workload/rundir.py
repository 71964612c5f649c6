"""The run directory: records.csv, the scenario as run (scenario.yaml), and run metadata (run.json).

reports/runs/<run-id>/
    records.csv     one row per HTTP attempt (harness.records)
    scenario.yaml   the scenario file, overrides applied
    run.json        run id, client profile(s), time scale, host, embedded or not, versions, times
    backend.jsonl   the mock pool's log (embedded runs)
    gateway.jsonl   the gateway's log (embedded runs with a gateway)
"""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from harness.records import RUN_INFO_FILE
from harness.scenario import apply_overrides

DEFAULT_RUNS_DIR = Path("reports/runs")


def new_run_id(wall: float) -> str:
    """A sortable, unique run id: UTC start time plus a short random suffix."""
    stamp = datetime.fromtimestamp(wall, tz=UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


REDACTED = "***"  # how a secret is written: a placeholder starting with it, or itself in an override's text
# Scenario fields holding secrets (backend and app keys, subscription keys, the HS256 secret): never written.
SECRET_FIELDS = frozenset({"api_key", "subscription_key", "key", "signing-secret", "signing_secret"})
# URL fields that may carry a password (redis://:PASSWORD@host): the password is written as `***`
SECRET_URL_FIELDS = frozenset({"redis_url"})
_URL_PASSWORD = re.compile(r"^([a-z]+://[^:/@]*:)[^@/]*@")
PLACEHOLDER_LENGTH = 32  # a signing secret must have 32 characters: its placeholder too, so the copy validates


def placeholder(number: int) -> str:
    """The stand-in of a run's `number`th distinct secret: distinct and long enough for every secret field.

    >>> placeholder(1), len(placeholder(1))
    ('***redacted-secret-1************', 32)
    """
    return f"{REDACTED}redacted-secret-{number}".ljust(PLACEHOLDER_LENGTH, "*")


def is_redacted(value: Any) -> bool:
    """Whether `value` is what a secret was written as."""
    return isinstance(value, str) and value.startswith(REDACTED)


def redacted(data: Any, stand_ins: dict[str, str] | None = None) -> tuple[Any, bool]:
    """`data` with every secret field's value replaced, and whether there was any.

    With `stand_ins` (a secret -> placeholder map, filled as secrets are met), each distinct secret becomes a
    distinct placeholder and an equal one the same, so the copy still validates (two subscriptions keep two
    keys, an app's key still names its subscription); without, every secret is written as `***`.

    >>> redacted({"backends": [{"name": "east", "api_key": "s3cret"}]})
    ({'backends': [{'name': 'east', 'api_key': '***'}]}, True)
    >>> redacted({"gateway": {"redis_url": "redis://:pw@10.0.0.5:6379/0"}})
    ({'gateway': {'redis_url': 'redis://:***@10.0.0.5:6379/0'}}, True)
    >>> redacted([{"key": "k1"}, {"key": "k2"}, {"subscription_key": "k1"}], {})[0]  # doctest: +NORMALIZE_WHITESPACE
    [{'key': '***redacted-secret-1************'}, {'key': '***redacted-secret-2************'},
     {'subscription_key': '***redacted-secret-1************'}]
    """
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        found = False
        for name, value in data.items():
            if name in SECRET_FIELDS and value not in (None, ""):
                out[name], found = _stand_in(str(value), stand_ins), True
            elif name in SECRET_URL_FIELDS and isinstance(value, str) and _URL_PASSWORD.match(value):
                out[name], found = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", value), True
            else:
                out[name], inner = redacted(value, stand_ins)
                found = found or inner
        return out, found
    if isinstance(data, list):
        items = [redacted(item, stand_ins) for item in data]
        return [item for item, _ in items], any(found for _, found in items)
    return data, False


def _stand_in(secret: str, stand_ins: dict[str, str] | None) -> str:
    if stand_ins is None:
        return REDACTED
    if secret not in stand_ins:
        stand_ins[secret] = placeholder(len(stand_ins) + 1)
    return stand_ins[secret]


def redact_override(override: str) -> str:
    """An override as it may be written down: `backends[0].api_key=***`; secrets inside a YAML value too.

    >>> redact_override("backends[0].api_key=s3cret"), redact_override("run.seed=7")
    ('backends[0].api_key=***', 'run.seed=7')
    >>> redact_override("gateway.redis_url=redis://:pw@10.0.0.5:6379/0")
    'gateway.redis_url=redis://:***@10.0.0.5:6379/0'
    """
    path, equals, raw = override.partition("=")
    names = [part for part in re.split(r"[.\[\]]", path) if part and not part.strip().isdigit()]
    if names and names[-1].strip() in SECRET_FIELDS:
        return f"{path}{equals}{REDACTED}"
    if names and names[-1].strip() in SECRET_URL_FIELDS:
        return f"{path}{equals}" + _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", raw.strip())
    try:
        value = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
        return override  # refused when the scenario was loaded; never reaches a file
    clean, found = redacted(value)
    if not found:
        return override
    return f"{path}{equals}" + yaml.safe_dump(clean, default_flow_style=True, width=1_000_000).strip()


def write_scenario_copy(run_dir: Path, scenario_path: str, overrides: list[str]) -> None:
    """The scenario exactly as given (comments kept) or, with overrides or secrets, the data with each distinct
    secret as a distinct placeholder (`***redacted-secret-N***...`), so the copy validates as the scenario did."""
    text = Path(scenario_path).read_text(encoding="utf-8")
    data, has_secrets = redacted(apply_overrides(yaml.safe_load(text) or {}, overrides), {})
    if overrides or has_secrets:
        header = "".join(f"# override: {redact_override(o)}\n" for o in overrides)
        how = "with overrides applied" if overrides else "as run"
        note = f"# secrets written as placeholders {REDACTED}redacted-secret-N{REDACTED}\n" if has_secrets else ""
        text = f"# {scenario_path} {how}\n{header}{note}" + yaml.safe_dump(data, sort_keys=False)
    (run_dir / "scenario.yaml").write_text(text, encoding="utf-8")


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for package, key in (("aoai-throttle-harness", "harness"), ("locust", "locust"), ("openai", "openai")):
        try:
            found[key] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[key] = ""
    return found


def write_run_json(run_dir: Path, info: dict[str, Any]) -> None:
    """Write run.json atomically (readers never see half a file), overrides with their secrets as `***`."""
    if info.get("overrides"):
        info = {**info, "overrides": [redact_override(o) for o in info["overrides"]]}
    temp = run_dir / f".run.json.{os.getpid()}.tmp"
    temp.write_text(json.dumps(info, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    temp.replace(run_dir / RUN_INFO_FILE)


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds")
