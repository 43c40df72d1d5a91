"""OVF descriptors: a safe, tolerant reader (OVF 1.x/2.x, any prefix) and ovapipe's writer.

Reading goes through defusedxml with DTDs forbidden: an entity bomb or an external entity
stops the parse at its declaration. Elements and attributes are matched by local name, so
``ovf:href`` and an unqualified ``href`` are both understood, as are the OVF 1.0 and 2.0
namespaces that ovftool, image-builder, govc and vCenter write.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

from ovapipe.hardware import FIRMWARE_EFI, parse_vmx

OVF1_NS: Final = "http://schemas.dmtf.org/ovf/envelope/1"
OVF2_NS: Final = "http://schemas.dmtf.org/ovf/envelope/2"
OVF_VERSIONS: Final = {OVF1_NS: "1.0", OVF2_NS: "2.0"}
VMW_NS: Final = "http://www.vmware.com/schema/ovf"
RASD_NS: Final = (
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
)
VSSD_NS: Final = (
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
)
CIM_NS: Final = "http://schemas.dmtf.org/wbem/wscim/1/common"
XSI_NS: Final = "http://www.w3.org/2001/XMLSchema-instance"
STREAM_OPTIMIZED_FORMAT: Final = (
    "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
)
MAX_DESCRIPTOR_BYTES: Final = 16 * 1024 * 1024

KEY_FIRMWARE: Final = "firmware"
KEY_SECURE_BOOT: Final = "bootOptions.efiSecureBootEnabled"
KEY_SECURE_BOOT_EXTRA: Final = "uefi.secureBoot.enabled"
KEY_NVRAM: Final = "nvram"
# References from inside the descriptor: ovf:/file/<File id>, ovf:/disk/<diskId>.
FILE_URI: Final = "ovf:/file/"
DISK_URI: Final = "ovf:/disk/"

# CIM ResourceType values used in VirtualHardwareSection items.
RESOURCE_CPU: Final = 3
RESOURCE_MEMORY: Final = 4
RESOURCE_IDE: Final = 5
RESOURCE_SCSI: Final = 6
RESOURCE_ETHERNET: Final = 10
RESOURCE_DISK: Final = 17
RESOURCE_SATA: Final = 20
CONTROLLER_TYPES: Final = (RESOURCE_IDE, RESOURCE_SCSI, RESOURCE_SATA)


class DescriptorError(Exception):
    """The descriptor cannot be used; ``rule`` is descriptor.unsafe-xml or descriptor.invalid."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class FileRef:
    """A References/File entry."""

    id: str
    href: str
    size: int | None


@dataclass(frozen=True)
class DiskRef:
    """A DiskSection/Disk entry."""

    disk_id: str
    file_ref: str | None
    capacity_bytes: int | None
    format: str | None
    populated_size: int | None = None


@dataclass(frozen=True)
class HardwareItem:
    instance_id: str
    resource_type: int | None
    subtype: str | None = None
    element_name: str | None = None
    parent: str | None = None
    address_on_parent: str | None = None
    host_resources: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()
    quantity: int | None = None


@dataclass
class Descriptor:
    """What ovapipe needs from an OVF descriptor."""

    ovf_version: str
    name: str | None = None
    vmx: int | None = None
    vmx_text: str | None = None  # VirtualSystemType as written, e.g. "vmx-17"
    firmware: str | None = None
    secure_boot: bool | None = None
    os_type: str | None = None
    files: list[FileRef] = field(default_factory=list)
    disks: list[DiskRef] = field(default_factory=list)
    items: list[HardwareItem] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)  # vmw:Config key -> value
    extra_config: dict[str, str] = field(default_factory=dict)  # vmw:ExtraConfig
    nvram_file_id: str | None = None
    has_boot_order_section: bool = False
    product: dict[str, str] = field(default_factory=dict)  # ProductSection Property key -> value
    virtual_systems: int = 1

    def file(self, file_id: str) -> FileRef | None:
        return self._files_by_id.get(file_id)

    @cached_property
    def _files_by_id(self) -> dict[str, FileRef]:
        by_id: dict[str, FileRef] = {}
        for ref in self.files:
            by_id.setdefault(ref.id, ref)
        return by_id

    def disk_file(self, disk: DiskRef) -> FileRef | None:
        return self.file(disk.file_ref) if disk.file_ref else None

    @property
    def nvram_file(self) -> FileRef | None:
        return self.file(self.nvram_file_id) if self.nvram_file_id else None

    @property
    def cpus(self) -> int | None:
        return next((i.quantity for i in self.items if i.resource_type == RESOURCE_CPU), None)


