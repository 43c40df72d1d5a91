"""OVF descriptors: read (``descriptor_read``), check (``descriptor_check``), write
(``descriptor_write``), with the records they pass between them (``descriptor_records``).

``descriptor_read`` turns bytes into a ``Descriptor`` with one decoding, used by validate-ova
and publish alike. This module re-exports all of it, so callers import from one place.
"""

from __future__ import annotations

from ovapipe.ova.descriptor_check import check_consistency
from ovapipe.ova.descriptor_read import (
    allocation_multiplier,
    decode_descriptor,
    descriptor_text,
    parse_descriptor,
)
from ovapipe.ova.descriptor_records import (
    CIM_NS,
    CONTROLLER_TYPES,
    DISK_URI,
    FILE_URI,
    KEY_FIRMWARE,
    KEY_NVRAM,
    KEY_SECURE_BOOT,
    KEY_SECURE_BOOT_EXTRA,
    MAX_DESCRIPTOR_BYTES,
    OVF1_NS,
    OVF2_NS,
    OVF_VERSIONS,
    RASD_NS,
    RESOURCE_CPU,
    RESOURCE_DISK,
    RESOURCE_ETHERNET,
    RESOURCE_IDE,
    RESOURCE_MEMORY,
    RESOURCE_SATA,
    RESOURCE_SCSI,
    STREAM_OPTIMIZED_FORMAT,
    VMW_NS,
    VSSD_NS,
    XSI_NS,
    Descriptor,
    DescriptorError,
    DiskRef,
    FileRef,
    HardwareItem,
)
from ovapipe.ova.descriptor_write import DescriptorSpec, DiskEntry, FileEntry, write_descriptor

__all__ = [
    "CIM_NS",
    "CONTROLLER_TYPES",
    "DISK_URI",
    "FILE_URI",
    "KEY_FIRMWARE",
    "KEY_NVRAM",
    "KEY_SECURE_BOOT",
    "KEY_SECURE_BOOT_EXTRA",
    "MAX_DESCRIPTOR_BYTES",
    "OVF1_NS",
    "OVF2_NS",
    "OVF_VERSIONS",
    "RASD_NS",
    "RESOURCE_CPU",
    "RESOURCE_DISK",
    "RESOURCE_ETHERNET",
    "RESOURCE_IDE",
    "RESOURCE_MEMORY",
    "RESOURCE_SATA",
    "RESOURCE_SCSI",
    "STREAM_OPTIMIZED_FORMAT",
    "VMW_NS",
    "VSSD_NS",
    "XSI_NS",
    "Descriptor",
    "DescriptorError",
    "DescriptorSpec",
    "DiskEntry",
    "DiskRef",
    "FileEntry",
    "FileRef",
    "HardwareItem",
    "allocation_multiplier",
    "check_consistency",
    "decode_descriptor",
    "descriptor_text",
    "parse_descriptor",
    "write_descriptor",
]
