"""Just enough FAT12/16/32 to find a file by path and read its first bytes.

The boot sector gives the geometry; directories are walked cluster by cluster (long names
included), FAT entries are read one sector at a time as a chain needs them. Chains that loop
or leave the volume, and directories or reads beyond sane sizes, raise ``FatError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

ReadAt = Callable[[int, int], bytes]

ATTR_DIRECTORY: Final = 0x10
ATTR_VOLUME_ID: Final = 0x08
ATTR_LONG_NAME: Final = 0x0F
MAX_DIRECTORY_ENTRIES: Final = 65536  # the FAT limit for one directory
_BOOT: Final = struct.Struct("<3s8sHBHBHHBHHHII")


class FatError(Exception):
    """Not a FAT file system, or a damaged one; the message says which structure and why."""


@dataclass(frozen=True)
class DirEntry:
    name: str  # the long name when there is one, else NAME.EXT
    short_name: str
    attributes: int
    cluster: int
    size: int

    @property
    def is_directory(self) -> bool:
        return bool(self.attributes & ATTR_DIRECTORY)

    def matches(self, name: str) -> bool:
        wanted = name.casefold()
        return wanted in (self.name.casefold(), self.short_name.casefold())


def _short_name(raw: bytes) -> str:
    """NAME.EXT, lower-cased where Windows NT's case bits (byte 12) say so."""
    base = raw[:8].rstrip(b" ")
    if base[:1] == b"\x05":
        base = b"\xe5" + base[1:]
    ext = raw[8:11].rstrip(b" ")
    if raw[12] & 0x08:
        base = base.lower()
    if raw[12] & 0x10:
        ext = ext.lower()
    return base.decode("cp437") + ("." + ext.decode("cp437") if ext else "")


def _long_name_part(raw: bytes) -> str:
    chars = raw[1:11] + raw[14:26] + raw[28:32]
    return chars.decode("utf-16-le", "replace")


