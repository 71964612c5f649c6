"""One exception tree for the harness. Each error renders as a single line that names what and where.

The CLI edge turns these into that line and an exit code; the servers map them to HTTP in one place.

    >>> str(ScenarioError("backends[1].deployments.gpt-4o.tpm", "must be a positive integer"))
    'backends[1].deployments.gpt-4o.tpm: must be a positive integer'
"""

from __future__ import annotations

import logging


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped: a path or value quoted from a file or
    a command line can hold them, and an error is one line.

    >>> one_line("run.x: 'a\\nb' is not a YAML value")
    "run.x: 'a\\\\nb' is not a YAML value"
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Where a file that is not UTF-8 text goes wrong, for its one-line error.

    >>> not_utf8(UnicodeDecodeError("utf-8", b"a\\nb\\xff", 3, 4, "invalid start byte"))
    'line 2: not UTF-8 text (byte 3)'
    """
    line = bytes(exc.object[: exc.start]).count(b"\n") + 1
    return f"line {line}: not UTF-8 text (byte {exc.start})"


# The exit code of a run (or a sweep's live confirmation) whose results broke what it was asked to meet:
# a scenario's `checks:`, or a sweep's constraints when its recommendation is run live. 2 is a usage error.
CHECKS_FAILED_EXIT_CODE = 3


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code = 2


class ScenarioError(HarnessError):
    """A scenario file (or an override of one) is invalid at `path`."""

    def __init__(self, path: str, message: str, file: str | None = None) -> None:
        self.path = path
        self.message = message
        self.file = file
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        text = f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"
        return one_line(text)


class RecordsError(HarnessError):
    """A records or log file cannot be read: names the file and, when known, the line."""

    def __init__(self, file: str, message: str, line: int | None = None) -> None:
        self.file = file
        self.line = line
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        at = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{at}: {self.message}"


class UsageError(HarnessError):
    """A command-line argument or combination of them is wrong."""


class ServeError(HarnessError):
    """A server of `harness serve` cannot start, e.g. its port is already taken."""


def quiet_server_tracebacks(expected: type[BaseException]) -> None:
    """Keep uvicorn from logging a traceback for an `expected` exception (or a group made only of them) that an
    app raises on purpose to break a connection off: the server logs it as a row of its own instead."""

    def only_expected(error: BaseException | None) -> bool:
        if isinstance(error, expected):
            return True
        if isinstance(error, BaseExceptionGroup):
            return all(only_expected(inner) for inner in error.exceptions)
        return False

    def keep(record: logging.LogRecord) -> bool:
        return not (record.exc_info and only_expected(record.exc_info[1]))

    # uvicorn reports an exception from the app on this logger ("Exception in ASGI application" and a traceback)
    logging.getLogger("uvicorn.error").addFilter(keep)
