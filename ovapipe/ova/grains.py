"""Random access to the virtual disk inside a sparse VMDK, reading only the grains asked for.

A hosted sparse extent (streamOptimized or monolithicSparse) maps the disk in grains through a
grain directory of grain tables. ``GrainReader.read_at`` finds the grain table entries for the
bytes asked for, reads and inflates just those grains, and keeps a few in a small cache. Every
number comes from untrusted bytes: offsets, sizes and the total read are bounded, and any
inconsistency is a ``GrainError`` with the reason.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Final, Protocol

from ovapipe.ova.vmdk import FLAG_COMPRESSED, SECTOR, VMDK_MAGIC

GD_AT_END: Final = 0xFFFFFFFFFFFFFFFF
MAX_GRAIN_SECTORS: Final = 2048  # 1 MiB; qemu-img and VMware write 64 KiB grains
MAX_GTES_PER_GT: Final = 4096
MAX_TOTAL_READ: Final = 256 * 1024 * 1024
CACHE_BYTES: Final = 4 * 1024 * 1024
_HEADER: Final = struct.Struct("<4sIIQQQQIQQQB4sH")
_MARKER: Final = struct.Struct("<QI")


class GrainError(Exception):
    """The sparse extent cannot be read: the message says which structure and why."""


class PositionalFile(Protocol):
    """What the reader needs from the VMDK's bytes: reads at an offset, and a size."""

    def pread(self, length: int, offset: int) -> bytes: ...

    @property
    def size(self) -> int: ...


