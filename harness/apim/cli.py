"""`harness scenario from-apim` and `harness scenario to-apim`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.apim.convert import DEFAULT_DEPLOYMENT, DEFAULT_TPM, POOL_NAME, Exported, Imported, from_apim, to_apim
from harness.errors import ScenarioError
from harness.inputs import POLICY_LIMIT, read_text
from harness.scenario import load_scenario


def add_arguments(sub: Any) -> None:
    scenario = sub.add_parser("scenario", help="import a scenario from APIM's configuration, or export one to it")
    actions = scenario.add_subparsers(dest="action", required=True, metavar="ACTION")
    imports = actions.add_parser(
        "from-apim", help="write a scenario from APIM backend resources (ARM JSON) and an API's policy XML"
    )
    imports.add_argument("--backends", required=True, metavar="PATH", help="ARM JSON of the backends: a file or folder")
    imports.add_argument("--policy", metavar="FILE", help="the API's policy XML (token limit, metrics, retry)")
    imports.add_argument("--out", required=True, metavar="FILE", help="the scenario YAML to write")
    imports.add_argument("--deployment", default=DEFAULT_DEPLOYMENT, help="deployment each backend gets")
    imports.add_argument("--tpm", type=int, default=DEFAULT_TPM, help="its tokens per minute")
    imports.add_argument(
        "--keep-urls", action="store_true", help="point backends at the real endpoints (url) instead of the mock"
    )
    imports.add_argument("--named-values", metavar="FILE", help=_NAMED_VALUES_HELP)
    exports = actions.add_parser(
        "to-apim", help="write a scenario's gateway as an ARM template of backends and a policy XML fragment"
    )
    exports.add_argument("--scenario", metavar="FILE", help="scenario YAML file")
    exports.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE")
    exports.add_argument("--sweep", metavar="DIR", help="a sweep's directory: its scenario at the recommended setting")
    exports.add_argument("--out", required=True, metavar="DIR", help="where backends and policy.xml go")
    exports.add_argument(
        "--pool-name", help=f"the pool backend to edit, or to name in fresh documents (default {POOL_NAME})"
    )
    exports.add_argument(
        "--backends",
        metavar="PATH",
        help="your backend resources (file or folder): edited, only the pool and breakers the scenario tuned change",
    )
    exports.add_argument(
        "--policy", metavar="FILE", help="your API's policy XML: edited, only the attributes the scenario tuned change"
    )
    exports.add_argument("--named-values", metavar="FILE", help=_NAMED_VALUES_HELP)


_NAMED_VALUES_HELP = (
    "APIM named values ({{name}} in the policy): a JSON or YAML object name -> value, or `az apim nv list` output"
)


def run(args: argparse.Namespace) -> int:
    if args.action == "from-apim":
        return _from_apim(args)
    return _to_apim(args)


def _from_apim(args: argparse.Namespace) -> int:
    policy = Path(args.policy) if args.policy else None
    imported = from_apim(
        Path(args.backends),
        policy,
        deployment=args.deployment,
        tpm=args.tpm,
        keep_urls=args.keep_urls,
        named_values=read_named_values(args.named_values),
    )
    for line in imported.warnings:
        print(f"harness scenario from-apim: warning: {line}", file=sys.stderr)
    _write(Path(args.out), scenario_text(imported, args.deployment))
    print(args.out)
    return 0


WORKLOAD_MARKER = "# The workload is yours to describe"
WORKLOAD_TEMPLATE = """\
workload:
  users: 20
  think_time: 1
  apps:
    - {{id: app-a, weight: 3, client_profile: openai-python}}
    - {{id: app-b, weight: 1, client_profile: openai-python}}
  mixes:
    - {{name: chat, deployment: {deployment}, prompt_tokens: 500, max_tokens: 300, stream_share: 0.3}}
