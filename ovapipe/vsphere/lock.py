"""A lock in the vCenter itself, so nightly runs on different machines cannot collide.

The lock is a folder under the root folder: creating it is atomic (a second creation answers
DuplicateName). The holder is recorded in a custom attribute on that folder, so a crashed run's
lock survives and names its holder. A lock is stale when its heartbeat is older than the TTL,
or when its holder ran on this machine and that process is gone; a stale lock is taken over.
Every operation logs in afresh: a nightly build outlasts vCenter's idle-session timeout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any

from ovapipe.config import Connection
from ovapipe.errors import CheckFailed, OvapipeError, VSphereError
from ovapipe.vsphere.connect import session
from ovapipe.vsphere.inventory import properties, retrieve
from ovapipe.vsphere.tasks import wait_for_task

LOCK_FOLDER = "ovapipe-nightly-lock"
HOLDER_FIELD = "ovapipe.lock.holder"
DEFAULT_TTL = dt.timedelta(hours=6)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Holder:
    who: str
    host: str
    pid: int
    started: str
    heartbeat: str
    run_id: str

    @classmethod
    def me(cls, run_id: str) -> Holder:
        stamp = _now().isoformat(timespec="seconds")
        return cls(f"{getpass.getuser()}@{socket.gethostname()}", socket.gethostname(),
                   os.getpid(), stamp, stamp, run_id)

    def describe(self) -> str:
        return (f"{self.who} (pid {self.pid}, run {self.run_id}, started {self.started}, "
                f"last heartbeat {self.heartbeat})")

    def is_stale(self, ttl: dt.timedelta) -> bool:
        if _now() - dt.datetime.fromisoformat(self.heartbeat) > ttl:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False


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


def _lock_folder(service: Any) -> tuple[Any, Holder | None] | None:
    """The lock folder and its recorded holder, or None when nobody holds the lock."""
    from pyVmomi import vim

    key = _field_key(service)
    root = service.RetrieveContent().rootFolder
    for found in retrieve(service, vim.Folder, ["name", "parent", "customValue"], root):
        if found.name == LOCK_FOLDER and found.get("parent") == root:
            # The last value for the key: vCenter keeps one, Debian's simulator appends.
            values = [v.value for v in found.get("customValue", []) if v.key == key]
            value = values[-1] if values else ""
            try:
                return found.obj, Holder(**json.loads(value))
            except (ValueError, TypeError):
                return found.obj, None
    return None


def _record(service: Any, folder: Any, holder: Holder) -> None:
    service.RetrieveContent().customFieldsManager.SetField(
        entity=folder, key=_field_key(service), value=json.dumps(asdict(holder)))


class NightlyLock:
    def __init__(self, connection: Connection, run_id: str,
                 ttl: dt.timedelta = DEFAULT_TTL) -> None:
        self.connection = connection
        self.holder = Holder.me(run_id)
        self.ttl = ttl
        self.held = False

    def acquire(self) -> None:
        from pyVmomi import vim, vmodl

        with session(self.connection) as service:
            for _attempt in range(3):
                try:
                    folder = service.RetrieveContent().rootFolder.CreateFolder(LOCK_FOLDER)
                except vim.fault.DuplicateName:
                    existing = _lock_folder(service)
                    if existing is None:
                        continue
                    folder, holder = existing
                    self._refuse_unless_stale(holder)
                    print(f"warning: taking over the stale nightly lock of {holder}",
                          file=sys.stderr)
                    with contextlib.suppress(vim.fault.NotFound,
                                             vmodl.fault.ManagedObjectNotFound):
                        wait_for_task(folder.Destroy_Task(), f"remove stale lock {LOCK_FOLDER}")
                    continue
                _record(service, folder, self.holder)
                self.held = True
                return
        raise VSphereError(f"could not take the nightly lock folder '{LOCK_FOLDER}'")

    def _refuse_unless_stale(self, holder: Holder | None) -> None:
        if holder is None:
            raise CheckFailed(
                f"another nightly run holds the vCenter lock (folder '{LOCK_FOLDER}', holder "
                "not recorded yet); if no nightly run is active, delete that folder"
            )
        if not holder.is_stale(self.ttl):
            raise CheckFailed(
                f"another nightly run holds the vCenter lock: {holder.describe()}; it is "
                f"released when that run ends, or taken over once stale ({self.ttl} without "
                "a heartbeat, or its process is gone)"
            )

    def heartbeat(self) -> None:
        if not self.held:
            return
        self.holder = replace(self.holder, heartbeat=_now().isoformat(timespec="seconds"))
        with session(self.connection) as service:
            existing = _lock_folder(service)
            if existing is None:
                raise CheckFailed(f"the nightly lock folder '{LOCK_FOLDER}' was removed")
            _record(service, existing[0], self.holder)

    def release(self) -> None:
        """Remove the lock if it is still ours; a failure only warns (it goes stale)."""
        if not self.held:
            return
        self.held = False
        try:
            with session(self.connection) as service:
                existing = _lock_folder(service)
                if existing and existing[1] == self.holder:
                    wait_for_task(existing[0].Destroy_Task(), f"release lock {LOCK_FOLDER}")
        except OvapipeError as exc:
            print(f"warning: could not release the nightly lock: {exc}; the next run takes it "
                  "over once this process is gone", file=sys.stderr)

    def __enter__(self) -> NightlyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
