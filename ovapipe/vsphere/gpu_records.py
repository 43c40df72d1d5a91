"""The records `invoke gpus` prints: passthrough devices per host, grouped, as text or JSON.

A device is *enabled* once passthrough is switched on and *active* once the host booted with
it; enabled but not active (or the reverse, after a disable) means the host needs a reboot.
ovapipe.vsphere.gpus reads them from vSphere.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ovapipe.capv import pci_device_entry
from ovapipe.hardware import GPU_MIN_VMX, esxi_supports, min_esxi_for, vmx_name
from ovapipe.pci import PciId


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
    is_gpu: bool  # PCI display controller; only these are switched by `gpus --enable`
    capable: bool
    enabled: bool
    active: bool
    needs_reboot: bool  # enabled != active: the change takes effect when the host boots
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
    in_maintenance: bool | None = None
    devices: list[PassthroughDevice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def supports_gpu_vmx(self) -> bool:
        return self.esxi_version is not None and esxi_supports(self.esxi_version, GPU_MIN_VMX)

    @property
    def needs_reboot(self) -> bool:
        return any(device.needs_reboot for device in self.devices)

    @property
    def capable(self) -> list[PassthroughDevice]:
        return [device for device in self.devices if device.capable]


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
            for device in host.capable:
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
                    "in_maintenance_mode": host.in_maintenance,
                    "needs_reboot": host.needs_reboot,
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
            state = ", maintenance mode" if host.in_maintenance else ""
            lines.append(f"{host.name} ({host.compute_resource}, {esxi}{state})")
            lines.extend(f"  ! {note}" for note in host.notes)
            if not host.capable:
                lines.append("  no passthrough-capable devices")
            for d in host.devices:
                flags = ", ".join(
                    label for label, on in (
                        ("enabled", d.enabled), ("active", d.active),
                        ("needs reboot", d.needs_reboot),
                        ("dynamic", bool(d.dynamic_passthrough)),
                    ) if on
                ) or ("not enabled" if d.capable else "GPU, not passthrough-capable")
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
        rebooting = [h.name for h in self.hosts if h.needs_reboot]
        if rebooting:
            lines.append(
                f"  {len(rebooting)} host(s) need a reboot before passthrough changes take "
                "effect: " + ", ".join(rebooting)
            )
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
