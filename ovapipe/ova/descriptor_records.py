"""OVF descriptors: the records and names shared by the reader, the checks and the writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

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
# The controller ResourceSubTypes vCenter imports, per ResourceType (lower case; SCSI without a
# subtype is lsilogic). The simulator's import knows the same (simulator/ext/ovapipe_ovf_import.go).
CONTROLLER_SUBTYPES: Final = {
    RESOURCE_SCSI: frozenset({"", "lsilogic", "buslogic", "lsilogicsas", "lsilogic-sas",
                              "virtualscsi", "pvscsi"}),
    RESOURCE_SATA: frozenset({"vmware.sata.ahci", "ahci", "vmware.nvme.controller", "nvme"}),
}


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
    required: bool = True  # ovf:required="false": vCenter may leave the Item out


@dataclass
class Descriptor:
    """What ovapipe needs from an OVF descriptor."""

    ovf_version: str
    name: str | None = None
    vmx: int | None = None
    vmx_text: str | None = None  # VirtualSystemType as written, e.g. "vmx-17" or "vmx-14 vmx-20"
    vmx_types: tuple[int, ...] = ()  # every vmx-NN it lists, oldest first (vmx is the first)
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
