"""Checks that the parts of a parsed OVF descriptor fit together."""

from __future__ import annotations

from collections import Counter

from ovapipe.hardware import min_esxi_for, vmx_name
from ovapipe.ova.descriptor_records import (
    CONTROLLER_SUBTYPES,
    CONTROLLER_TYPES,
    DISK_URI,
    FILE_URI,
    RESOURCE_DISK,
    RESOURCE_ETHERNET,
    Descriptor,
)


def _repeated(counts: Counter[str]) -> list[str]:
    return sorted(value for value, count in counts.items() if count > 1)


def check_consistency(descriptor: Descriptor) -> list[str]:
    """References, DiskSection and hardware Items that do not fit together."""
    problems: list[str] = []
    file_ids = Counter(f.id for f in descriptor.files)
    for duplicate in _repeated(file_ids):
        problems.append(f"References: File id '{duplicate}' appears more than once")
    for duplicate in _repeated(Counter(f.href for f in descriptor.files)):
        problems.append(f"References: File href '{duplicate}' appears more than once")
    disk_ids = Counter(d.disk_id for d in descriptor.disks)
    for duplicate in _repeated(disk_ids):
        problems.append(f"DiskSection: diskId '{duplicate}' appears more than once")
    for disk in descriptor.disks:
        label = f"DiskSection/Disk '{disk.disk_id}'"
        if not disk.disk_id:
            problems.append("DiskSection/Disk without ovf:diskId")
        if disk.file_ref and disk.file_ref not in file_ids:
            problems.append(f"{label}: fileRef '{disk.file_ref}' is not in References")
        if disk.capacity_bytes is None:
            problems.append(f"{label}: no ovf:capacity")
        elif disk.capacity_bytes <= 0:
            problems.append(f"{label}: ovf:capacity {disk.capacity_bytes} bytes is not a disk")
    if descriptor.virtual_systems > 1:
        problems.append(
            f"{descriptor.virtual_systems} <VirtualSystem> elements: a node image is one VM"
        )

    instance_ids = Counter(item.instance_id for item in descriptor.items)
    for duplicate in _repeated(instance_ids):
        problems.append(f"VirtualHardwareSection: Item InstanceID '{duplicate}' is not unique")
    networks = set(descriptor.networks)
    controllers = {
        item.instance_id for item in descriptor.items if item.resource_type in CONTROLLER_TYPES
    }
    attached: set[str] = set()
    for item in descriptor.items:
        label = f"hardware Item {item.instance_id or '?'} ({item.element_name or 'unnamed'})"
        if item.resource_type is None:
            problems.append(f"{label}: no ResourceType")
        known = CONTROLLER_SUBTYPES.get(item.resource_type or 0)
        if known is not None and item.required and (
            (item.subtype or "").strip().lower() not in known
        ):
            problems.append(
                f"{label}: ResourceSubType '{item.subtype or ''}' of ResourceType "
                f"{item.resource_type} is no controller vCenter imports (known: "
                f"{', '.join(sorted(k for k in known if k))})"
            )
        for resource in item.host_resources:
            if resource.startswith(DISK_URI):
                disk_id = resource.removeprefix(DISK_URI)
                attached.add(disk_id)
                if disk_id not in disk_ids:
                    problems.append(f"{label}: HostResource '{resource}' is not in DiskSection")
            elif resource.startswith(FILE_URI):
                file_id = resource.removeprefix(FILE_URI)
                if file_id not in file_ids:
                    problems.append(f"{label}: HostResource '{resource}' is not in References")
        if item.resource_type == RESOURCE_DISK and item.parent not in controllers:
            problems.append(f"{label}: Parent '{item.parent}' is not a disk controller Item")
        if item.resource_type == RESOURCE_ETHERNET and networks:
            for connection in item.connections:
                if connection not in networks:
                    problems.append(
                        f"{label}: Connection '{connection}' is not in NetworkSection"
                    )
    for disk_id in disk_ids:
        if disk_id and disk_id not in attached:
            problems.append(f"DiskSection/Disk '{disk_id}' is not attached by any hardware Item")
    if descriptor.nvram_file_id and descriptor.nvram_file_id not in file_ids:
        problems.append(
            f"ExtraConfig nvram: file '{descriptor.nvram_file_id}' is not in References"
        )
    return problems


def lowest_type_reason(descriptor: Descriptor) -> str:
    """Why several VirtualSystemTypes are judged by the lowest: what an older host creates."""
    types = descriptor.vmx_types
    lowest, next_type = types[0], types[1]
    since, until = min_esxi_for(lowest), min_esxi_for(next_type)
    hosts = (f"a host from ESXi {since} up to (not including) ESXi {until}" if since and until
             else "an older host")
    return (
        f"VirtualSystemType lists {' '.join(vmx_name(t) for t in types)}; a host creates the "
        f"newest listed type it can, so {hosts} creates {vmx_name(lowest)}"
    )
