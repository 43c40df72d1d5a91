"""Acting on a VM by identity: its reference, and the run marker re-read just before acting.

Every undo and every recovery action goes through here. Nothing is looked up by name; an
object whose marker is not the expected one (another run's, none, or a complete template)
is left alone and the reason returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ovapipe.errors import VSphereError
from ovapipe.vsphere.inventory import Found
from ovapipe.vsphere.ownership import RunMarker, State


def reread(service: Any, vm: Any) -> Found | None:
    """The VM's current properties, or None when it no longer exists."""
    from pyVmomi import vmodl

    from ovapipe.vsphere.template import read_vm

    try:
        found = read_vm(service, vm)
    except vmodl.fault.ManagedObjectNotFound:
        return None
    return found if found.props else None


def owned_by(service: Any, vm: Any, run_id: str, state: State) -> Found | None:
    """The VM if it still carries run ``run_id``'s marker in ``state``; otherwise None."""
    found = reread(service, vm)
    if found is None:
        return None
    marker = RunMarker.parse(found.get("config.annotation"))
    if marker is None or marker.id != run_id or marker.state != state:
        return None
    return found


def delete_owned(service: Any, vm: Any, run_id: str, datacenter: Any,
                 state: State = "in-progress") -> str:
    """Delete ``vm`` (and its files) only if it is still run ``run_id``'s; says what happened."""
    from ovapipe.vsphere.template import destroy

    found = owned_by(service, vm, run_id, state)
    if found is None:
        return f"{vm._moId} is gone or no longer this run's {state} VM: left alone"
    destroy(vm, found.name)
    _delete_folder(service, found, datacenter)
    return f"deleted {found.name} ({vm._moId})"


def _delete_folder(service: Any, found: Found, datacenter: Any) -> None:
    """The VM's datastore folder, when deleting the VM left it behind (an interrupted import)."""
    from pyVmomi import vim

    from ovapipe.vsphere.tasks import wait_for_task

    path = found.get("config.files.vmPathName") or ""
    if "/" not in path:
        return
    folder = path.rsplit("/", 1)[0]
    content = service.RetrieveContent()
    # Usually already gone with the VM (FileNotFound then). Debian's simulator answers this
    # task with an entity pyVmomi refuses to decode (a FileManager): the deletion is done.
    with contextlib.suppress(VSphereError, vim.fault.FileNotFound, TypeError):
        wait_for_task(content.fileManager.DeleteDatastoreFile_Task(
            name=folder, datacenter=datacenter), f"deleting {folder}")


def when_owned(service: Any, vm: Any, run_id: str, state: State,
               action: Callable[[Found], None]) -> Callable[[], None]:
    """An undo that runs ``action`` only while ``vm`` still carries the expected marker."""

    def undo() -> None:
        found = owned_by(service, vm, run_id, state)
        if found is not None:
            action(found)

    return undo
