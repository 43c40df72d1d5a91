"""Writing ovapipe's own OVF 1.0 descriptors from a DescriptorSpec."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ovapipe.ova.descriptor_records import (
    CIM_NS,
    DISK_URI,
    FILE_URI,
    KEY_FIRMWARE,
    KEY_NVRAM,
    KEY_SECURE_BOOT,
    OVF1_NS,
    RASD_NS,
    RESOURCE_CPU,
    RESOURCE_DISK,
    RESOURCE_ETHERNET,
    RESOURCE_MEMORY,
    RESOURCE_SCSI,
    STREAM_OPTIMIZED_FORMAT,
    VMW_NS,
    VSSD_NS,
    XSI_NS,
)


@dataclass(frozen=True)
class DiskEntry:
    href: str
    size: int
    capacity_bytes: int


@dataclass(frozen=True)
class FileEntry:
    href: str
    size: int


@dataclass(frozen=True)
class DescriptorSpec:
    """Everything ovapipe writes into a descriptor."""

    name: str
    vmx: int
    firmware: str
    secure_boot: bool
    os_type: str
    os_cim_id: int
    cpus: int
    memory_mb: int
    network: str
    disks: tuple[DiskEntry, ...]
    nvram: FileEntry | None = None
    product: str = ""
    vendor: str = ""
    version: str = ""
    full_version: str = ""
    properties: tuple[tuple[str, str], ...] = ()


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _rasd_item(parent: ET.Element, fields: dict[str, str]) -> None:
    item = ET.SubElement(parent, _q(OVF1_NS, "Item"))
    # CIM schemas list the rasd elements in alphabetical order.
    for name in sorted(fields):
        ET.SubElement(item, _q(RASD_NS, name)).text = fields[name]


def _section(parent: ET.Element, name: str, info: str) -> ET.Element:
    section = ET.SubElement(parent, _q(OVF1_NS, name))
    ET.SubElement(section, _q(OVF1_NS, "Info")).text = info
    return section


def write_descriptor(spec: DescriptorSpec) -> bytes:
    """An OVF 1.0 descriptor as vCenter imports it, without a BootOrderSection."""
    for prefix, namespace in (
        ("ovf", OVF1_NS), ("rasd", RASD_NS), ("vssd", VSSD_NS), ("vmw", VMW_NS),
        ("cim", CIM_NS), ("xsi", XSI_NS),
    ):
        ET.register_namespace(prefix, namespace)
    ovf = lambda name: _q(OVF1_NS, name)  # noqa: E731
    vmw = lambda name: _q(VMW_NS, name)  # noqa: E731
    root = ET.Element(ovf("Envelope"))

    references = ET.SubElement(root, ovf("References"))
    disk_section = _section(root, "DiskSection", "Virtual disk information")
    for index, disk in enumerate(spec.disks, start=1):
        ET.SubElement(references, ovf("File"), {
            ovf("href"): disk.href, ovf("id"): f"file{index}", ovf("size"): str(disk.size),
        })
        ET.SubElement(disk_section, ovf("Disk"), {
            ovf("capacity"): str(disk.capacity_bytes),
            ovf("capacityAllocationUnits"): "byte",
            ovf("diskId"): f"vmdisk{index}",
            ovf("fileRef"): f"file{index}",
            ovf("format"): STREAM_OPTIMIZED_FORMAT,
        })
    nvram_id = f"file{len(spec.disks) + 1}"
    if spec.nvram is not None:
        ET.SubElement(references, ovf("File"), {
            ovf("href"): spec.nvram.href, ovf("id"): nvram_id, ovf("size"): str(spec.nvram.size),
        })
    networks = _section(root, "NetworkSection", "The list of logical networks")
    network = ET.SubElement(networks, ovf("Network"), {ovf("name"): spec.network})
    ET.SubElement(network, ovf("Description")).text = f"The {spec.network} network"

    system = ET.SubElement(root, ovf("VirtualSystem"), {ovf("id"): spec.name})
    ET.SubElement(system, ovf("Info")).text = "A virtual machine"
    ET.SubElement(system, ovf("Name")).text = spec.name
    os_section = ET.SubElement(system, ovf("OperatingSystemSection"), {
        ovf("id"): str(spec.os_cim_id), vmw("osType"): spec.os_type,
    })
    ET.SubElement(os_section, ovf("Info")).text = "The kind of installed guest operating system"

    hardware = _section(system, "VirtualHardwareSection", "Virtual hardware requirements")
    system_settings = ET.SubElement(hardware, ovf("System"))
    for name, value in (
        ("ElementName", "Virtual Hardware Family"), ("InstanceID", "0"),
        ("VirtualSystemIdentifier", spec.name), ("VirtualSystemType", f"vmx-{spec.vmx}"),
    ):
        ET.SubElement(system_settings, _q(VSSD_NS, name)).text = value
    _rasd_item(hardware, {
        "AllocationUnits": "hertz * 10^6", "Description": "Number of Virtual CPUs",
        "ElementName": f"{spec.cpus} virtual CPU(s)", "InstanceID": "1",
        "ResourceType": str(RESOURCE_CPU),
        "VirtualQuantity": str(spec.cpus),
    })
    _rasd_item(hardware, {
        "AllocationUnits": "byte * 2^20", "Description": "Memory Size",
        "ElementName": f"{spec.memory_mb}MB of memory", "InstanceID": "2",
        "ResourceType": str(RESOURCE_MEMORY), "VirtualQuantity": str(spec.memory_mb),
    })
    _rasd_item(hardware, {
        "Address": "0", "Description": "SCSI Controller", "ElementName": "SCSI Controller 0",
        "InstanceID": "3", "ResourceSubType": "VirtualSCSI",
        "ResourceType": str(RESOURCE_SCSI),
    })
    instance = 4
    for index in range(1, len(spec.disks) + 1):
        _rasd_item(hardware, {
            "AddressOnParent": str(index - 1), "ElementName": f"Hard Disk {index}",
            "HostResource": f"{DISK_URI}vmdisk{index}", "InstanceID": str(instance),
            "Parent": "3", "ResourceType": str(RESOURCE_DISK),
        })
        instance += 1
    _rasd_item(hardware, {
        "AddressOnParent": "0", "AutomaticAllocation": "true", "Connection": spec.network,
        "Description": f'VmxNet3 ethernet adapter on "{spec.network}"',
        "ElementName": "Network adapter 1", "InstanceID": str(instance),
        "ResourceSubType": "VmxNet3", "ResourceType": str(RESOURCE_ETHERNET),
    })
    required = {ovf("required"): "false"}
    ET.SubElement(hardware, vmw("Config"), {
        **required, vmw("key"): KEY_FIRMWARE, vmw("value"): spec.firmware,
    })
    ET.SubElement(hardware, vmw("Config"), {
        **required, vmw("key"): KEY_SECURE_BOOT,
        vmw("value"): "true" if spec.secure_boot else "false",
    })
    if spec.nvram is not None:
        ET.SubElement(hardware, vmw("ExtraConfig"), {
            **required, vmw("key"): KEY_NVRAM, vmw("value"): f"{FILE_URI}{nvram_id}",
        })

    product = _section(system, "ProductSection", "Information about the installed software")
    for name, value in (
        ("Product", spec.product), ("Vendor", spec.vendor), ("Version", spec.version),
        ("FullVersion", spec.full_version),
    ):
        ET.SubElement(product, ovf(name)).text = value
    for key, value in spec.properties:
        ET.SubElement(product, ovf("Property"), {
            ovf("key"): key, ovf("type"): "string", ovf("userConfigurable"): "false",
            ovf("value"): value,
        })
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