class WindowFile:
    """A seekable binary file (an OVA member's window, an open VMDK) as a positional file."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.size = handle.seek(0, 2)

    def pread(self, length: int, offset: int) -> bytes:
        self._handle.seek(offset)
        return self._handle.read(max(0, min(length, self.size - offset)))


@dataclass(frozen=True)
class SparseLayout:
    flags: int
    capacity_sectors: int
    grain_sectors: int
    gtes_per_gt: int
    gd_sector: int

    @property
    def grain_bytes(self) -> int:
        return self.grain_sectors * SECTOR

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def gd_entries(self) -> int:
        span = self.grain_sectors * self.gtes_per_gt
        return -(-self.capacity_sectors // span)


def _layout(raw: bytes, where: str) -> SparseLayout:
    if len(raw) < _HEADER.size or raw[:4] != VMDK_MAGIC:
        raise GrainError(f"no sparse header at the {where}")
    (_, _, flags, capacity, grain, _, _, gtes, _, gd, _, _, _, _) = _HEADER.unpack_from(raw)
    if grain == 0 or grain & (grain - 1) or grain > MAX_GRAIN_SECTORS:
        raise GrainError(f"grain size {grain} sectors (expected a power of two up to "
                         f"{MAX_GRAIN_SECTORS})")
    if gtes == 0 or gtes > MAX_GTES_PER_GT:
        raise GrainError(f"{gtes} entries per grain table (expected 1 to {MAX_GTES_PER_GT})")
    return SparseLayout(flags, capacity, grain, gtes, gd)


def read_layout(source: PositionalFile) -> SparseLayout:
    """The header's layout; for a stream whose grain directory is at the end, the footer's."""
    layout = _layout(source.pread(SECTOR, 0), "start")
    if layout.gd_sector == GD_AT_END:
        # streamOptimized written as a stream: footer marker, footer, end-of-stream marker.
        if source.size < 3 * SECTOR:
            raise GrainError("the grain directory is at the end, but there is no footer")
        footer = _layout(source.pread(SECTOR, source.size - 2 * SECTOR), "footer")
        if footer.gd_sector == GD_AT_END:
            raise GrainError("the footer does not say where the grain directory is")
        layout = footer
    return layout


class GrainReader:
    """Reads the virtual disk's bytes at any offset from the grains that hold them."""

    def __init__(self, source: PositionalFile, max_total_read: int = MAX_TOTAL_READ) -> None:
        self._source = source
        self.layout = read_layout(source)
        self.capacity = self.layout.capacity_sectors * SECTOR
        if self.layout.gd_sector * SECTOR >= source.size:
            raise GrainError(f"grain directory at sector {self.layout.gd_sector} is past the "
                             f"end of the file ({source.size} bytes)")
        self._left = max_total_read
        self._tables: OrderedDict[int, tuple[int, ...]] = OrderedDict()
        self._grains: OrderedDict[int, bytes] = OrderedDict()
        self._cache_count = max(4, CACHE_BYTES // self.layout.grain_bytes)
        self.grains_read = 0

    def _pread(self, length: int, offset: int, what: str) -> bytes:
        self._left -= length
        if self._left < 0:
            raise GrainError("the disk check read more than it ever should: giving up")
        data = self._source.pread(length, offset)
        if len(data) != length:
            raise GrainError(f"{what} at byte {offset} is cut off by the end of the file")
        return data

    def _table(self, gd_index: int) -> tuple[int, ...]:
        table = self._tables.get(gd_index)
        if table is not None:
            self._tables.move_to_end(gd_index)
            return table
        gd_entry = self._pread(4, self.layout.gd_sector * SECTOR + 4 * gd_index,
                               "grain directory")
        (gt_sector,) = struct.unpack("<I", gd_entry)
        if gt_sector == 0:
            table = (0,) * self.layout.gtes_per_gt
        else:
            raw = self._pread(4 * self.layout.gtes_per_gt, gt_sector * SECTOR,
                              f"grain table {gd_index}")
            table = struct.unpack(f"<{self.layout.gtes_per_gt}I", raw)
        self._tables[gd_index] = table
        if len(self._tables) > 64:
            self._tables.popitem(last=False)
        return table

    def _inflate(self, sector: int, grain: int) -> bytes:
        size = self.layout.grain_bytes
        (_, length) = _MARKER.unpack(self._pread(_MARKER.size, sector * SECTOR, "grain marker"))
        if length == 0 or length > 2 * size + 4096:
            raise GrainError(f"grain {grain} at sector {sector}: compressed size {length} "
                             f"bytes for a {size}-byte grain")
        packed = self._pread(length, sector * SECTOR + _MARKER.size, f"grain {grain}")
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
            inflater = zlib.decompressobj(wbits)
            try:
                data = inflater.decompress(packed, size)
            except zlib.error:
                continue
            return data.ljust(size, b"\0")
        raise GrainError(f"grain {grain} at sector {sector} does not inflate (corrupt deflate "
                         "stream)")

    def _grain(self, grain: int) -> bytes:
        cached = self._grains.get(grain)
        if cached is not None:
            self._grains.move_to_end(grain)
            return cached
        gd_index, gt_index = divmod(grain, self.layout.gtes_per_gt)
        sector = self._table(gd_index)[gt_index]
        if sector <= 1:  # 0: never written; 1: a zeroed grain
            data = bytes(self.layout.grain_bytes)
        elif self.layout.compressed:
            data = self._inflate(sector, grain)
        else:
            data = self._pread(self.layout.grain_bytes, sector * SECTOR, f"grain {grain}")
        self.grains_read += 1
        self._grains[grain] = data
        if len(self._grains) > self._cache_count:
            self._grains.popitem(last=False)
        return data

    def part_reader(self, base: int, size: int) -> Callable[[int, int], bytes]:
        """Reads inside one part of the disk (a partition) by offsets from its start, cut at
        its end."""
        def read(offset: int, length: int) -> bytes:
            return self.read_at(base + offset, max(0, min(length, size - offset)))

        return read

    def read_at(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the virtual disk from ``offset`` (fewer past its end)."""
        if offset < 0 or length < 0:
            raise GrainError(f"a read of {length} bytes at {offset}")
        end = min(offset + length, self.capacity)
        size = self.layout.grain_bytes
        parts: list[bytes] = []
        position = offset
        while position < end:
            grain, inside = divmod(position, size)
            take = min(size - inside, end - position)
            parts.append(self._grain(grain)[inside : inside + take])
            position += take
        return b"".join(parts)


class FdFile:
    """A ``PositionalFile`` over a byte range of an open file (a member inside an OVA)."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._offset = offset
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def pread(self, length: int, offset: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        return os.pread(self._fd, length, self._offset + offset) if length else b""


class BytesFile:
    """A ``PositionalFile`` over bytes in memory (tests, fuzzing)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def pread(self, length: int, offset: int) -> bytes:
        return self._data[offset : offset + length] if offset >= 0 else b""
