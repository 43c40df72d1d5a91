"""Who made a VM, and whether that run is still alive: the marker in the VM's annotation.

Everything publish creates carries a run marker from birth (the import spec's annotation), as
``ovapipe.state`` and ``ovapipe.run.*`` lines beside the template record:

- ``ovapipe.state: in-progress``: the VM is not complete; the run that made it owns it;
- ``ovapipe.state: retired``: an old template that a ``--replace`` run renamed away.

A complete template carries no marker. Liveness is decided from the marker alone, so any later
run (on any machine) can tell a dead run's leftovers from a live run's work in progress:
same host, boot id and pid namespace -> the recorded process must still run with the recorded
start time (pid reuse cannot fake it); anything else -> live until ``STALE_AFTER`` has passed
since the run started.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Final, Literal, cast

from ovapipe.vsphere.template import RECORD_PREFIX

State = Literal["in-progress", "retired"]
STATE_KEY: Final = f"{RECORD_PREFIX}state"
RUN_PREFIX: Final = f"{RECORD_PREFIX}run."
STALE_AFTER: Final = dt.timedelta(hours=6)
_FIELDS: Final = ("id", "target", "host", "boot_id", "pid_ns", "pid", "proc_start", "started")


@dataclass(frozen=True)
class RunMarker:
    """The run that owns a VM (in-progress or retired), as written in its annotation."""

    state: State
    id: str  # random per run: the VM's owner, never guessed from a name
    target: str  # the template name the run publishes
    host: str
    boot_id: str
    pid_ns: str
    pid: int
    proc_start: str  # /proc/PID/stat field 22: with boot_id, survives pid reuse
    started: str  # UTC, ISO 8601

    def lines(self) -> list[str]:
        values = {name: str(getattr(self, name)) for name in _FIELDS}
        return [f"{STATE_KEY}: {self.state}"] + [f"{RUN_PREFIX}{k}: {v}" for k, v in values.items()]

    def as_state(self, state: State) -> RunMarker:
        return replace(self, state=state)

    def describe(self) -> str:
        return f"run {self.id[:8]} (pid {self.pid} on {self.host}, started {self.started})"

    @staticmethod
    def parse(annotation: str | None) -> RunMarker | None:
        values: dict[str, str] = {}
        state = ""
        for line in (annotation or "").splitlines():
            key, sep, value = line.partition(": ")
            if not sep:
                continue
            if key == STATE_KEY:
                state = value.strip()
            elif key.startswith(RUN_PREFIX):
                values[key[len(RUN_PREFIX):]] = value.strip()
        if state not in ("in-progress", "retired") or not values.get("id"):
            return None
        try:
            pid = int(values.get("pid", ""))
        except ValueError:
            pid = 0
        return RunMarker(cast(State, state), values["id"], values.get("target", ""),
                         values.get("host", ""), values.get("boot_id", ""),
                         values.get("pid_ns", ""), pid,
                         values.get("proc_start", ""), values.get("started", ""))


def is_marker_line(line: str) -> bool:
    key = line.partition(": ")[0]
    return key == STATE_KEY or key.startswith(RUN_PREFIX)


def strip_marker(annotation: str | None) -> str:
    """The annotation without its marker lines: what a complete template carries."""
    kept = [line for line in (annotation or "").splitlines() if not is_marker_line(line)]
    return "\n".join(kept) + "\n" if kept else ""


def with_marker(annotation: str | None, marker: RunMarker) -> str:
    return strip_marker(annotation) + "\n".join(marker.lines()) + "\n"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _proc_start(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat")
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


@cache
def _pid_ns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def new_marker(target: str, now: dt.datetime | None = None) -> RunMarker:
    """The marker of this process's run (one per publish invocation)."""
    now = now or dt.datetime.now(dt.UTC)
    pid = os.getpid()
    return RunMarker("in-progress", secrets.token_hex(16), target, socket.gethostname(),
                     _read("/proc/sys/kernel/random/boot_id"), _pid_ns(), pid, _proc_start(pid),
                     now.strftime("%Y-%m-%dT%H:%M:%SZ"))


@dataclass(frozen=True)
class Liveness:
    alive: bool
    why: str


def liveness(marker: RunMarker, now: dt.datetime | None = None) -> Liveness:
    """Whether the run that wrote ``marker`` may still be working."""
    now = now or dt.datetime.now(dt.UTC)
    here = (socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), _pid_ns())
    if (marker.host, marker.boot_id, marker.pid_ns) == here and marker.boot_id:
        if marker.pid > 0 and _proc_start(marker.pid) == marker.proc_start:
            return Liveness(True, f"process {marker.pid} on this host is still running")
        return Liveness(False, f"process {marker.pid} on this host is gone")
    try:
        started = dt.datetime.strptime(marker.started, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC)
    except ValueError:
        return Liveness(False, f"its start time '{marker.started}' is unreadable")
    if now - started > STALE_AFTER:
        return Liveness(False, f"it started on {marker.host} more than "
                               f"{STALE_AFTER.total_seconds() / 3600:.0f} h ago")
    return Liveness(True, f"it runs on another host or namespace ({marker.host}) and started "
                          f"less than {STALE_AFTER.total_seconds() / 3600:.0f} h ago")
