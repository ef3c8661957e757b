"""
Failures described in one short line, for log lines and startup errors.

A log collector splits on newlines and an operator reads the first line: a
multi-line exception text or a bare exit code helps neither.
"""

from __future__ import annotations

import contextlib
import signal


def one_line(error: BaseException | None) -> str:
    """
    C{error}'s text with its whitespace (newlines included) collapsed, or
    its class name when it has no text.
    """
    return " ".join(str(error).split()) or type(error).__name__


def exit_status(ended: BaseException | None) -> str:
    """
    How a child process ended, from the exception Twisted gives
    C{processEnded} (C{ProcessDone} or C{ProcessTerminated}): C{"exit status
    3"}, or C{"killed by SIGKILL"} (the number when it names no signal).
    """
    number = getattr(ended, "signal", None)
    if number is not None:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(number).name}"
        return f"killed by signal {number}"
    return f"exit status {getattr(ended, 'exitCode', None)}"
