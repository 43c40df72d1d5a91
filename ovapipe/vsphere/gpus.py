"""`invoke gpus`: the passthrough devices of a datacenter's hosts, with CAPV's decimal IDs.

Each host's ``config.pciPassthruInfo`` (capable / enabled / active) is joined with its
``hardware.pciDevice`` (IDs, names) on the PCI address; the compute resource's environment
browser (``QueryConfigTarget``) tells which devices Dynamic DirectPath I/O offers, which is what
CAPV's ``pciDevices`` use. All properties are read in bulk through ovapipe.vsphere.inventory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from ovapipe.capv import pci_device_entry
from ovapipe.errors import VSphereError
from ovapipe.hardware import GPU_MIN_VMX, esxi_supports, min_esxi_for, vmx_name
from ovapipe.pci import PciId, database, unsigned16
from ovapipe.vsphere import inventory
from ovapipe.vsphere.tasks import fault_message

HOST_PATHS: Final = (
    "name",
    "parent",
    "config.product.version",
    "config.pciPassthruInfo",
    "hardware.pciDevice",
    "runtime.connectionState",
)
_GENERIC_NAME_RE: Final = re.compile(r"^(?:vendor|device) [0-9a-f]{4}$", re.IGNORECASE)


@dataclass(frozen=True)
class PassthroughDevice:
    address: str  # PCI address on the host, e.g. 0000:3b:00.0
    vendor_hex: str
    device_hex: str
    vendorId: int  # CAPV spells the decimal IDs this way
    deviceId: int
    name: str
    name_source: str  # "vsphere", "pci.ids" or "none"
    class_id: str
    capable: bool
    enabled: bool
    active: bool
    dynamic_passthrough: bool | None  # None: QueryConfigTarget did not answer

    @property
    def pci_id(self) -> PciId:
        return PciId(self.vendorId, self.deviceId)


@dataclass
class HostGpus:
    name: str
    compute_resource: str
    esxi_version: str | None
    connection_state: str | None
    devices: list[PassthroughDevice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def supports_gpu_vmx(self) -> bool:
        return self.esxi_version is not None and esxi_supports(self.esxi_version, GPU_MIN_VMX)


@dataclass(frozen=True)
class GpuGroup:
    """Identical devices across hosts, for the summary line."""

    name: str
    pci_id: PciId
    hosts: int
    enabled: int
    active: int
    dynamic: int

    def render(self) -> str:
        return (
            f"{self.name} ({self.pci_id.hex} \u2192 vendorId {self.pci_id.vendor}, deviceId "
            f"{self.pci_id.device}): {self.hosts} host{'s' if self.hosts != 1 else ''}, "
            f"{self.enabled} enabled"
            + (f", {self.active} active" if self.active != self.enabled else "")
            + (f", {self.dynamic} offered to Dynamic DirectPath I/O" if self.dynamic else "")
        )


@dataclass
class GpuInventory:
    datacenter: str
    cluster: str | None
    hosts: list[HostGpus]

    @property
    def summary(self) -> list[GpuGroup]:
        groups: dict[PciId, list[PassthroughDevice]] = {}
        hosts_by_id: dict[PciId, set[str]] = {}
        for host in self.hosts:
            for device in host.devices:
                groups.setdefault(device.pci_id, []).append(device)
                hosts_by_id.setdefault(device.pci_id, set()).add(host.name)
        return [
            GpuGroup(
                name=short_name(devices[0].name) or pci_id.hex,
                pci_id=pci_id,
                hosts=len(hosts_by_id[pci_id]),
                enabled=sum(d.enabled for d in devices),
                active=sum(d.active for d in devices),
                dynamic=sum(bool(d.dynamic_passthrough) for d in devices),
            )
            for pci_id, devices in sorted(groups.items())
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "datacenter": self.datacenter,
            "cluster": self.cluster,
            "gpu_min_vmx": vmx_name(GPU_MIN_VMX),
            "hosts": [
                {
                    "name": host.name,
                    "compute_resource": host.compute_resource,
                    "esxi_version": host.esxi_version,
                    "connection_state": host.connection_state,
                    "supports_gpu_vmx": host.supports_gpu_vmx,
                    "notes": host.notes,
                    "devices": [asdict(device) for device in host.devices],
                }
                for host in self.hosts
            ],
            "summary": [
                {
                    "name": group.name,
                    "pci_id": group.pci_id.hex,
                    **pci_device_entry(group.pci_id),
                    "hosts": group.hosts,
                    "enabled": group.enabled,
                    "active": group.active,
                    "dynamic_passthrough": group.dynamic,
                    "text": group.render(),
                }
                for group in self.summary
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False)

    def render(self) -> str:
        scope = f"cluster {self.cluster}" if self.cluster else f"datacenter {self.datacenter}"
        lines = [f"Passthrough devices in {scope}:"]
        for host in self.hosts:
            esxi = f"ESXi {host.esxi_version}" if host.esxi_version else "ESXi version unknown"
            lines.append(f"{host.name} ({host.compute_resource}, {esxi})")
            lines.extend(f"  ! {note}" for note in host.notes)
            if not host.devices:
                lines.append("  no passthrough-capable devices")
            for d in host.devices:
                flags = ", ".join(
                    label for label, on in (
                        ("enabled", d.enabled), ("active", d.active),
                        ("dynamic", bool(d.dynamic_passthrough)),
                    ) if on
                ) or "not enabled"
                lines.append(
                    f"  {d.address}  {d.vendor_hex}:{d.device_hex}  vendorId {d.vendorId:<5} "
                    f"deviceId {d.deviceId:<5}  {d.name}  [{flags}]"
                )
        lines.append("")
        lines.append("Summary:")
        summary = self.summary
        lines.extend(f"  {group.render()}" for group in summary)
        if not summary:
            lines.append("  no passthrough-capable devices")
        flagged = [h.name for h in self.hosts if not h.supports_gpu_vmx]
        if flagged:
            lines.append(
                f"  {len(flagged)} host(s) cannot run {vmx_name(GPU_MIN_VMX)} (ESXi "
                f"{min_esxi_for(GPU_MIN_VMX)}+ needed for Dynamic DirectPath I/O): "
                + ", ".join(flagged)
            )
        return "\n".join(lines)


def short_name(name: str) -> str:
    """'TU104GL [Tesla T4]' -> 'Tesla T4' (the marketing name pci.ids keeps in brackets)."""
    match = re.search(r"\[([^\]]+)\]", name)
    return match.group(1).strip() if match else name


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
    passthru_info: Iterable[Any], pci_devices: Iterable[Any], dynamic: set[PciId] | None
) -> list[PassthroughDevice]:
    """Join pciPassthruInfo and pciDevice on the PCI address; passthrough-capable only."""
    by_address = {device.id: device for device in pci_devices}
    devices = []
    for info in passthru_info:
        if not info.passthruCapable:
            continue
        device = by_address.get(info.id)
        if device is None:
            continue
        pci_id = PciId(unsigned16(device.vendorId), unsigned16(device.deviceId))
        name, source = _device_name(device, pci_id)
        devices.append(PassthroughDevice(
            address=info.id,
            vendor_hex=f"{pci_id.vendor:04x}",
            device_hex=f"{pci_id.device:04x}",
            vendorId=pci_id.vendor,
            deviceId=pci_id.device,
            name=name,
            name_source=source,
            class_id=f"{unsigned16(device.classId):04x}",
            capable=bool(info.passthruCapable),
            enabled=bool(info.passthruEnabled),
            active=bool(info.passthruActive),
            dynamic_passthrough=None if dynamic is None else pci_id in dynamic,
        ))
    return sorted(devices, key=lambda d: d.address)


def _dynamic_models(environment_browser: Any, host: Any) -> set[PciId]:
    target = environment_browser.QueryConfigTarget(host=host)
    models = set()
    for info in getattr(target, "dynamicPassthrough", None) or []:
        models.add(PciId(unsigned16(info.vendorId), unsigned16(info.deviceId)))
    return models


def list_gpus(service: Any, datacenter: str, cluster: str | None = None) -> GpuInventory:
    from pyVmomi import vim, vmodl

    dc = inventory.datacenter(service, datacenter)
    computes = inventory.retrieve(
        service, vim.ComputeResource, ["name", "environmentBrowser"], root=dc.obj
    )
    root = dc.obj
    if cluster:
        clusters = [c for c in computes if isinstance(c.obj, vim.ClusterComputeResource)]
        root = inventory.by_name(clusters, "cluster", cluster, f"datacenter {datacenter}").obj
    compute_by_id = {c.obj._moId: c for c in computes}
    hosts = sorted(
        inventory.retrieve(service, vim.HostSystem, list(HOST_PATHS), root=root),
        key=lambda h: h.name,
    )
    result = GpuInventory(datacenter, cluster, [])
    for host in hosts:
        parent = host.get("parent")
        compute = compute_by_id.get(parent._moId) if parent is not None else None
        entry = HostGpus(
            name=host.name,
            compute_resource=compute.name if compute else "",
            esxi_version=host.get("config.product.version"),
            connection_state=host.get("runtime.connectionState"),
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
        entry.devices = host_devices(passthru, host.get("hardware.pciDevice") or [], dynamic)
        result.hosts.append(entry)
    return result