# ---- reading -------------------------------------------------------------------------------


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _attr(element: ET.Element, name: str) -> str | None:
    """An attribute by local name, whatever its namespace prefix (or none)."""
    for key, value in element.attrib.items():
        if _local(key) == name:
            return value
    return None


def _children(element: ET.Element, *names: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) in names]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    found = _children(element, name)
    return found[0] if found else None


def _descendants(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element.iter() if isinstance(e.tag, str) and _local(e.tag) == name]


def _text(element: ET.Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip()


def _int(value: str | None, what: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise DescriptorError("descriptor.invalid", f"{what} {value!r} is not a number") from None


_UNITS_RE = re.compile(r"^byte\s*(?:\*\s*(\d+)\s*(?:\^\s*(\d+))?)?$", re.IGNORECASE)
_NAMED_UNITS: Final = {
    "bytes": 1, "kilobytes": 1024, "megabytes": 1024**2, "gigabytes": 1024**3,
    "terabytes": 1024**4,
}


def allocation_multiplier(units: str | None, what: str) -> int:
    """'byte * 2^20' -> 1048576; no units means bytes (DSP0243)."""
    if units is None or not units.strip():
        return 1
    text = units.strip()
    if text.lower() in _NAMED_UNITS:
        return _NAMED_UNITS[text.lower()]
    match = _UNITS_RE.match(text)
    if not match:
        raise DescriptorError("descriptor.invalid", f"{what}: unknown allocation units {units!r}")
    base, exponent = match.groups()
    if base is None:
        return 1
    if exponent is not None and int(exponent) > 60:
        raise DescriptorError("descriptor.invalid", f"{what}: allocation units {units!r} too big")
    return int(base) ** int(exponent) if exponent is not None else int(base)


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    return None


def _unsafe_reason(exc: Exception) -> str:
    name = getattr(exc, "name", None)
    what = {
        "DTDForbidden": f"a document type declaration (<!DOCTYPE {name}>)",
        "EntitiesForbidden": f"an entity declaration (<!ENTITY {name}>)",
        "ExternalReferenceForbidden": "an external reference",
    }.get(type(exc).__name__, type(exc).__name__)
    return (
        f"refused to parse {what}: OVF descriptors need no DTD, entities or external "
        "references, and expanding them is how entity bombs and file disclosure work"
    )


def _parse_xml(data: bytes) -> ET.Element:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(
            "descriptor.invalid",
            f"descriptor is {len(data)} bytes; more than {MAX_DESCRIPTOR_BYTES} is not an OVF",
        )
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise DescriptorError("descriptor.unsafe-xml", _unsafe_reason(exc)) from None
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise DescriptorError("descriptor.invalid", f"not well-formed XML: {exc}") from None
    return root


def _parse_items(section: ET.Element) -> list[HardwareItem]:
    items = []
    for number, element in enumerate(
        _children(section, "Item", "StorageItem", "EthernetPortItem"), start=1
    ):
        fields: dict[str, list[str]] = {}
        for child in element:
            if isinstance(child.tag, str):
                fields.setdefault(_local(child.tag), []).append((child.text or "").strip())

        def first(name: str, values: dict[str, list[str]] = fields) -> str | None:
            found = values.get(name)
            return found[0] if found else None

        instance_id = first("InstanceID") or first("InstanceId") or ""
        what = f"hardware Item {instance_id or number}"
        items.append(HardwareItem(
            instance_id=instance_id,
            resource_type=_int(first("ResourceType"), f"{what}: ResourceType"),
            subtype=first("ResourceSubType"),
            element_name=first("ElementName"),
            parent=first("Parent"),
            address_on_parent=first("AddressOnParent"),
            host_resources=tuple(fields.get("HostResource", [])),
            connections=tuple(fields.get("Connection", [])),
            quantity=_int(first("VirtualQuantity"), f"{what}: VirtualQuantity"),
        ))
    return items


def parse_descriptor(data: bytes) -> Descriptor:
    """Parse OVF descriptor bytes; raises DescriptorError, never anything else for bad input."""
    root = _parse_xml(data)
    if not isinstance(root.tag, str) or _local(root.tag) != "Envelope":
        raise DescriptorError(
            "descriptor.invalid", f"root element is <{_local(str(root.tag))}>, not <Envelope>"
        )
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if namespace not in OVF_VERSIONS:
        raise DescriptorError(
            "descriptor.invalid",
            f"<Envelope> namespace {namespace!r} is not OVF 1.x ({OVF1_NS}) or 2.x ({OVF2_NS})",
        )
    descriptor = Descriptor(ovf_version=OVF_VERSIONS[namespace])

    references = _child(root, "References")
    for element in _children(references, "File") if references is not None else []:
        file_id, href = _attr(element, "id"), _attr(element, "href")
        if not file_id or not href:
            raise DescriptorError(
                "descriptor.invalid", "References/File without ovf:id or ovf:href"
            )
        descriptor.files.append(
            FileRef(file_id, href, _int(_attr(element, "size"), f"File '{href}': ovf:size"))
        )

    for section in _children(root, "DiskSection"):
        for element in _children(section, "Disk"):
            disk_id = _attr(element, "diskId") or ""
            what = f"DiskSection/Disk '{disk_id}'"
            capacity = _int(_attr(element, "capacity"), f"{what}: ovf:capacity")
            multiplier = allocation_multiplier(_attr(element, "capacityAllocationUnits"), what)
            descriptor.disks.append(DiskRef(
                disk_id=disk_id,
                file_ref=_attr(element, "fileRef"),
                capacity_bytes=None if capacity is None else capacity * multiplier,
                format=_attr(element, "format"),
                populated_size=_int(_attr(element, "populatedSize"), f"{what}: populatedSize"),
            ))

    for section in _children(root, "NetworkSection"):
        descriptor.networks.extend(
            _attr(n, "name") or "" for n in _children(section, "Network")
        )

    systems = _descendants(root, "VirtualSystem")
    descriptor.virtual_systems = len(systems)
    if not systems:
        raise DescriptorError("descriptor.invalid", "no <VirtualSystem> element")
    system = systems[0]
    descriptor.name = _text(_child(system, "Name")) or _attr(system, "id")
    descriptor.has_boot_order_section = bool(_descendants(system, "BootOrderSection"))

    os_section = _child(system, "OperatingSystemSection")
    if os_section is not None:
        descriptor.os_type = _attr(os_section, "osType")

    hardware = _child(system, "VirtualHardwareSection")
    if hardware is None:
        raise DescriptorError(
            "descriptor.invalid", "<VirtualSystem> has no <VirtualHardwareSection>"
        )
    system_element = _child(hardware, "System")
    vmx_text = (
        _text(_child(system_element, "VirtualSystemType")) if system_element is not None else None
    )
    descriptor.vmx_text = vmx_text
    if vmx_text:
        versions = []
        for word in vmx_text.replace(",", " ").split():
            try:
                versions.append(parse_vmx(word))
            except ValueError:
                continue
        descriptor.vmx = max(versions) if versions else None
    descriptor.items = _parse_items(hardware)
    for element in _children(hardware, "Config"):
        key = _attr(element, "key")
        if key:
            descriptor.config[key] = _attr(element, "value") or ""
    for element in _children(hardware, "ExtraConfig"):
        key = _attr(element, "key")
        if key:
            descriptor.extra_config[key] = _attr(element, "value") or ""

    firmware = descriptor.config.get(KEY_FIRMWARE) or descriptor.extra_config.get(KEY_FIRMWARE)
    descriptor.firmware = firmware.strip().lower() if firmware else None
    secure = descriptor.config.get(KEY_SECURE_BOOT)
    if secure is None:
        secure = descriptor.extra_config.get(KEY_SECURE_BOOT_EXTRA)
    descriptor.secure_boot = _bool(secure)
    if descriptor.secure_boot is None and descriptor.firmware == FIRMWARE_EFI:
        descriptor.secure_boot = False  # vSphere's default for EFI VMs
    nvram = descriptor.extra_config.get(KEY_NVRAM)
    if nvram and nvram.startswith(FILE_URI):
        descriptor.nvram_file_id = nvram.removeprefix(FILE_URI)

    for product in _descendants(system, "ProductSection"):
        for element in _descendants(product, "Property"):
            key = _attr(element, "key")
            if key:
                descriptor.product[key] = _attr(element, "value") or ""
    return descriptor


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


# ---- writing -------------------------------------------------------------------------------


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