"""


def scenario_text(imported: Imported, deployment: str) -> str:
    """The scenario YAML: where it came from, its backends and gateway, and a workload template to fill in."""
    header = "".join(f"# imported from {source}\n" for source in imported.sources)
    header += "".join(f"# warning: {line}\n" for line in imported.warnings)
    template = "".join(f"# {line}\n" for line in WORKLOAD_TEMPLATE.format(deployment=deployment).splitlines())
    return (
        header
        + yaml.safe_dump(imported.data, sort_keys=False)
        + f"{WORKLOAD_MARKER} (without it, 10 users send chat to {deployment}); for example:\n"
        + template
    )


def _to_apim(args: argparse.Namespace) -> int:
    scenario_file, overrides = args.scenario, list(args.overrides)
    if args.sweep:
        swept, setting = _recommended(Path(args.sweep))
        scenario_file = scenario_file or swept
        overrides = [f"{path}={value}" for path, value in setting.items()] + overrides
    if not scenario_file:
        raise ScenarioError("to-apim", "give --scenario FILE or --sweep DIR")
    scenario = load_scenario(scenario_file, overrides, workload=False)
    exported = to_apim(
        scenario,
        args.pool_name,
        Path(args.backends) if args.backends else None,
        Path(args.policy) if args.policy else None,
        read_named_values(args.named_values),
    )
    for line in exported.warnings:
        print(f"harness scenario to-apim: warning: {line}", file=sys.stderr)
    for line in exported.not_written:
        print(f"harness scenario to-apim: not written: {line}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    many = len(exported.backends) > 1
    if many:
        (out / "backends").mkdir(exist_ok=True)
    for name, document in exported.backends.items():
        target = out / "backends" / name if many else out / "backends.json"
        _write(target, json.dumps(document, indent=2) + "\n")
        written.append(target)
    _write(out / "policy.xml", exported.policy)
    written.append(out / "policy.xml")
    if exported.named_values:
        _write(out / "named-values.json", json.dumps(exported.named_values, indent=2) + "\n")
        written.append(out / "named-values.json")
    summary = changes_text(exported)
    _write(out / CHANGES_FILE, summary)
    for line in summary.splitlines():
        if not line.startswith("not written: "):  # said above
            print(f"harness scenario to-apim: {line}", file=sys.stderr)
    for path in [*written, out / CHANGES_FILE]:
        print(path)
    return 0


CHANGES_FILE = "changes.txt"


def changes_text(exported: Exported) -> str:
    """Every change the export made, one a line; fresh documents and what was left for the user said too."""
    lines = list(exported.notes)
    lines += [f"change: {line}" for line in exported.changes]
    if not exported.changes and not exported.notes:
        lines.append("no change: the policy and backends are written back as given")
    lines += [f"not written: {line}" for line in exported.not_written]
    return "".join(f"{line}\n" for line in lines)


class _NoAliases(yaml.SafeLoader):
    """YAML without aliases: a named-values file never needs them, and they are how expansion bombs work."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not accepted")
        return super().compose_node(parent, index)


def read_named_values(path: str | None) -> dict[str, str] | None:
    """Named values from a JSON or YAML object (name -> value) or a list of {name or displayName, value}."""
    if path is None:
        return None
    text = read_text(path, "named values", POLICY_LIMIT)
    try:
        data = yaml.load(text, Loader=_NoAliases)  # a SafeLoader that also refuses aliases
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"{path}{line}", "not a JSON or YAML object of named values") from None
    if isinstance(data, list):
        pairs = {}
        for i, item in enumerate(data):
            name = item.get("displayName") or item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or "value" not in item:
                raise ScenarioError(f"{path}: [{i}]", "needs a name (or displayName) and a value")
            pairs[name] = item["value"]
        data = pairs
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ScenarioError(str(path), "not an object of named values (name: value)")
    bad = [k for k, v in data.items() if not isinstance(v, str | int | float | bool) or v is None]
    if bad:
        raise ScenarioError(f"{path}: {bad[0]}", "a named value is text or a number")
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}


def _recommended(sweep_dir: Path) -> tuple[str, dict[str, Any]]:
    path = sweep_dir / "comparison.json"
    if not path.exists():
        raise ScenarioError(str(path), "no such file (is this a sweep's directory?)")
    text = read_text(path, "sweep comparison", POLICY_LIMIT)
    try:
        comparison = json.loads(text)
        recommendation = comparison["recommendation"]
        setting = recommendation["setting"]
        confirm = recommendation.get("confirm")
        if confirm is not None and not confirm["confirmed"]:  # the simulator's pick broke live: its fallback
            setting = confirm["final_setting"]
    except FileNotFoundError:
        raise ScenarioError(str(path), "no such file (is this a sweep's directory?)") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ScenarioError(str(path), "has no recommended setting") from None
    if setting is None:
        raise ScenarioError(str(path), "the recommended setting broke its constraints live and no setting held")
    return str(comparison["scenario"]), dict(setting)


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a reader never sees half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)


