"""Which VMs depend on a template's files: linked clones, or any VM whose disks chain to it.

Such a template is never deleted (by --replace or retention): its disks are the base of
another VM's disks. Read in one bulk call over every VM of the vCenter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ovapipe.vsphere.inventory import Found, retrieve


def _chain(device: Any) -> Iterator[str]:
    backing = getattr(device, "backing", None)
    while backing is not None:
        name = getattr(backing, "fileName", None)
        if name:
            yield str(name)
        backing = getattr(backing, "parent", None)


def disk_files(vm: Found) -> set[str]:
    from pyVmomi import vim

    files: set[str] = set()
    for device in vm.get("config.hardware.device") or []:
        if isinstance(device, vim.vm.device.VirtualDisk):
            files.update(_chain(device))
    return files


def _folder_of(path: str | None) -> str | None:
    """'[ds] dir/x.vmx' -> '[ds] dir/'; None for a VM stored at the datastore's root."""
    if not path or "/" not in path:
        return None
    return path.rsplit("/", 1)[0] + "/"


def dependents(service: Any, template: Any) -> list[str]:
    """Names of the VMs (other than ``template``) whose disk chains use the template's files."""
    from pyVmomi import vim

    vms = retrieve(service, vim.VirtualMachine,
                   ["name", "config.hardware.device", "config.files.vmPathName"])
    mine = next((vm for vm in vms if vm.obj._moId == template._moId), None)
    if mine is None:
        return []
    own_files = disk_files(mine)
    folder = _folder_of(mine.get("config.files.vmPathName"))
    found: list[str] = []
    for vm in vms:
        if vm.obj._moId == template._moId:
            continue
        theirs = disk_files(vm)
        if theirs & own_files or (folder and any(f.startswith(folder) for f in theirs)):
            found.append(vm.name)
    return sorted(found)
