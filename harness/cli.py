"""`harness` command: serve the embedded stack, report on runs, compare them, sweep settings, import and export
APIM configuration.

Each subcommand's work lives in its own module (imported only when used, so `harness report` never
loads the servers); this edge turns every HarnessError into one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from harness import __version__
from harness.errors import HarnessError, UsageError, one_line

DEFAULT_SCENARIO = "scenarios/quickstart.yaml"
DEFAULT_CONFIRM_RUNS = 3  # live runs per setting of `harness sweep --confirm` without a number

# subcommand -> "module:function" taking the parsed arguments and returning an exit code
HANDLERS = {
    "serve": "harness.serve:run",
    "report": "harness.report.cli:run_report",
    "compare": "harness.report.cli:run_compare",
    "sweep": "harness.sweep:run",
    "simulate": "harness.sim.run:run",
    "scenario": "harness.apim.cli:run",
    "trace": "harness.apim.cli:run_trace",
    "calibrate": "harness.report.calibrate:run",
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

    simulate = sub.add_parser(
        "simulate", help="run a scenario as a discrete-event simulation (no sockets, no sleeps) into a run directory"
    )
    _scenario_arguments(simulate)
    simulate.add_argument("--run-dir", metavar="DIR", help="where the run goes (default: reports/runs/<run-id>)")
    simulate.add_argument("--no-report", action="store_true", help="skip report.html (summary.json still in run.json)")

    report = sub.add_parser("report", help="write report.html, figures and summary.json for a run directory")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--out", metavar="DIR", help="where to write (default: the run directory)")

    compare = sub.add_parser("compare", help="put several runs side by side")
    compare.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    compare.add_argument("--out", metavar="DIR", help="where to write the comparison")

    calibrate = sub.add_parser(
        "calibrate",
        help="fit the simulator's network hops from a live run's logs; prints --set lines for simulate and sweep",
    )
    calibrate.add_argument("run_dir", metavar="RUN_DIR", help="a live run directory (records.csv and its logs)")

    from harness.apim.cli import add_arguments as scenario_arguments  # argparse only: cheap to import
    from harness.apim.cli import add_trace_arguments
    from harness.scenario.objectives import METRICS_HELP  # constants only: no pandas at parse time

    scenario_arguments(sub)
    add_trace_arguments(sub)

    sweep = sub.add_parser(
        "sweep",
        help="run every setting several times (simulated or live), compare them and recommend one",
        description="Run every setting of the grid --repeats times, report each number's mean and 95 % CI\n"
        "per setting, and recommend the best feasible setting under --objective, saying whether it\n"
        "beats the runner-up by more than the noise and whether it sits at the edge of the swept range.",
        epilog=METRICS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _scenario_arguments(sweep)
    sweep.add_argument("--out", metavar="DIR", help="where to write the runs, comparison.json and compare.html")
    sweep.add_argument(
        "--engine",
        choices=["sim", "live"],
        default="sim",
        help="sim: the discrete-event simulator (instant); live: one headless Locust run each (default: sim)",
    )
    sweep.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="runs per setting, seeds run.seed+0..N-1 (default: 10 with sim, 1 live)",
    )
    sweep.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="simulated runs at once, one process each (default: one per CPU; live runs go one at a time)",
    )
    sweep.add_argument(
        "--objective",
        metavar="max:METRIC|min:METRIC",
        help="what 'best' means, e.g. min:requests.client_failure_rate; aliases goodput, failure_rate, "
        "p95_latency (default: the scenario's sweep.objective, goodput)",
    )
    sweep.add_argument(
        "--constraint",
        dest="constraints",
        action="append",
        default=[],
        metavar="METRIC<=VALUE",
        help="a setting is feasible only when the prediction bound of one more run meets it, not only the mean "
        "(also >=, <, >; repeatable)",
    )
    sweep.add_argument(
        "--quantile",
        metavar="Q",
        help="one-sided level of that prediction bound, between 0.5 and 1 (default: 0.95)",
    )
    sweep.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="PATH=LOW..HIGH",
        help="an input you are unsure of: every setting runs at LOW, the midpoint and HIGH (numbers or ISO 8601 "
        "durations; repeatable, a grid) and must be feasible at each; ranked by its worst level",
    )
    sweep.add_argument(
        "--confirm",
        nargs="?",
        const=DEFAULT_CONFIRM_RUNS,
        type=int,
        metavar="N",
        help=f"run the recommended setting and the runner-up live N times each (default {DEFAULT_CONFIRM_RUNS}) and re-apply the "
        "constraints; exit 3 when the recommendation breaks one live",
    )
    sweep.add_argument(
        "--no-fail", action="store_true", help="with --confirm: exit 0 even when the recommendation breaks live"
    )
    sweep.add_argument(
        "--list-metrics", action="store_true", help="print every METRIC of this scenario (one simulated run) and exit"
    )
    return parser


def _scenario_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.scenario.handoff import SET_ENV_OPTION  # parse time already reads the scenario package

    parser.add_argument("--scenario", default=DEFAULT_SCENARIO, metavar="FILE", help="scenario YAML file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario field (repeatable), e.g. run.time_scale=10",
    )
    parser.add_argument(
        SET_ENV_OPTION,
        dest="set_env",
        metavar="NAME",
        help="also read overrides from the environment variable NAME (a JSON list of PATH=VALUE): keeps secrets "
        "such as api keys off the command line, where any user of the machine can read them",
    )


# Numeric arguments, by their destination, in whichever command has them: (smallest, largest) accepted.
# argparse checks the type only; a value past these would overflow or starve a computation later on.
NUMBER_BOUNDS: dict[str, tuple[float | None, float]] = {
    "rate": (1e-3, 1e6),  # trace import: replay speed (an offset divided by it must stay a time)
    "tpm": (1, 10**12),  # tokens per minute of a deployment
    "origin": (0, 10**11),  # wall time in epoch seconds (year 5138)
    # sweep: its own checks say why too few; too many would fork without end or never finish
    "repeats": (None, 10_000),
    "jobs": (None, 256),
    "confirm": (None, 1_000),
}


def check_arguments(args: argparse.Namespace) -> None:
    """Arguments argparse lets through that no command can use: a one-line UsageError naming the option."""
    for dest, (low, high) in NUMBER_BOUNDS.items():
        value = getattr(args, dest, None)
        if value is None or isinstance(value, bool):
            continue
        option = "--" + dest.replace("_", "-")
        if not (isinstance(value, int | float) and math.isfinite(value) and value <= high):
            raise UsageError(f"{option}: {value!r} is not a number up to {high:g}")
        if low is not None and value < low:
            raise UsageError(f"{option}: {value!r} is not a number from {low:g} to {high:g}")
    if getattr(args, "set_env", None):
        from harness.scenario.handoff import overrides_from_env

        args.overrides = [*overrides_from_env(args.set_env), *args.overrides]
    if getattr(args, "host", None) is not None and not args.host.strip():
        raise UsageError("--host: empty (give an address to listen on, e.g. 127.0.0.1)")


def _os_error(exc: OSError) -> str:
    """A path the user named cannot be used (a file where a folder goes, no permission, ...): one line."""
    where = f"{exc.filename}: " if exc.filename is not None else ""
    hint = " (a folder is needed there, not a file)" if isinstance(exc, FileExistsError | NotADirectoryError) else ""
    return one_line(f"{where}{exc.strerror or exc.__class__.__name__}{hint}")


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    module, _, function = HANDLERS[command].partition(":")
    return getattr(import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
        return _handler(args.command)(args)
    except HarnessError as exc:
        print(f"harness {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path argument that names the wrong kind of file, or one out of reach
        print(f"harness {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return UsageError.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
