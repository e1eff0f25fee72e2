"""What the command line's modules share: the program name, the exit codes, the failure type."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "EXIT_AUTH",
    "EXIT_CHANGES",
    "EXIT_MISSING",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_REFUSED",
    "EXIT_REJECTED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "PROG",
    "CommandFailed",
    "at_least_one",
    "escape_properties",
    "positive_seconds",
    "signal_handlers",
]

PROG = "aioapollo"

EXIT_OK = 0
EXIT_MISSING = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_AUTH = 4  # access denied: 401, or a token without the grant (403)
EXIT_CHANGES = 5  # `config diff --exit-code`: Apollo differs from the files
EXIT_REFUSED = 6  # `config apply` refused: others' unpublished changes, a lock, the 4-eyes rule
EXIT_REJECTED = 7  # the portal rejected a request (400, 404, 413, an operation it lacks)
EXIT_PARTIAL = 8  # `config apply` stopped part way: Apollo was changed (the message says how)


class CommandFailed(Exception):
    """A command failed: ``main`` prints ``aioapollo: error: <message>`` and exits ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def positive_seconds(text: str) -> float:
    """An ``argparse`` type: a positive number of seconds, with a message that says so."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds (e.g. 10 or 2.5), got {text!r}"
        )
    return value


def at_least_one(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1, with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def escape_properties(text: str, is_key: bool) -> str:
    """Escape for a Java ``.properties`` file (UTF-8, so only the syntax characters)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[ch])
        elif ch in "=:#!" and (is_key or i == 0):
            out.append("\\" + ch)
        elif ch == " " and (is_key or i == 0):
            out.append("\\ ")
        else:
            out.append(ch)
    return "".join(out)


@contextlib.contextmanager
def signal_handlers(handlers: Iterable[tuple[int, Callable[[int], object]]]) -> Iterator[None]:
    """Run each ``handler(signum)`` on the running loop when ``signum`` arrives, while inside.

    Main thread only: a handler that cannot be installed (tests call ``main()`` from a worker
    thread; Windows) is skipped. The handlers are removed on the way out, loop still open.
    """
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    for sig, handler in handlers:
        try:
            loop.add_signal_handler(sig, handler, sig)
            installed.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
