"""A build is a list of steps; cleanups run in reverse on failure or cancel (Packer's multistep).

Each step that creates something registers its cleanup the moment the thing exists, through
``Run.on_failure`` (undo when the run does not finish) or ``Run.always`` (temporary things:
undo whatever happens, e.g. the build VM after its disks were exported).

Cleanups act on identity, never on names: an undo holds the reference of the object its own
step created and re-reads that object's run marker before acting; a step that created nothing
registers nothing. ``in_cleanup()`` is true while cleanups run, and name lookups refuse to run
then (``ovapipe.vsphere.template.vms_named``), so a cleanup that deletes by name fails loudly.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TextIO, TypeVar

from ovapipe.errors import Interrupted, OvapipeError, StepFailed

S = TypeVar("S")

_IN_CLEANUP: contextvars.ContextVar[bool] = contextvars.ContextVar("in_cleanup", default=False)


def in_cleanup() -> bool:
    """True while a run's cleanups execute (in this thread)."""
    return _IN_CLEANUP.get()


@contextlib.contextmanager
def name_lookup_allowed(why: str) -> Iterator[None]:
    """The documented exception to the identity rule, for a thing whose reference ovapipe
    never learns (Packer's build VM); ``why`` says so where it is used."""
    assert why
    token = _IN_CLEANUP.set(False)
    try:
        yield
    finally:
        _IN_CLEANUP.reset(token)


@dataclass(frozen=True)
class Step(Generic[S]):
    name: str
    run: Callable[[S, Run], None]


@dataclass
class _Cleanup:
    description: str
    action: Callable[[], None]
    always: bool


@dataclass
class StepTiming:
    name: str
    seconds: float
    status: str  # "ok" | "failed" | "interrupted" | "skipped"


@dataclass
class Run:
    """What one run of steps has registered and how long each step took."""

    log: TextIO = field(default_factory=lambda: sys.stderr)
    timings: list[StepTiming] = field(default_factory=list)
    _cleanups: list[_Cleanup] = field(default_factory=list)

    def on_failure(self, description: str, action: Callable[[], None]) -> None:
        """Undo ``action`` if the run fails or is cancelled; keep the thing on success."""
        self._cleanups.append(_Cleanup(description, action, always=False))

    def always(self, description: str, action: Callable[[], None]) -> None:
        """Undo ``action`` when the run ends, whatever the outcome."""
        self._cleanups.append(_Cleanup(description, action, always=True))

    def say(self, message: str) -> None:
        print(message, file=self.log, flush=True)

    def unwind(self, failed: bool) -> list[str]:
        """Run cleanups in reverse; returns the ones that failed (each already logged).

        Each cleanup gets at most CLEANUP_BOUND seconds (a vCenter that stopped answering must
        not hold an interrupted run); one that overruns is reported as possibly left. A Ctrl-C
        or SIGTERM during the cleanups exits at once, naming what may be left.
        """
        problems: list[str] = []
        pending = [c for c in reversed(self._cleanups) if failed or c.always]
        self._cleanups.clear()
        with _exit_on_interrupt(self, pending):
            while pending:
                cleanup = pending[0]
                problem = _bounded(cleanup)
                pending.pop(0)
                if problem is None:
                    self.say(f"cleanup: {cleanup.description}")
                else:
                    problem = f"cleanup '{cleanup.description}' failed: {problem}"
                    self.say(problem)
                    problems.append(problem)
        return problems


# Seconds one cleanup may run; its vCenter calls have shorter bounds of their own.
CLEANUP_BOUND: float = 30.0
SECOND_INTERRUPT_EXIT: int = 130


def _bounded(cleanup: _Cleanup) -> str | None:
    """Run ``cleanup`` in a worker thread for at most CLEANUP_BOUND s; the error, or None."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        _IN_CLEANUP.set(True)  # a new thread starts with a fresh context: this one's own
        try:
            cleanup.action()
        except BaseException as exc:  # reported, never raised in the worker
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=work, name=f"cleanup {cleanup.description}", daemon=True)
    worker.start()
    deadline = time.monotonic() + CLEANUP_BOUND
    # Short joins keep the main thread able to take a signal.
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(timeout=0.1)
    if worker.is_alive():
        return f"still running after {CLEANUP_BOUND:g} s; it may be left over"
    error = outcome[0] if outcome else None
    return None if error is None else str(error) or type(error).__name__


@contextlib.contextmanager
def _exit_on_interrupt(run: Run, pending: list[_Cleanup]) -> Iterator[None]:
    """During cleanups, another Ctrl-C/SIGTERM means: stop now, and say what may be left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave_now(signum: int, _frame: object) -> None:
        left = "; ".join(c.description for c in pending) or "nothing"
        run.say(f"interrupted again ({signal.Signals(signum).name}) during cleanup: exiting "
                f"now; may be left: {left} (the next run removes marked leftovers)")
        run.log.flush()
        os._exit(SECOND_INTERRUPT_EXIT)

    previous = {sig: signal.signal(sig, leave_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """CI cancels jobs with SIGTERM; treat it like Ctrl-C so cleanups run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_steps(
    steps: Sequence[Step[S]],
    state: S,
    *,
    run: Run | None = None,
    keep_on_error: bool = False,
) -> Run:
    """Run ``steps`` in order over ``state``.

    On an error or Ctrl-C the registered cleanups run in reverse (unless ``keep_on_error``,
    Packer's ``-on-error=abort``, which keeps everything for debugging) and a StepFailed or
    Interrupted naming the step is raised.
    """
    run = run or Run()
    current = ""
    with sigterm_as_interrupt():
        try:
            for step in steps:
                current = step.name
                started = time.monotonic()
                try:
                    step.run(state, run)
                except BaseException:
                    run.timings.append(StepTiming(step.name, time.monotonic() - started, "failed"))
                    raise
                run.timings.append(StepTiming(step.name, time.monotonic() - started, "ok"))
        except KeyboardInterrupt:
            if run.timings:
                run.timings[-1].status = "interrupted"
            if not keep_on_error:
                run.unwind(failed=True)
            raise Interrupted(f"interrupted during step '{current}'; cleanups ran") from None
        except OvapipeError as exc:
            if not keep_on_error:
                run.unwind(failed=True)
            raise StepFailed(current, exc) from exc
        except Exception as exc:
            if not keep_on_error:
                run.unwind(failed=True)
            from ovapipe.vsphere.tasks import vsphere_fault

            raise StepFailed(current, vsphere_fault(exc) or exc) from exc
        run.unwind(failed=False)
    return run
