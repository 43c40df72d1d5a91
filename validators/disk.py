"""Disk checks: the VMDK is streamOptimized, and its first disk boots the way the OVF says.

The boot check reads the compressed grains with dissect.hypervisor, the partition table with
dissect.volume and the EFI System Partition with dissect.fat, all through a window on the
member inside the OVA (nothing is extracted). Those parsers see untrusted bytes, so every read
they make is bounded and any failure becomes a finding.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Final
from uuid import UUID

from ovapipe.findings import ERROR, Finding
from ovapipe.ova.descriptor import STREAM_OPTIMIZED_FORMAT, DiskRef
from ovapipe.ova.vmdk import (
    MAX_VMDK_CAPACITY,
    SECTOR,
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
MAX_GPT_ENTRIES: Final = 1024
# Reads any parser may make through the window: a grain directory of a 62 TB disk is 8 MiB.
MAX_SINGLE_READ: Final = 16 * 1024 * 1024
MAX_TOTAL_READ: Final = 512 * 1024 * 1024


class _Budget(Exception):
    pass


class BoundedReader(io.RawIOBase):
    """Passes reads through, refusing single reads or totals no sane disk check needs."""

    def __init__(self, inner: BinaryIO, max_read: int = MAX_SINGLE_READ,
                 max_total: int = MAX_TOTAL_READ) -> None:
        super().__init__()
        self._inner = inner
        self._max_read = max_read
        self._left = max_total
        self.name = getattr(inner, "name", "disk")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self._max_read:
            raise _Budget(f"a read of {size} bytes at {self.tell()}: refusing unbounded reads")
        self._left -= size
        if self._left < 0:
            raise _Budget("the disk check read more than it ever should: giving up")
        return self._inner.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


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


def _bounded_chain(original: Callable[[int], Iterator[int]], limit: int) -> Callable[..., Any]:
    """A FAT cluster chain that stops at a cycle instead of looping forever."""

    def chain(cluster: int) -> Iterator[int]:
        for count, value in enumerate(original(cluster)):
            if count > limit:
                raise ValueError(f"cluster chain from {cluster} loops")
            yield value

    return chain


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


def _find_loaders(fs: Any) -> list[tuple[str, Any]]:
    """(path, entry) of EFI loaders: the fallback first, then \\EFI\\<vendor>\\ loaders."""
    found: list[tuple[str, Any]] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        found.append((FALLBACK_LOADER, fs.get(FALLBACK_LOADER)))
    try:
        efi = fs.get("EFI")
    except (FileNotFoundError, NotADirectoryError):
        return found
    if not efi.is_directory():
        return found
    for vendor in efi.iterdir():
        if not vendor.is_directory() or vendor.name in (".", "..") or vendor.name.upper() == "BOOT":
            continue
        for entry in vendor.iterdir():
            if not entry.is_directory() and entry.name.lower() in DISTRO_LOADER_NAMES:
                found.append((f"EFI/{vendor.name}/{entry.name}", entry))
    return found


def _refuse_absurd_gpt(stream: BinaryIO) -> None:
    """ValueError for a GPT header whose entry table no disk has, before dissect reads it."""
    stream.seek(SECTOR)
    header = stream.read(SECTOR)
    if header[:8] != b"EFI PART":
        return
    count, entry_size = struct.unpack_from("<II", header, 80)
    if not 128 <= entry_size <= 4096 or count > MAX_GPT_ENTRIES:
        raise ValueError(f"GPT header claims {count} entries of {entry_size} bytes")


def _efi_boot_findings(window: BinaryIO, label: str) -> list[Finding]:
    from dissect.fat.fat import FATFS
    from dissect.hypervisor.disk.vmdk import VMDK
    from dissect.volume.disk import Disk
    from dissect.volume.exceptions import DiskError

    def error(rule: str, message: str) -> list[Finding]:
        return [Finding(rule, ERROR, f"{label}: {message}")]

    window.seek(0)
    stream = VMDK(window)
    _refuse_absurd_gpt(stream)
    stream.seek(0)
    try:
        disk = Disk(stream)
    except DiskError:
        return error(
            "disk.no-esp",
            "no partition table (neither GPT nor MBR): nothing an EFI firmware can boot",
        )
    scheme = type(disk.scheme).__name__
    if scheme == "GPT":
        esps = [p for p in disk.partitions if p.type == ESP_GPT_TYPE]
        if not esps:
            bios_boot = any(p.type == BIOS_BOOT_GPT_TYPE for p in disk.partitions)
            return error(
                "disk.no-esp",
                "GPT without an EFI System Partition (type C12A7328-F81F-11D2-BA4B-"
                "00A0C93EC93B)" + ("; it has a BIOS boot partition: a BIOS-only disk under an "
                                   "EFI descriptor" if bios_boot else ""),
            )
    else:
        esps = [p for p in disk.partitions if p.type == ESP_MBR_TYPE]
        if not esps:
            return error(
                "disk.no-esp",
                f"{scheme} partition table without an EFI System Partition: a BIOS-only disk "
                "under an EFI descriptor boots nothing (vCenter shows it as EFI, the firmware "
                "finds no loader)",
            )
    problems: list[str] = []
    fat_found = False
    for esp in esps:
        where = f"EFI System Partition {esp.number}"
        try:
            fs = FATFS(esp.open())
        except Exception as exc:
            problems.append(f"{where} holds no FAT file system ({exc})")
            continue
        fat_found = True
        fs.fat.chain = _bounded_chain(fs.fat.chain, fs.fat.entry_count)
        loaders = _find_loaders(fs)
        if not loaders:
            problems.append(
                f"{where} (FAT) has no \\EFI\\BOOT\\BOOTX64.EFI and no distribution loader "
                "(\\EFI\\<vendor>\\shimx64.efi or grubx64.efi)"
            )
            continue
        for path, entry in loaders:
            why = _is_x86_64_pe(entry.open().read(4096))
            if why is None:
                return []
            problems.append(f"{where}: \\{path.replace('/', chr(92))} is {why}")
    return error("disk.no-efi-loader" if fat_found else "disk.esp-not-fat", "; ".join(problems))


def check_efi_boot(window: BinaryIO, disk: DiskRef, member_name: str) -> list[Finding]:
    """The first disk of an EFI image: GPT (or MBR) with an ESP holding an x86-64 loader."""
    label = f"boot disk '{disk.disk_id}' (member '{member_name}')"
    bounded = io.BufferedReader(BoundedReader(window), buffer_size=64 * 1024)
    try:
        return _efi_boot_findings(bounded, label)
    except RecursionError:
        return [Finding("disk.unreadable", ERROR, f"{label}: partition table chain loops")]
    except Exception as exc:  # dissect parses untrusted bytes; any failure is a finding
        return [Finding(
            "disk.unreadable", ERROR,
            f"{label}: cannot read the disk's grains or partitions: {type(exc).__name__}: {exc}",
        )]
