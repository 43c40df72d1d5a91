"""Disk checks: the VMDK is streamOptimized, and its first disk boots the way the OVF says.

The boot check reads the boot disk through ovapipe's own small readers: the grains it needs
from the sparse VMDK (``ovapipe.ova.grains``), the partition table (``ovapipe.ova.partitions``)
and the EFI System Partition's directories (``ovapipe.ova.fat``), all through positional reads
of the member inside the OVA (nothing is extracted, the disk is never read whole). Those
readers see untrusted bytes; every size they follow is bounded and any failure is a finding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Final
from uuid import UUID

from ovapipe.findings import ERROR, Finding
from ovapipe.ova.descriptor import STREAM_OPTIMIZED_FORMAT, DiskRef
from ovapipe.ova.fat import DirEntry, FatError, FatVolume
from ovapipe.ova.grains import GrainError, GrainReader, WindowFile
from ovapipe.ova.partitions import NoPartitionTable, PartitionError, read_partition_table
from ovapipe.ova.vmdk import (
    MAX_VMDK_CAPACITY,
    VmdkError,
    VmdkHeader,
    read_vmdk_header,
)

ESP_GPT_TYPE: Final = UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
BIOS_BOOT_GPT_TYPE: Final = UUID("21686148-6449-6e6f-744e-656564454649")
ESP_MBR_TYPE: Final = 0xEF
# The fallback loader every x86-64 UEFI firmware looks for, and distribution loaders that an
# NVRAM boot entry points at.
FALLBACK_LOADER: Final = "EFI/BOOT/BOOTX64.EFI"
DISTRO_LOADER_NAMES: Final = ("shimx64.efi", "grubx64.efi", "bootx64.efi")
PE_MACHINE_X86_64: Final = 0x8664
LOADER_HEAD: Final = 4096


@dataclass(frozen=True)
class DiskCheck:
    """Findings for one disk, plus what was learned (for messages and tests)."""

    findings: list[Finding]
    header: VmdkHeader | None = None


def check_vmdk(window: BinaryIO, disk: DiskRef, member_name: str,
               ovf_capacity: int | None) -> DiskCheck:
    """Sparse header, streamOptimized flags and createType, capacity against the OVF."""
    label = f"disk '{disk.disk_id}' (member '{member_name}')"
    findings: list[Finding] = []
    try:
        header = read_vmdk_header(window)
    except VmdkError as exc:
        return DiskCheck([Finding("disk.not-vmdk", ERROR, f"{label}: {exc.message}")])
    if header.capacity_bytes > MAX_VMDK_CAPACITY:
        return DiskCheck([Finding(
            "disk.not-vmdk", ERROR,
            f"{label}: header capacity {header.capacity_bytes} bytes is beyond any VMDK",
        )])
    if not header.stream_optimized:
        findings.append(Finding(
            "disk.not-stream-optimized", ERROR,
            f"{label}: {header.why_not_stream_optimized()}; vCenter imports only "
            "streamOptimized VMDKs from an OVA (qemu-img convert -O vmdk "
            "-o subformat=streamOptimized)",
        ))
    elif disk.format and disk.format != STREAM_OPTIMIZED_FORMAT:
        findings.append(Finding(
            "disk.not-stream-optimized", ERROR,
            f"{label}: DiskSection ovf:format is '{disk.format}', expected "
            f"'{STREAM_OPTIMIZED_FORMAT}'",
        ))
    if ovf_capacity is not None and 0 < ovf_capacity < header.capacity_bytes:
        findings.append(Finding(
            "disk.capacity-mismatch", ERROR,
            f"{label}: the VMDK holds {header.capacity_bytes} bytes but DiskSection "
            f"ovf:capacity is {ovf_capacity} bytes; vCenter refuses a disk larger than declared",
        ))
    return DiskCheck(findings, header)


def _is_x86_64_pe(head: bytes) -> str | None:
    """None when ``head`` starts an x86-64 PE image, else why not."""
    if head[:2] != b"MZ" or len(head) < 64:
        return "not a PE image (no MZ header)"
    (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
    if pe_offset + 6 > len(head) or head[pe_offset : pe_offset + 4] != b"PE\0\0":
        return "not a PE image (no PE signature)"
    (machine,) = struct.unpack_from("<H", head, pe_offset + 4)
    if machine != PE_MACHINE_X86_64:
        return f"a PE image for machine 0x{machine:04x}, not x86-64 (0x8664)"
    return None


def _find_loaders(fs: FatVolume) -> list[tuple[str, DirEntry]]:
    """(path, entry) of EFI loaders: the fallback first, then \\EFI\\<vendor>\\ loaders."""
    found: list[tuple[str, DirEntry]] = []
    fallback = fs.find(FALLBACK_LOADER)
    if fallback is not None and not fallback.is_directory:
        found.append((FALLBACK_LOADER, fallback))
    efi = fs.find("EFI")
    if efi is None or not efi.is_directory:
        return found
    for vendor in fs.listdir(efi.cluster):
        if not vendor.is_directory or vendor.matches("BOOT"):
            continue
        for entry in fs.listdir(vendor.cluster):
            if not entry.is_directory and entry.name.lower() in DISTRO_LOADER_NAMES:
                found.append((f"EFI/{vendor.name}/{entry.name}", entry))
    return found


def _efi_boot_findings(window: BinaryIO, label: str) -> list[Finding]:
    def error(rule: str, message: str) -> list[Finding]:
        return [Finding(rule, ERROR, f"{label}: {message}")]

    disk = GrainReader(WindowFile(window))
    try:
        table = read_partition_table(disk.read_at)
    except NoPartitionTable:
        return error(
            "disk.no-esp",
            "no partition table (neither GPT nor MBR): nothing an EFI firmware can boot",
        )
    if table.scheme == "GPT":
        esps = [p for p in table.partitions if p.type == ESP_GPT_TYPE]
        if not esps:
            bios_boot = any(p.type == BIOS_BOOT_GPT_TYPE for p in table.partitions)
            return error(
                "disk.no-esp",
                "GPT without an EFI System Partition (type C12A7328-F81F-11D2-BA4B-"
                "00A0C93EC93B)" + ("; it has a BIOS boot partition: a BIOS-only disk under an "
                                   "EFI descriptor" if bios_boot else ""),
            )
    else:
        esps = [p for p in table.partitions if p.type == ESP_MBR_TYPE]
        if not esps:
            return error(
                "disk.no-esp",
                f"{table.scheme} partition table without an EFI System Partition: a BIOS-only "
                "disk under an EFI descriptor boots nothing (vCenter shows it as EFI, the "
                "firmware finds no loader)",
            )
    problems: list[str] = []
    fat_found = False
    for esp in esps:
        where = f"EFI System Partition {esp.number}"
        try:
            fs = FatVolume(disk.part_reader(esp.offset, esp.size), esp.size)
        except FatError as exc:
            problems.append(f"{where} holds no FAT file system ({exc})")
            continue
        fat_found = True
        loaders = _find_loaders(fs)
        if not loaders:
            problems.append(
                f"{where} (FAT) has no \\EFI\\BOOT\\BOOTX64.EFI and no distribution loader "
                "(\\EFI\\<vendor>\\shimx64.efi or grubx64.efi)"
            )
            continue
        for path, entry in loaders:
            why = _is_x86_64_pe(fs.read_head(entry, LOADER_HEAD))
            if why is None:
                return []
            problems.append(f"{where}: \\{path.replace('/', chr(92))} is {why}")
    return error("disk.no-efi-loader" if fat_found else "disk.esp-not-fat", "; ".join(problems))


def check_efi_boot(window: BinaryIO, disk: DiskRef, member_name: str) -> list[Finding]:
    """The first disk of an EFI image: GPT (or MBR) with an ESP holding an x86-64 loader."""
    label = f"boot disk '{disk.disk_id}' (member '{member_name}')"
    try:
        return _efi_boot_findings(window, label)
    except (GrainError, PartitionError, FatError) as exc:
        return [Finding(
            "disk.unreadable", ERROR,
            f"{label}: cannot read the disk's grains or partitions: {exc}",
        )]
