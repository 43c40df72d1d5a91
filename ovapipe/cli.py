"""Shared glue for tasks.py: errors to exit codes, findings to output."""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
import sys
import traceback
from collections.abc import Iterator

from invoke.exceptions import Exit

from ovapipe.errors import ConfigError, Interrupted, OvapipeError
from ovapipe.faults import checkpoint
from ovapipe.findings import Report


@contextlib.contextmanager
def exits() -> Iterator[None]:
    """Map ovapipe errors and Ctrl-C to ``invoke.Exit(message, code)``; never a traceback."""
    try:
        checkpoint("task.start")
        yield
    except OvapipeError as exc:
        raise Exit(f"error: {exc.message}", exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit(f"error: {Interrupted('interrupted').message}", Interrupted.exit_code) from None
    except (ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException) as exc:
        from ovapipe.vsphere.tasks import fault_message

        raise Exit(f"error: the connection to vCenter failed: {fault_message(exc)} "
                   "(each request waits at most VSPHERE_TIMEOUT seconds)", 1) from None
    except Exception as exc:
        from ovapipe.vsphere.tasks import vsphere_fault

        if (fault := vsphere_fault(exc)) is not None:
            raise Exit(f"error: {fault.message}", fault.exit_code) from None
        if os.environ.get("OVAPIPE_DEBUG"):
            traceback.print_exc()
        raise Exit(
            f"error: internal error: {type(exc).__name__}: {exc} "
            "(a bug in ovapipe: please report it; OVAPIPE_DEBUG=1 shows the traceback)", 1
        ) from None


def emit_report(report: Report, as_json: bool) -> None:
    """Print a validation report and exit 1 when it has an error."""
    print(report.to_json() if as_json else report.render())
    if not report.ok:
        raise Exit(code=1)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def number_flag(flag: str, value: object, *, minimum: float = 0, whole: bool = True) -> float:
    """A numeric flag, parsed here rather than by Invoke (whose errors are tracebacks)."""
    try:
        number = int(str(value), 10) if whole else float(str(value))
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"--{flag} {value!r}: expected {kind}") from None
    if number < minimum:
        raise ConfigError(f"--{flag} {number}: must be at least {minimum:g}")
    return number
