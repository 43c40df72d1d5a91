"""The build VM in vCenter: find it, export its disks through an ExportVm lease, delete it.

Properties are read in bulk (ovapipe.vsphere.inventory), never lazily; lease handling and the
streaming download are ovapipe.vsphere.lease's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ovapipe.config import Connection
from ovapipe.errors import VSphereError
from ovapipe.files import atomic_writer
from ovapipe.progress import Progress
from ovapipe.vsphere.inventory import Found, by_name, datacenter, retrieve
from ovapipe.vsphere.lease import hold_lease
from ovapipe.vsphere.tasks import fault_message, wait_for_task
from ovapipe.vsphere.template import destroy, vms_named


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Exported:
    disks: list[ExportedFile]
    nvram: ExportedFile | None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.disks) + (self.nvram.size if self.nvram else 0)


def find_vm(service: Any, name: str, datacenter_name: str | None = None) -> Found:
    from pyVmomi import vim

    root = datacenter(service, datacenter_name).obj if datacenter_name else None
    vms = retrieve(service, vim.VirtualMachine, ["name", "runtime.powerState"], root)
    return by_name(vms, "VM", name, f"datacenter {datacenter_name}" if datacenter_name else "")


def export_vm(
    service: Any,
    vm: Found,
    connection: Connection,
    out_dir: Path,
    *,
    stream: TextIO | None = None,
) -> Exported:
    """Download every disk (and an EFI nvram file, if offered) of a powered-off VM."""
    state = vm.get("runtime.powerState")
    if state != "poweredOff":
        raise VSphereError(f"VM {vm.name} is {state}; it must be powered off to be exported")
    try:
        lease = vm.obj.ExportVm()
    except Exception as exc:
        raise VSphereError(f"ExportVm of {vm.name} refused: {fault_message(exc)}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    disks: list[ExportedFile] = []
    nvram: ExportedFile | None = None
    with Progress(f"export {vm.name}", None, stream or sys.stderr) as progress, \
            hold_lease(service, lease, connection, progress) as held:
        wanted = [t for t in held.targets if t.disk or t.name.endswith(".nvram")]
        sizes = [t.file_size for t in wanted]
        if sizes and all(sizes):
            progress.total = sum(s for s in sizes if s)
        for target in wanted:
            if target.disk:
                path = out_dir / f"{vm.name}-disk{len(disks) + 1}.vmdk"
            else:
                path = out_dir / f"{vm.name}.nvram"
            with atomic_writer(path) as handle:
                got = held.download(target, handle)
            exported = ExportedFile(path, got.size, got.sha256)
            if target.disk:
                disks.append(exported)
            else:
                nvram = exported
        if not disks:
            raise VSphereError(f"ExportVm of {vm.name} offered no disk")
    return Exported(disks, nvram)


def destroy_vm(service: Any, name: str, datacenter_name: str | None = None) -> bool:
    """Power off and delete every VM called ``name``; False when there was none."""
    from ovapipe.steps import name_lookup_allowed

    root = datacenter(service, datacenter_name).obj if datacenter_name else None
    with name_lookup_allowed("Packer creates the build VM; ovapipe never gets its reference"):
        vms = vms_named(service, name, root)
    for vm in vms:
        if vm.get("runtime.powerState") == "poweredOn":
            wait_for_task(vm.obj.PowerOffVM_Task(), f"power off VM {name}")
        destroy(vm.obj, name)
    return bool(vms)
