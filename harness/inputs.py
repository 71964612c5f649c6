"""Reading a file a user hands the harness (scenario, policy XML, backends JSON, trace, JWKS): regular files
only, of a bounded size, as UTF-8 text; anything else is one `InputError` line naming the file.

A FIFO or a device would block or never end (`/dev/zero`), so the kind of file is checked before it is
opened, and the file is opened without blocking and read no further than its cap: a file that grows while it
is read cannot push past it either.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "policy.xml"
    >>> _ = path.write_text("<policies/>")
    >>> read_text(path, "policy", limit=1024)
    '<policies/>'
    >>> read_text(path, "policy", limit=4)
    Traceback (most recent call last):
    ...
    harness.inputs.InputError: ...policy.xml: policy is larger than 4 bytes (the limit for a policy)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.errors import HarnessError, not_utf8, one_line

MiB = 1024 * 1024

# Caps per kind of input: far above any real one, far below what would exhaust memory.
SCENARIO_LIMIT = 4 * MiB
POLICY_LIMIT = 4 * MiB  # APIM's own policy documents are limited to 256 KiB per scope
BACKENDS_LIMIT = 16 * MiB
TRACE_LIMIT = 512 * MiB  # exported request logs can be large; they are read row by row after this
JWKS_LIMIT = 1 * MiB
# summary.json, or run.json with the summary in it: the per-app and per-backend splits grow with the scenario
SUMMARY_LIMIT = 64 * MiB


class InputError(HarnessError):
    """A file given to the harness cannot be used as input: `file: message`."""

    def __init__(self, file: str | Path, message: str) -> None:
        self.file = str(file)
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return one_line(f"{self.file}: {self.message}")


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them; `what` names the input in errors."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(path, f"no such {what} file") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the {what} ({exc.__class__.__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(path, f"is a directory, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(path, f"is not a regular file (a {what} must be one)")
    if info.st_size > limit:
        raise InputError(path, f"{what} is larger than {limit} bytes (the limit for a {what})")
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO since the check, opening it does not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise InputError(path, f"is not a regular file (a {what} must be one)")
            data = file.read(limit + 1)
    except OSError as exc:
        raise InputError(path, f"cannot read the {what} ({exc.__class__.__name__})") from None
    if len(data) > limit:
        raise InputError(path, f"{what} is larger than {limit} bytes (the limit for a {what})")
    return data


def read_text(path: str | Path, what: str, limit: int, encoding: str = "utf-8") -> str:
    """`read_bytes` decoded as UTF-8 (`utf-8-sig` drops a byte-order mark); bad bytes are one line with where."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(path, not_utf8(exc)) from None
