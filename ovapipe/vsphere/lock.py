"""A lock in the vCenter itself, so nightly runs on different machines cannot collide.

What conflicts is one profile in one vCenter (its template names and its retention), so there
is one lock per profile: a folder ``ovapipe-nightly-lock-<profile>`` under the root folder.
Creating it is atomic (a second creation answers DuplicateName); the holder is recorded in a
custom attribute on that folder right after.

Stale rule (docs/faults.md):
- a lock whose heartbeat is older than the TTL is stale (the holder heartbeats every
  HEARTBEAT_INTERVAL on a timer thread, through stages of any length);
- a lock whose holder ran on this machine (same host name, boot id and PID namespace) is stale
  as soon as that process is gone, or its pid now belongs to a process started at another time;
- a lock without a readable holder (its creator died before recording itself, or the value was
  damaged) is stale when it still has no readable holder after HOLDERLESS_BOUND seconds.
A stale lock is taken over. A holder is identified by a random token, never by pid alone.
Every operation logs in afresh: a nightly build outlasts vCenter's idle-session timeout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

from ovapipe.config import CLEANUP_TIMEOUT, Connection
from ovapipe.errors import CheckFailed, OvapipeError, VSphereError
from ovapipe.vsphere.connect import bound, session
from ovapipe.vsphere.inventory import properties, retrieve
from ovapipe.vsphere.tasks import wait_for_task

LOCK_FOLDER: Final = "ovapipe-nightly-lock"
HOLDER_FIELD: Final = "ovapipe.lock.holder"
HEARTBEAT_INTERVAL: Final = 60.0
DEFAULT_TTL: Final = dt.timedelta(minutes=10)
HOLDERLESS_BOUND: Final = 30.0


def lock_folder(scope: str) -> str:
    """The lock folder of one profile: ``ovapipe-nightly-lock-<profile>``."""
    return f"{LOCK_FOLDER}-{scope}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot ('' when unknown or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else ""


@dataclass(frozen=True)
class Holder:
    who: str
    host: str
    pid: int
    started: str
    heartbeat: str
    run_id: str
    token: str = ""
    boot_id: str = ""
    pid_namespace: str = ""
    process_start: str = ""

    @classmethod
    def me(cls, run_id: str) -> Holder:
        stamp = _now().isoformat(timespec="seconds")
        host = socket.gethostname()
        return cls(f"{getpass.getuser()}@{host}", host, os.getpid(), stamp, stamp, run_id,
                   secrets.token_hex(8), boot_id(), pid_namespace(), process_start(os.getpid()))

    @classmethod
    def parse(cls, value: str) -> Holder | None:
        try:
            data = json.loads(value)
            known = {f.name for f in fields(cls)}
            holder = cls(**{k: v for k, v in data.items() if k in known})
            dt.datetime.fromisoformat(holder.heartbeat)
        except (ValueError, TypeError, AttributeError):
            return None
        return holder

    def describe(self) -> str:
        return (f"{self.who} (pid {self.pid}, run {self.run_id}, started {self.started}, "
                f"last heartbeat {self.heartbeat})")

    def on_this_machine(self) -> bool:
        """Same host, same boot and same PID namespace: its pid can be checked here."""
        return (self.host == socket.gethostname() and bool(self.boot_id)
                and self.boot_id == boot_id() and self.pid_namespace == pid_namespace())

    def stale_reason(self, ttl: dt.timedelta) -> str | None:
        age = _now() - dt.datetime.fromisoformat(self.heartbeat)
        if age > ttl:
            return f"no heartbeat for {int(age.total_seconds())} s (more than {ttl})"
        if self.on_this_machine():
            started = process_start(self.pid)
            if not started:
                return f"its process {self.pid} is gone"
            if self.process_start and started != self.process_start:
                return f"its pid {self.pid} now belongs to another process"
        return None


def _field_key(service: Any) -> int:
    from pyVmomi import vim

    manager = service.RetrieveContent().customFieldsManager
    for definition in properties(service, manager, ["field"]).get("field", []):
        if definition.name == HOLDER_FIELD:
            return int(definition.key)
    try:
        return int(manager.AddCustomFieldDef(name=HOLDER_FIELD, moType=vim.Folder).key)
    except vim.fault.DuplicateName:
        return _field_key(service)


@dataclass(frozen=True)
class _Found:
    folder: Any
    holder: Holder | None
    raw: str  # the recorded value, to tell "still unreadable" from "changed"


def _find(service: Any, name: str) -> _Found | None:
    """The lock folder ``name`` and its recorded holder, or None when nobody holds it."""
    from pyVmomi import vim

    key = _field_key(service)
    root = service.RetrieveContent().rootFolder
    for found in retrieve(service, vim.Folder, ["name", "parent", "customValue"], root):
        if found.name == name and found.get("parent") == root:
            raw = next((v.value for v in found.get("customValue", []) if v.key == key), "")
            return _Found(found.obj, Holder.parse(raw) if raw else None, raw)
    return None


def _record(service: Any, folder: Any, holder: Holder) -> None:
    service.RetrieveContent().customFieldsManager.SetField(
        entity=folder, key=_field_key(service), value=json.dumps(asdict(holder)))


def _destroy(folder: Any, name: str) -> None:
    from pyVmomi import vim, vmodl

    with contextlib.suppress(vim.fault.NotFound, vmodl.fault.ManagedObjectNotFound):
        wait_for_task(folder.Destroy_Task(), f"remove lock folder {name}", timeout=60)


class NightlyLock:
    """The lock of one profile (``scope``) in one vCenter."""

    def __init__(self, connection: Connection, run_id: str, scope: str = "default",
                 ttl: dt.timedelta = DEFAULT_TTL, *, holderless_bound: float = HOLDERLESS_BOUND
                 ) -> None:
        self.connection = connection
        self.scope = scope
        self.name = lock_folder(scope)
        self.holder = Holder.me(run_id)
        self.ttl = ttl
        self.holderless_bound = holderless_bound
        self.held = False
        self.lost: str | None = None
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ taking and giving

    def acquire(self) -> None:
        from pyVmomi import vim, vmodl

        with session(self.connection) as service:
            for _attempt in range(5):
                try:
                    folder = service.RetrieveContent().rootFolder.CreateFolder(self.name)
                except vim.fault.DuplicateName:
                    existing = self._wait_for_holder(service)
                    if existing is None:
                        continue  # released meanwhile
                    why = self._stale_reason(existing)
                    if why is None:
                        raise self._refusal(existing.holder) from None
                    print(f"warning: taking over the stale nightly lock {self.name} of "
                          f"{existing.holder.describe() if existing.holder else 'nobody'}: "
                          f"{why}", file=sys.stderr)
                    _destroy(existing.folder, self.name)
                    continue
                try:
                    _record(service, folder, self.holder)
                except vmodl.fault.ManagedObjectNotFound:
                    continue  # reclaimed as holder-less before we wrote: try again
                self.held = True
                return
        raise VSphereError(f"could not take the nightly lock folder '{self.name}'")

    def _wait_for_holder(self, service: Any) -> _Found | None:
        """The lock; when it has no readable holder, look again until HOLDERLESS_BOUND."""
        found = _find(service, self.name)
        deadline = time.monotonic() + self.holderless_bound
        while found is not None and found.holder is None and time.monotonic() < deadline:
            time.sleep(min(1.0, self.holderless_bound / 10))
            again = _find(service, self.name)
            if again is None or again.raw != found.raw:
                return again
        return found

    def _stale_reason(self, found: _Found) -> str | None:
        if found.holder is None:
            what = "an unreadable holder" if found.raw else "no holder recorded"
            return f"{what} after {self.holderless_bound:g} s"
        return found.holder.stale_reason(self.ttl)

    def _refusal(self, holder: Holder | None) -> CheckFailed:
        assert holder is not None
        return CheckFailed(
            f"another nightly run holds the vCenter lock of profile {self.scope}: "
            f"{holder.describe()}; it is released when that run ends, or taken over once "
            f"stale ({self.ttl} without a heartbeat, or its process is gone); "
            "`invoke nightly --unlock` shows and breaks it"
        )

    def release(self) -> None:
        """Remove the lock if it is still ours; a failure only warns (it goes stale)."""
        self.stop_heartbeats()
        if not self.held:
            return
        self.held = False
        try:
            with session(self.connection) as service:
                bound(service, CLEANUP_TIMEOUT)  # release runs on the way out, after Ctrl-C
                existing = _find(service, self.name)
                if existing and existing.holder and existing.holder.token == self.holder.token:
                    _destroy(existing.folder, self.name)
        except (OvapipeError, OSError) as exc:
            print(f"warning: could not release the nightly lock {self.name}: {exc}; the next "
                  "run takes it over once it is stale", file=sys.stderr)

    # ------------------------------------------------------------------------ heartbeats

    def heartbeat(self) -> None:
        """Write a fresh heartbeat, but only while the recorded holder is still this run."""
        if not self.held or self.lost:
            return
        with session(self.connection) as service:
            existing = _find(service, self.name)
            if existing is None:
                self.lost = f"the nightly lock folder '{self.name}' was removed"
            elif existing.holder is None or existing.holder.token != self.holder.token:
                self.lost = (f"the nightly lock '{self.name}' was taken over by "
                             f"{existing.holder.describe() if existing.holder else 'another run'}")
            else:
                self.holder = replace(self.holder,
                                      heartbeat=_now().isoformat(timespec="seconds"))
                _record(service, existing.folder, self.holder)
        if self.lost:
            self.held = False

    def check(self) -> None:
        """Raise when the lock was lost (called between stages)."""
        if self.lost:
            raise CheckFailed(f"{self.lost}; stopping so that two runs never act at once")

    def start_heartbeats(self, interval: float = HEARTBEAT_INTERVAL) -> None:
        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.heartbeat()
                except Exception as exc:  # a missed beat is retried; the TTL allows several
                    print(f"warning: nightly lock heartbeat failed: {exc}", file=sys.stderr)
                if self.lost:
                    return

        self._stop.clear()
        self._beat = threading.Thread(target=beat, name=f"heartbeat {self.name}", daemon=True)
        self._beat.start()

    def stop_heartbeats(self) -> None:
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=CLEANUP_TIMEOUT + 5)
        self._beat = None

    def __enter__(self) -> NightlyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def show(connection: Connection, scope: str) -> Holder | str:
    """The holder of a profile's lock; '' when it is free, 'unreadable' for a damaged one."""
    with session(connection) as service:
        found = _find(service, lock_folder(scope))
    if found is None:
        return ""
    return found.holder if found.holder is not None else "unreadable"


def break_lock(connection: Connection, scope: str) -> bool:
    """Remove a profile's lock whoever holds it (``nightly --unlock --yes``); False if free."""
    name = lock_folder(scope)
    with session(connection) as service:
        found = _find(service, name)
        if found is None:
            return False
        _destroy(found.folder, name)
    return True