def add_trace_arguments(sub: Any) -> None:
    trace = sub.add_parser("trace", help="import a trace from APIM's LLM logs (Log Analytics exports)")
    actions = trace.add_subparsers(dest="action", required=True, metavar="ACTION")
    imports = actions.add_parser(
        "import", help="write a trace and a scenario skeleton from ApiManagementGatewayLlmLog (+ GatewayLogs)"
    )
    imports.add_argument("--llm-log", required=True, metavar="FILE", help="ApiManagementGatewayLlmLog: CSV or JSON")
    imports.add_argument(
        "--gateway-log", metavar="FILE", help="ApiManagementGatewayLogs, joined on CorrelationId (apps, backends)"
    )
    imports.add_argument("--out-dir", required=True, metavar="DIR", help="where trace.csv and scenario.yaml go")
    imports.add_argument(
        "--app-column", default="ApimSubscriptionId", help="column naming the app (default: ApimSubscriptionId)"
    )
    imports.add_argument(
        "--max-tokens",
        default="completion:1",
        metavar="RULE",
        help="max_tokens each request sends, as the logs do not say: completion:FACTOR (completion tokens x "
        "FACTOR, default completion:1), fixed:N or unset",
    )
    imports.add_argument("--from", dest="start", metavar="TIME", help="leave out rows before (ISO 8601, UTC)")
    imports.add_argument("--to", dest="end", metavar="TIME", help="leave out rows from this time on")
    imports.add_argument("--rate", type=float, default=1.0, help="replay speed: 2 sends the hour in 30 minutes")
    imports.add_argument("--anonymise", action="store_true", help="name apps app-1, app-2, ... instead")
    imports.add_argument("--tpm", type=int, default=DEFAULT_TPM, help="tokens per minute of each deployment")


def run_trace(args: argparse.Namespace) -> int:
    from harness.apim.llm_log import (
        PRODUCTION_STATUS_COLUMN,
        MaxTokensRule,
        Options,
        column_name,
        import_llm_log,
        parse_time,
        scenario_skeleton,
    )
    from harness.records import TRACE_COLUMNS
    from harness.scenario import validate_scenario

    def when(value: str | None, flag: str) -> Any:
        if value is None:
            return None
        parsed = parse_time(value)
        if parsed is None:
            raise ScenarioError(flag, f"'{value}' is not a time (ISO 8601)")
        return parsed

    if not (args.rate > 0 and args.rate < 1e6):
        raise ScenarioError("--rate", f"{args.rate} is not a positive speed")
    options = Options(
        app_column=column_name(args.app_column),
        max_tokens=MaxTokensRule.parse(args.max_tokens),
        start=when(args.start, "--from"),
        end=when(args.end, "--to"),
        rate=args.rate,
        anonymise=args.anonymise,
    )
    gateway_log = Path(args.gateway_log) if args.gateway_log else None
    imported = import_llm_log(Path(args.llm_log), gateway_log, options)
    if not imported.rows:
        dropped = imported.summary()[1:]
        raise ScenarioError(
            args.llm_log, f"no request to replay (of {imported.total})" + "".join(f"; {d}" for d in dropped)
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scenario = scenario_skeleton(imported, "trace.csv", args.tpm, Path(args.llm_log).name)
    validate_scenario(scenario, str(out / "scenario.yaml"))
    buffer = io.StringIO()
    # the production status is a column only when production refused some of the requests
    columns = list(TRACE_COLUMNS) + ([PRODUCTION_STATUS_COLUMN] if imported.refused_in_production else [])
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in imported.rows:
        status = row.get(PRODUCTION_STATUS_COLUMN)
        writer.writerow({**row, "max_tokens": "" if row["max_tokens"] is None else row["max_tokens"],
                         "stream": str(row["stream"]).lower(),
                         PRODUCTION_STATUS_COLUMN: "" if status is None else status})  # fmt: skip
    _write(out / "trace.csv", buffer.getvalue())
    header = f"# imported from {args.llm_log}" + (f" joined with {args.gateway_log}" if args.gateway_log else "")
    header += f"\n# max_tokens: {args.max_tokens} (the logs do not carry it); set each deployment's tpm to yours\n"
    _write(out / "scenario.yaml", header + yaml.safe_dump(scenario, sort_keys=False))
    for line in imported.summary():
        print(f"harness trace import: {line}")
    print(out / "trace.csv")
    print(out / "scenario.yaml")
    return 0
