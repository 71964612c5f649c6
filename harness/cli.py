"""`harness` command: serve the embedded stack, report on runs, compare them, sweep settings.

Each subcommand's work lives in its own module (imported only when used, so `harness report` never
loads the servers); this edge turns every HarnessError into one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from harness import __version__
from harness.errors import HarnessError

DEFAULT_SCENARIO = "scenarios/quickstart.yaml"

# subcommand -> "module:function" taking the parsed arguments and returning an exit code
HANDLERS = {
    "serve": "harness.serve:run",
    "report": "harness.report.cli:run_report",
    "compare": "harness.report.cli:run_compare",
    "sweep": "harness.sweep:run",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="start the mock AOAI pool and the reference gateway on loopback")
    _scenario_arguments(serve)
    serve.add_argument("--only", choices=["mock", "gateway"], help="start only the mock pool or only the gateway")
    serve.add_argument("--ready-file", metavar="PATH", help="also write the JSON ready lines to this file")
    serve.add_argument("--log-dir", metavar="DIR", help="write backend.jsonl and gateway.jsonl here")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--origin", type=float, help="wall time (epoch s) that scenario time is anchored to")

    report = sub.add_parser("report", help="write report.html, figures and summary.json for a run directory")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--out", metavar="DIR", help="where to write (default: the run directory)")

    compare = sub.add_parser("compare", help="put several runs side by side")
    compare.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    compare.add_argument("--out", metavar="DIR", help="where to write the comparison")

    sweep = sub.add_parser("sweep", help="run one headless, time-compressed run per setting and compare them")
    _scenario_arguments(sweep)
    sweep.add_argument("--out", metavar="DIR", help="where to write the runs and the comparison")
    sweep.add_argument("--objective", help="what 'best' means (default: most goodput within the checks)")
    return parser


def _scenario_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO, metavar="FILE", help="scenario YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario field (repeatable), e.g. run.time_scale=10",
    )


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    module, _, function = HANDLERS[command].partition(":")
    return getattr(import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _handler(args.command)(args)
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
