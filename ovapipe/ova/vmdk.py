"""The sparse extent header of a VMDK: enough to tell streamOptimized from everything else."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import BinaryIO, Final

VMDK_MAGIC: Final = b"KDMV"
SECTOR: Final = 512
FLAG_COMPRESSED: Final = 1 << 16
FLAG_MARKERS: Final = 1 << 17
COMPRESSION_DEFLATE: Final = 1
STREAM_OPTIMIZED: Final = "streamOptimized"
_HEADER: Final = struct.Struct("<4sIIQQQQIQQQB4sH")
_CREATE_TYPE_RE = re.compile(rb'^\s*createType\s*=\s*"?([A-Za-z0-9_]+)"?', re.MULTILINE)
MAX_EMBEDDED_DESCRIPTOR: Final = 64 * 1024
MAX_DESCRIPTOR_SECTOR: Final = 1 << 32  # the descriptor sits near the start; 2 TiB is absurd
MAX_VMDK_CAPACITY: Final = 64 * 1024**4  # VMDKs stop at 62 TB


class VmdkError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class VmdkHeader:
    version: int
    flags: int
    capacity_sectors: int
    grain_sectors: int
    compress_algorithm: int
    create_type: str | None

    @property
    def capacity_bytes(self) -> int:
        return self.capacity_sectors * SECTOR

    @property
    def stream_optimized(self) -> bool:
        return (
            self.create_type == STREAM_OPTIMIZED
            and bool(self.flags & FLAG_COMPRESSED)
            and bool(self.flags & FLAG_MARKERS)
            and self.compress_algorithm == COMPRESSION_DEFLATE
        )

    def why_not_stream_optimized(self) -> str:
        reasons = []
        if self.create_type != STREAM_OPTIMIZED:
            reasons.append(f'createType is "{self.create_type or "missing"}"')
        if not self.flags & FLAG_COMPRESSED:
            reasons.append("grains are not compressed")
        if not self.flags & FLAG_MARKERS:
            reasons.append("no stream markers")
        if self.flags & FLAG_COMPRESSED and self.compress_algorithm != COMPRESSION_DEFLATE:
            reasons.append(f"compression algorithm {self.compress_algorithm} is not deflate")
        return ", ".join(reasons)


def read_vmdk_header(handle: BinaryIO) -> VmdkHeader:
    """Read and check the sparse header at the start of ``handle`` (a VMDK or a window on one)."""
    handle.seek(0)
    raw = handle.read(SECTOR)
    if len(raw) < _HEADER.size or raw[:4] != VMDK_MAGIC:
        start = raw[:4]
        if raw.startswith(b"# Disk DescriptorFile"):
            raise VmdkError("a text VMDK descriptor without its extents, not a sparse VMDK")
        raise VmdkError(f"no VMDK sparse header (starts with {start!r}, expected b'KDMV')")
    (_, version, flags, capacity, grain, descriptor_offset, descriptor_size, _, _, _, _, _, _,
     compress) = _HEADER.unpack_from(raw)
    if version not in (1, 2, 3):
        raise VmdkError(f"unknown VMDK sparse header version {version}")
    if grain == 0 or grain & (grain - 1):
        raise VmdkError(f"grain size {grain} sectors is not a power of two")
    create_type = None
    if descriptor_offset and descriptor_size:
        if descriptor_offset > MAX_DESCRIPTOR_SECTOR:
            raise VmdkError(f"embedded descriptor at sector {descriptor_offset}: beyond any VMDK")
        length = min(descriptor_size * SECTOR, MAX_EMBEDDED_DESCRIPTOR)
        handle.seek(descriptor_offset * SECTOR)
        text = handle.read(length).split(b"\0", 1)[0]
        match = _CREATE_TYPE_RE.search(text)
        if match:
            create_type = match.group(1).decode("ascii")
    return VmdkHeader(version, flags, capacity, grain, compress, create_type)
