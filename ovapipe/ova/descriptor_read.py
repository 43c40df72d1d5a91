"""Reading an OVF descriptor: one decoding and one parse for validate-ova and publish.

The bytes are decoded once by ``decode_descriptor`` (byte-order mark, then the XML
declaration's encoding; rule descriptor.encoding names what is refused), and parsed by
defusedxml with DTDs forbidden: an entity bomb or an external entity stops the parse at its
declaration. Elements and attributes are matched by local name, so ``ovf:href`` and an
unqualified ``href`` are both understood, as are the OVF 1.0 and 2.0 namespaces that ovftool,
image-builder, govc and vCenter write.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

from ovapipe.hardware import FIRMWARE_EFI, parse_vmx
from ovapipe.ova.descriptor_records import (
    FILE_URI,
    KEY_FIRMWARE,
    KEY_NVRAM,
    KEY_SECURE_BOOT,
    KEY_SECURE_BOOT_EXTRA,
    MAX_DESCRIPTOR_BYTES,
    OVF1_NS,
    OVF2_NS,
    OVF_VERSIONS,
    Descriptor,
    DescriptorError,
    DiskRef,
    FileRef,
    HardwareItem,
)


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


# Byte-order marks, longest first (a UTF-32 LE mark starts like UTF-16 LE's).
_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xef\xbb\xbf", "UTF-8"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"),
)
# Declared encoding (lower case) -> the family it belongs to; the codec decodes it.
_FAMILIES: Final = {
    "utf-8": "UTF-8", "utf8": "UTF-8", "us-ascii": "UTF-8", "ascii": "UTF-8",
    "iso-8859-1": "ISO-8859-1", "iso8859-1": "ISO-8859-1", "iso_8859-1": "ISO-8859-1",
    "latin-1": "ISO-8859-1", "latin1": "ISO-8859-1", "l1": "ISO-8859-1",
    "utf-16": "UTF-16", "utf-16le": "UTF-16", "utf-16be": "UTF-16",
}
_CODECS: Final = {"UTF-8": "utf-8-sig", "ISO-8859-1": "latin-1", "UTF-16": "utf-16"}
READABLE_ENCODINGS: Final = (
    "UTF-8, US-ASCII, ISO-8859-1 (Latin-1), or UTF-16 with a byte-order mark"
)
_DECLARATION_RE: Final = re.compile(
    r"^(<\?xml\s[^>]*?\bencoding\s*=\s*)([\"'])([^\"']*)\2", re.IGNORECASE
)


@dataclass(frozen=True)
class DecodedDescriptor:
    """A descriptor's characters, and the encoding they were read in."""

    text: str  # the XML declaration, if any, says encoding="UTF-8"
    encoding: str  # "UTF-8", "ISO-8859-1" or "UTF-16"


def _refuse(message: str) -> DescriptorError:
    return DescriptorError("descriptor.encoding", f"{message}; ovapipe reads {READABLE_ENCODINGS}")


def decode_descriptor(data: bytes) -> DecodedDescriptor:
    """The one decoding of descriptor bytes, for validate-ova and publish alike.

    A byte-order mark decides first, then the XML declaration's encoding; without either the
    text is UTF-8 (XML's default). Anything else is DescriptorError descriptor.encoding.
    """
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise DescriptorError(
            "descriptor.invalid",
            f"descriptor is {len(data)} bytes; more than {MAX_DESCRIPTOR_BYTES} is not an OVF",
        )
    bom = next((family for mark, family in _BOMS if data.startswith(mark)), None)
    if bom == "UTF-32":
        raise _refuse("the descriptor is UTF-32 (byte-order mark)")
    if bom is None and data[:2] in (b"<\x00", b"\x00<"):
        raise _refuse("the descriptor looks like UTF-16 without a byte-order mark")
    head = data[:400].decode("utf-16" if bom == "UTF-16" else "latin-1", "replace")
    match = _DECLARATION_RE.match(head.removeprefix("\ufeff").removeprefix("\xef\xbb\xbf"))
    declared = match.group(3) if match else None
    family = _FAMILIES.get(declared.strip().lower()) if declared is not None else bom or "UTF-8"
    if family is None:
        raise _refuse(f"the XML declaration says encoding={declared!r}")
    if bom is not None and family != bom:
        raise _refuse(f"the XML declaration says encoding={declared!r} but the byte-order mark "
                      f"is {bom}'s")
    if family == "UTF-16" and bom is None:
        raise _refuse(f"the XML declaration says encoding={declared!r} but there is no "
                      "byte-order mark")
    try:
        text = data.decode(_CODECS[family])
    except UnicodeDecodeError as exc:
        raise _refuse(f"byte {exc.start} (0x{data[exc.start]:02x}) is not valid {family}"
                      f"{f' (declared {declared!r})' if declared else ''}") from None
    if "\x00" in text:
        raise _refuse(f"character {text.index(chr(0))} is NUL, which XML forbids (UTF-16 or "
                      f"UTF-32 read as {family}?)")
    text = _DECLARATION_RE.sub(r"\1\2UTF-8\2", text, count=1)
    return DecodedDescriptor(text, family)


def descriptor_text(data: bytes) -> str:
    """The descriptor as publish hands it to vCenter (CreateImportSpec takes characters)."""
    return decode_descriptor(data).text


def _parse_xml(data: bytes) -> ET.Element:
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    text = decode_descriptor(data).text
    try:
        root = fromstring(
            text.encode("utf-8"), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
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
            required=(_attr(element, "required") or "true").strip().lower() != "false",
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
        descriptor.vmx_types = tuple(sorted(set(versions)))
        # A host creates the newest listed type it can; the lowest is what an old host makes.
        descriptor.vmx = descriptor.vmx_types[0] if versions else None
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
