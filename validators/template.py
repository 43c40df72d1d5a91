"""validate-template: is a VM or template in vCenter fit to be a GPU node image for CAPV?

Works on any VM or template (published by ovapipe or built by image-builder). Everything is
read in one bulk property retrieval per object type; nothing lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ovapipe.validators import gate_arguments

from ovapipe.findings import Report
from ovapipe.hardware import (
    FIRMWARE_EFI,
    GPU_FIRMWARE_REASON,
    GPU_MIN_VMX,
    GPU_MIN_VMX_REASON,
    parse_vmx,
    vmx_name,
)
from ovapipe.vsphere.hostcheck import HostProblem
from ovapipe.vsphere.inventory import Found
from ovapipe.vsphere.template import SNAPSHOT_NAME, snapshot_names

GENERIC_GUESTS = ("otherGuest", "otherGuest64", "other3xLinuxGuest", "otherLinuxGuest")


def check_template(
    vm: Found,
    path: str,
    host_problems: Sequence[HostProblem],
    *,
    min_vmx: int = GPU_MIN_VMX,
    firmware: str = FIRMWARE_EFI,
) -> Report:
    """The findings for one VM's properties (read with ovapipe.vsphere.template.VM_PROPERTIES)."""
    report = Report(path)
    version = vm.get("config.version")
    report.vmx = version
    report.firmware = vm.get("config.firmware")
    report.secure_boot = bool(vm.get("config.bootOptions.efiSecureBootEnabled", False))

    try:
        vmx = parse_vmx(version) if version else None
    except ValueError:
        vmx = None
    if vmx is None:
        report.error("hardware.version", f"config.version {version!r} is not a hardware version")
    elif vmx < min_vmx:
        reason = f" ({GPU_MIN_VMX_REASON})" if min_vmx >= GPU_MIN_VMX else ""
        report.error(
            "hardware.version",
            f"{version} is older than {vmx_name(min_vmx)}{reason}; rebuild or upgrade the VM "
            "hardware before marking it as a template",
        )

    if report.firmware != firmware:
        reason = f" ({GPU_FIRMWARE_REASON})" if firmware == FIRMWARE_EFI else ""
        report.error(
            "firmware",
            f"config.firmware is {report.firmware or 'unset'}, expected {firmware}{reason}",
        )

    if not vm.get("config.template", False):
        report.warning(
            "template.flag",
            "this is a VM, not a template: CAPV can clone it, but a VM can be powered on and "
            "changed; mark it as a template",
        )

    snapshots = snapshot_names(vm)
    if not snapshots:
        report.warning(
            "template.snapshot",
            f"no snapshot: CAPV linked clones (cloneMode: linkedClone) need one (ovapipe "
            f"takes '{SNAPSHOT_NAME}'); full clones still work",
        )

    guest = vm.get("config.guestId")
    if not guest or guest in GENERIC_GUESTS:
        report.warning(
            "guest.os",
            f"guest OS is {guest or 'unset'}: set the real one (e.g. ubuntu64Guest) so vSphere "
            "picks matching device defaults",
        )

    for problem in host_problems:
        report.error("hosts.compatible", problem.message)
    return report


def validate_template(
    service: Any,
    datacenter: str | None,
    name: str,
    *,
    min_vmx: str | int = GPU_MIN_VMX,
    firmware: str = FIRMWARE_EFI,
) -> Report:
    """Find the VM or template ``name`` (an inventory path as govc reads it) and check it.

    ConfigError when it does not exist or the path matches several.
    """
    from ovapipe.vsphere.resolve import VM, Inventory
    from ovapipe.vsphere.template import read_vm

    required_vmx = gate_arguments(min_vmx, firmware)
    inventory = Inventory.read(service)
    dc = inventory.datacenter(datacenter)
    found = inventory.resolve(VM, name, dc.node, source="--name")
    vm = read_vm(service, found.obj)
    return check_template(
        vm, found.path, _problems_of_its_hosts(service, vm),
        min_vmx=required_vmx, firmware=firmware,
    )


def _problems_of_its_hosts(service: Any, vm: Found) -> list[HostProblem]:
    """Why hosts of the compute resource the VM is registered on cannot run its vmx version.

    Nothing to say when the version is unreadable (check_template reports that) or the VM's
    host or compute resource is unknown.
    """
    from pyVmomi import vim

    from ovapipe.vsphere.hostcheck import HOST_PROPERTIES, host_problems
    from ovapipe.vsphere.inventory import properties, retrieve

    try:
        vmx = parse_vmx(vm.get("config.version") or "")
    except ValueError:
        return []
    host = vm.get("runtime.host")
    if host is None:
        return []
    compute_ref = properties(service, host, ["parent"]).get("parent")
    if not isinstance(compute_ref, vim.ComputeResource):
        return []
    compute = properties(service, compute_ref, ["name", "environmentBrowser"])
    hosts = retrieve(service, vim.HostSystem, HOST_PROPERTIES, compute_ref)
    return host_problems(str(compute.get("name", compute_ref._moId)),
                         compute.get("environmentBrowser"), hosts, vmx)
