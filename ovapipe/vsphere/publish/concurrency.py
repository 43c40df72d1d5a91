"""Running the steps in every datacenter: one at a time, or at most ``concurrency`` at once."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from typing import Protocol, TextIO, TypeVar

from ovapipe.config import Connection
from ovapipe.errors import ConfigError, Interrupted, OvapipeError
from ovapipe.faults import checkpoint
from ovapipe.names import template_name
from ovapipe.progress import Progress
from ovapipe.steps import Run, Step, run_steps, sigterm_as_interrupt
from ovapipe.vsphere.ownership import RunMarker, new_marker
from ovapipe.vsphere.publish.ova import CheckedOva, ProgressFactory, check_ova
from ovapipe.vsphere.publish.records import LibrarySource, PublishOptions, PublishRecord
from ovapipe.vsphere.publish.state import DatacenterRun
from ovapipe.vsphere.publish.steps import LIBRARY_STEPS, STEPS


def default_progress(log: TextIO) -> ProgressFactory:
    return lambda label, total: Progress(label, total, log)


class _Cancellable(Protocol):
    def check_cancel(self) -> None: ...


CancellableState = TypeVar("CancellableState", bound=_Cancellable)


def _cancellable(step: Step[CancellableState]) -> Step[CancellableState]:
    """Another datacenter's Ctrl-C stops this one at its next step (or its next block);
    each step boundary is also the fault point ``publish.<step>.before``."""

    def run(state: CancellableState, steps_run: Run) -> None:
        state.check_cancel()
        checkpoint(f"publish.{step.name}.before")
        step.run(state, steps_run)

    return Step(step.name, run)


def publish_datacenter(state: DatacenterRun, log: TextIO) -> PublishRecord:
    steps = LIBRARY_STEPS if state.source is not None else STEPS
    run_steps([_cancellable(step) for step in steps], state, run=Run(log=log))
    checkpoint("publish.done")
    assert state.record is not None
    return state.record


def publish(
    options: PublishOptions,
    connection: Connection,
    *,
    log: TextIO | None = None,
    progress: ProgressFactory | None = None,
) -> list[PublishRecord]:
    """Publish to every datacenter; the handoff records in the order the datacenters were given.

    Raises the failure of a datacenter (after every datacenter has finished or cleaned up);
    datacenters that succeeded keep their template and record.
    """
    template_name(options.name, options.ova)  # vCenter's name rules, before any connection
    log = log or sys.stderr
    progress = progress or default_progress(log)
    if not options.datacenters:
        raise ConfigError("no datacenter given: pass --datacenter NAME (repeatable)")
    if len(set(options.datacenters)) != len(options.datacenters):
        raise ConfigError("a datacenter is given twice")
    if options.concurrency < 1:
        raise ConfigError(f"publish_concurrency must be at least 1, not {options.concurrency}")
    ova = check_ova(options.ova, min_vmx=options.min_vmx, firmware=options.firmware,
                    require_signature=options.require_signature, trust=options.trust,
                    name=options.name)
    cancelled = threading.Event()
    marker = new_marker(ova.name)
    states = [DatacenterRun(dc, options, connection, ova, progress, cancelled, marker)
              for dc in options.datacenters]
    with sigterm_as_interrupt():  # until the last line: SIGTERM never reads as success
        if options.library is not None:
            source = upload_to_library(options, connection, ova, progress, cancelled, marker,
                                       log)
            for state in states:
                state.source = source
        if len(states) == 1:
            return [publish_datacenter(states[0], log)]
        return _publish_concurrently(states, options.concurrency, cancelled, log)


def upload_to_library(options: PublishOptions, connection: Connection, ova: CheckedOva,
                      progress: ProgressFactory, cancelled: threading.Event,
                      marker: RunMarker, log: TextIO) -> LibrarySource:
    """--library: the OVA into the library's item, once, before any datacenter deploys it."""
    from ovapipe.vsphere.library.publish import LIBRARY_STEPS as UPLOAD_STEPS
    from ovapipe.vsphere.library.publish import LibraryRun

    state = LibraryRun(options, connection, ova, progress, cancelled, marker)
    run_steps([_cancellable(step) for step in UPLOAD_STEPS], state, run=Run(log=log))
    return state.source()


def _publish_concurrently(states: list[DatacenterRun], bound: int,
                          cancelled: threading.Event, log: TextIO) -> list[PublishRecord]:
    workers = min(bound, len(states))
    failures: dict[str, BaseException] = {}
    records: dict[str, PublishRecord] = {}
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="publish") as pool:
        futures = {pool.submit(publish_datacenter, s, log): s.datacenter for s in states}
        pending = set(futures)
        interrupted = False
        while pending:
            try:
                done, pending = concurrent.futures.wait(pending, timeout=0.2)
            except KeyboardInterrupt:
                interrupted = True
                cancelled.set()
                print("interrupt: stopping every datacenter and cleaning up...", file=log)
                continue
            for future in done:
                datacenter = futures[future]
                try:
                    records[datacenter] = future.result()
                except BaseException as exc:
                    failures[datacenter] = exc
    if interrupted:
        raise Interrupted("interrupted; cleanups ran in every datacenter")
    if failures:
        published = [s.datacenter for s in states if s.datacenter in records]
        lines = [f"{dc}: {exc}" for dc, exc in failures.items()]
        summary = (f"published to {', '.join(published)}; " if published else "") + \
            f"failed in {len(failures)} datacenter(s):\n" + "\n".join(lines)
        first = next(iter(failures.values()))
        error = OvapipeError(summary)
        error.exit_code = first.exit_code if isinstance(first, OvapipeError) else 1
        raise error
    return [records[s.datacenter] for s in states]