class FatVolume:
    """A FAT file system that starts at byte 0 of ``read_at`` and is ``size`` bytes long."""

    def __init__(self, read_at: ReadAt, size: int) -> None:
        self._read_at = read_at
        boot = read_at(0, 512)
        if len(boot) < 512:
            raise FatError("the partition is shorter than a boot sector")
        (jump, _, sector_size, per_cluster, reserved, fats, root_entries, total16, _,
         fat16_size, _, _, _, total32) = _BOOT.unpack_from(boot)
        if boot[510:512] != b"\x55\xaa" or jump[0] not in (0xEB, 0xE9):
            raise FatError("no FAT boot sector (no jump instruction or 0x55AA signature)")
        if sector_size not in (512, 1024, 2048, 4096):
            raise FatError(f"bytes per sector {sector_size} (expected 512 to 4096)")
        if per_cluster == 0 or per_cluster & (per_cluster - 1):
            raise FatError(f"sectors per cluster {per_cluster} is not a power of two")
        if reserved == 0 or fats == 0:
            raise FatError(f"{reserved} reserved sectors and {fats} FATs: not a FAT volume")
        fat_size = fat16_size or struct.unpack_from("<I", boot, 36)[0]
        total = total16 or total32
        root_sectors = -(-root_entries * 32 // sector_size)
        data_start = reserved + fats * fat_size + root_sectors
        if fat_size == 0 or total <= data_start or total * sector_size > size:
            raise FatError(f"geometry does not fit: {total} sectors of {sector_size} bytes, "
                           f"FAT of {fat_size} sectors, in a {size}-byte partition")
        self.clusters = (total - data_start) // per_cluster
        self.bits = 12 if self.clusters < 4085 else 16 if self.clusters < 65525 else 32
        if self.bits == 32 and (root_entries or fat16_size):
            raise FatError("FAT32 geometry with a FAT16 root directory or FAT size")
        if self.bits != 32 and root_entries == 0:
            raise FatError(f"FAT{self.bits} without root directory entries")
        needed_fat = -(-(self.clusters + 2) * self.bits // 8 // sector_size)
        if fat_size < needed_fat:
            raise FatError(f"a FAT of {fat_size} sectors cannot map {self.clusters} clusters")
        self.sector_size = sector_size
        self.cluster_bytes = per_cluster * sector_size
        self._fat_offset = reserved * sector_size
        self._root_offset = (reserved + fats * fat_size) * sector_size
        self._root_entries = root_entries
        self._data_offset = data_start * sector_size
        self.root_cluster = struct.unpack_from("<I", boot, 44)[0] if self.bits == 32 else 0
        self._fat_cache: dict[int, bytes] = {}

    # -- clusters ---------------------------------------------------------------------------

    def _fat_entry(self, cluster: int) -> int:
        byte = cluster * self.bits // 8
        sector, inside = divmod(byte, self.sector_size)
        data = self._fat_sector(sector)
        if inside + 4 > self.sector_size:
            data = data + self._fat_sector(sector + 1)
        if self.bits == 12:
            value = int.from_bytes(data[inside : inside + 2], "little")
            return value >> 4 if cluster & 1 else value & 0xFFF
        if self.bits == 16:
            return int.from_bytes(data[inside : inside + 2], "little")
        return int.from_bytes(data[inside : inside + 4], "little") & 0x0FFFFFFF

    def _fat_sector(self, sector: int) -> bytes:
        cached = self._fat_cache.get(sector)
        if cached is None:
            cached = self._read_at(self._fat_offset + sector * self.sector_size, self.sector_size)
            if len(cached) != self.sector_size:
                raise FatError(f"FAT sector {sector} lies past the end of the partition")
            if len(self._fat_cache) > 256:
                self._fat_cache.clear()
            self._fat_cache[sector] = cached
        return cached

    def chain(self, first: int) -> Iterator[int]:
        """The clusters of a file or directory, in order; FatError on a loop or a bad link."""
        end_mark = (1 << self.bits) - 8 if self.bits != 32 else 0x0FFFFFF8
        cluster, count = first, 0
        while True:
            if not 2 <= cluster < self.clusters + 2:
                raise FatError(f"cluster chain from {first} points at cluster {cluster}, "
                               "outside the volume")
            yield cluster
            count += 1
            if count > self.clusters:
                raise FatError(f"cluster chain from {first} loops")
            cluster = self._fat_entry(cluster)
            if cluster >= end_mark:
                return

    def _cluster(self, cluster: int) -> bytes:
        data = self._read_at(self._data_offset + (cluster - 2) * self.cluster_bytes,
                             self.cluster_bytes)
        if len(data) != self.cluster_bytes:
            raise FatError(f"cluster {cluster} lies past the end of the partition")
        return data

    # -- directories --------------------------------------------------------------------------

    def _directory_blocks(self, cluster: int) -> Iterator[bytes]:
        if cluster == 0 and self.bits != 32:
            yield self._read_at(self._root_offset, self._root_entries * 32)
            return
        budget = MAX_DIRECTORY_ENTRIES * 32
        for link in self.chain(cluster or self.root_cluster):
            budget -= self.cluster_bytes
            if budget < 0:
                raise FatError(f"directory at cluster {cluster} is longer than FAT allows")
            yield self._cluster(link)

    def listdir(self, cluster: int = 0) -> Iterator[DirEntry]:
        """The entries of the directory starting at ``cluster`` (0: the root), '.'/'..' left out."""
        long_parts: list[str] = []
        for block in self._directory_blocks(cluster):
            for start in range(0, len(block) - 31, 32):
                raw = block[start : start + 32]
                if raw[0] == 0:
                    return
                attributes = raw[11]
                if raw[0] == 0xE5:
                    long_parts = []
                    continue
                if attributes & 0x3F == ATTR_LONG_NAME:
                    if raw[0] & 0x40:
                        long_parts = []
                    long_parts.insert(0, _long_name_part(raw))
                    continue
                name = "".join(long_parts).split("\0", 1)[0]
                long_parts = []
                if attributes & ATTR_VOLUME_ID:
                    continue
                short = _short_name(raw)
                if short in (".", ".."):
                    continue
                high, low, size = struct.unpack_from("<H4xHI", raw, 20)
                first = (high << 16 | low) if self.bits == 32 else low
                yield DirEntry(name or short, short, attributes, first, size)

    def find(self, path: str) -> DirEntry | None:
        """The entry at a '/'-separated path, names compared case-insensitively as FAT does."""
        cluster = 0
        entry: DirEntry | None = None
        for part in [p for p in path.split("/") if p]:
            if entry is not None and not entry.is_directory:
                return None
            entry = next((e for e in self.listdir(cluster) if e.matches(part)), None)
            if entry is None:
                return None
            cluster = entry.cluster
        return entry

    def read_head(self, entry: DirEntry, length: int) -> bytes:
        """The first ``length`` bytes of a file (fewer when it is shorter)."""
        wanted = min(length, entry.size)
        if wanted <= 0:
            return b""
        parts: list[bytes] = []
        got = 0
        for link in self.chain(entry.cluster):
            block = self._cluster(link)
            parts.append(block[: wanted - got])
            got += len(parts[-1])
            if got >= wanted:
                break
        return b"".join(parts)
