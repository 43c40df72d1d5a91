"""`invoke gpus`: the passthrough devices of a datacenter's hosts, with CAPV's decimal IDs.

Each host's ``config.pciPassthruInfo`` (capable / enabled / active) is joined with its
``hardware.pciDevice`` (IDs, names) on the PCI address; the compute resource's environment
browser (``QueryConfigTarget``) tells which devices Dynamic DirectPath I/O offers, which is what
CAPV's ``pciDevices`` use. All properties are read in bulk through ovapipe.vsphere.inventory.
The records and their text/JSON forms live in ovapipe.vsphere.gpu_records.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ovapipe.errors import ConfigError, VSphereError
from ovapipe.hardware import GPU_MIN_VMX, min_esxi_for, vmx_name
from ovapipe.pci import PciId, database, unsigned16
from ovapipe.vsphere import inventory
from ovapipe.vsphere.gpu_records import (
    GpuGroup,
    GpuInventory,
    HostGpus,
    PassthroughDevice,
    short_name,
)
from ovapipe.vsphere.tasks import fault_message

__all__ = [
    "GpuGroup", "GpuInventory", "HostGpus", "PassthroughDevice", "find_hosts", "host_devices",
    "list_gpus", "read_host", "short_name",
]

HOST_PATHS: Final = (
    "name",
    "parent",
    "config.product.version",
    "config.pciPassthruInfo",
    "hardware.pciDevice",
    "runtime.connectionState",
    "runtime.inMaintenanceMode",
    "configManager.pciPassthruSystem",
)
DISPLAY_CLASS: Final = 0x03  # PCI base class of VGA, XGA and 3D controllers: the GPUs
_GENERIC_NAME_RE: Final = re.compile(r"^(?:vendor|device) [0-9a-f]{4}$", re.IGNORECASE)


def _device_name(device: Any, pci_id: PciId) -> tuple[str, str]:
    vendor = str(getattr(device, "vendorName", "") or "").strip()
    model = str(getattr(device, "deviceName", "") or "").strip()
    if model and not _GENERIC_NAME_RE.match(model):
        return (f"{vendor} {model}".strip() if vendor and vendor not in model else model), \
            "vsphere"
    known = database().name(pci_id)
    if known is not None:
        return known.label, "pci.ids"
    return "", "none"


def host_devices(
    passthru_info: Iterable[Any], pci_devices: Iterable[Any], dynamic: set[PciId] | None,
    *, capable_only: bool = True,
) -> list[PassthroughDevice]:
    """Join pciPassthruInfo and pciDevice on the PCI address (passthrough-capable only)."""
    by_address = {device.id: device for device in pci_devices}
    devices = []
    for info in passthru_info:
        if capable_only and not info.passthruCapable:
            continue
        device = by_address.get(info.id)
        if device is None:
            continue
        pci_id = PciId(unsigned16(device.vendorId), unsigned16(device.deviceId))
        name, source = _device_name(device, pci_id)
        class_id = unsigned16(device.classId)
        devices.append(PassthroughDevice(
            address=info.id,
            vendor_hex=f"{pci_id.vendor:04x}",
            device_hex=f"{pci_id.device:04x}",
            vendorId=pci_id.vendor,
            deviceId=pci_id.device,
            name=name,
            name_source=source,
            class_id=f"{class_id:04x}",
            is_gpu=class_id >> 8 == DISPLAY_CLASS,
            capable=bool(info.passthruCapable),
            enabled=bool(info.passthruEnabled),
            active=bool(info.passthruActive),
            needs_reboot=bool(info.passthruEnabled) != bool(info.passthruActive),
            dynamic_passthrough=None if dynamic is None else (
                bool(info.passthruCapable) and pci_id in dynamic),
        ))
    return sorted(devices, key=lambda d: d.address)


def _dynamic_models(environment_browser: Any, host: Any) -> set[PciId]:
    target = environment_browser.QueryConfigTarget(host=host)
    models = set()
    for info in getattr(target, "dynamicPassthrough", None) or []:
        models.add(PciId(unsigned16(info.vendorId), unsigned16(info.deviceId)))
    return models


@dataclass(frozen=True)
class HostScope:
    """The hosts a command acts on, with the compute resources they belong to."""

    hosts: list[inventory.Found]  # sorted by name, with HOST_PATHS
    computes: dict[str, inventory.Found]  # by managed object id


def find_hosts(
    service: Any, datacenter: str, cluster: str | None = None, host_glob: str | None = None
) -> HostScope:
    """The datacenter's (or cluster's) hosts whose name matches ``host_glob``."""
    from pyVmomi import vim

    from ovapipe.vsphere.resolve import CLUSTER, find_one  # govc-style paths (issue 13)

    dc = inventory.datacenter(service, datacenter)
    computes = inventory.retrieve(
        service, vim.ComputeResource, ["name", "environmentBrowser"], root=dc.obj
    )
    root = dc.obj
    if cluster:
        root = find_one(service, CLUSTER, cluster, dc.obj, source="--cluster").obj
    hosts = sorted(
        inventory.retrieve(service, vim.HostSystem, list(HOST_PATHS), root=root),
        key=lambda h: h.name,
    )
    if host_glob:
        matching = [h for h in hosts if fnmatch.fnmatchcase(h.name, host_glob)]
        if not matching:
            where = f"cluster {cluster}" if cluster else f"datacenter {datacenter}"
            raise ConfigError(
                f"--host {host_glob!r} matches no host in {where}; hosts: "
                + (", ".join(h.name for h in hosts) or "none")
            )
        hosts = matching
    return HostScope(hosts, {c.obj._moId: c for c in computes})


def read_host(host: inventory.Found, compute: inventory.Found | None) -> HostGpus:
    """One host's record; devices from its bulk-read properties (QueryConfigTarget aside)."""
    from pyVmomi import vim, vmodl

    entry = HostGpus(
        name=host.name,
        compute_resource=compute.name if compute else "",
        esxi_version=host.get("config.product.version"),
        connection_state=host.get("runtime.connectionState"),
        in_maintenance=host.get("runtime.inMaintenanceMode"),
    )
    if entry.esxi_version is None:
        entry.notes.append("ESXi version unknown (host disconnected?)")
    elif not entry.supports_gpu_vmx:
        entry.notes.append(
            f"ESXi {entry.esxi_version} cannot run {vmx_name(GPU_MIN_VMX)}: Dynamic DirectPath "
            f"I/O (CAPV pciDevices) needs ESXi {min_esxi_for(GPU_MIN_VMX)} or newer"
        )
    dynamic: set[PciId] | None = None
    browser = compute.get("environmentBrowser") if compute else None
    passthru = host.get("config.pciPassthruInfo") or []
    if browser is not None and any(p.passthruCapable for p in passthru):
        try:
            dynamic = _dynamic_models(browser, host.obj)
        except (vmodl.MethodFault, vim.fault.VimFault) as exc:
            entry.notes.append(
                f"QueryConfigTarget failed ({fault_message(exc)}): Dynamic DirectPath I/O "
                "availability unknown"
            )
        except OSError as exc:
            raise VSphereError(f"QueryConfigTarget on {host.name}: {exc}") from None
    # Every passthrough-capable device, and the GPUs that are not (to say so).
    entry.devices = [
        d for d in host_devices(passthru, host.get("hardware.pciDevice") or [], dynamic,
                                capable_only=False)
        if d.capable or d.is_gpu
    ]
    return entry


def list_gpus(
    service: Any, datacenter: str, cluster: str | None = None, host_glob: str | None = None
) -> GpuInventory:
    scope = find_hosts(service, datacenter, cluster, host_glob)
    result = GpuInventory(datacenter, cluster, [])
    for host in scope.hosts:
        parent = host.get("parent")
        result.hosts.append(read_host(host, scope.computes.get(parent._moId) if parent else None))
    return result
