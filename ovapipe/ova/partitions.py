"""The partition table of a disk image: GPT (header, CRCs, entries) or MBR (with logicals).

Only the sectors that hold the table are read, through a ``read_at(offset, length)`` function,
so the same code works on a raw image and on the grains of a VMDK.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

SECTOR: Final = 512
MAX_GPT_ENTRIES: Final = 1024
MAX_LOGICAL_PARTITIONS: Final = 128
MBR_PROTECTIVE: Final = 0xEE
MBR_EXTENDED: Final = (0x05, 0x0F, 0x85)
_GPT_HEADER: Final = struct.Struct("<8sIIIIQQQQ16sQIII")
_GPT_ENTRY: Final = struct.Struct("<16s16sQQQ72s")
_MBR_ENTRY: Final = struct.Struct("<B3sB3sII")

ReadAt = Callable[[int, int], bytes]


class PartitionError(Exception):
    """A partition table that is there but cannot be trusted; the message says why."""


class NoPartitionTable(PartitionError):
    """Neither a GPT header nor an MBR boot signature."""


@dataclass(frozen=True)
class Partition:
    number: int
    type: UUID | int  # a GPT type GUID or an MBR type byte
    offset: int  # bytes from the start of the disk
    size: int
    name: str = ""


@dataclass(frozen=True)
class PartitionTable:
    scheme: str  # "GPT" or "MBR"
    partitions: list[Partition]


def _gpt(read_at: ReadAt, header: bytes) -> PartitionTable:
    (_, _, header_size, header_crc, _, _, _, first, last, _, entries_lba, count, entry_size,
     entries_crc) = _GPT_HEADER.unpack_from(header)
    if not 92 <= header_size <= SECTOR:
        raise PartitionError(f"GPT header size {header_size} bytes")
    if not 128 <= entry_size <= 4096 or count > MAX_GPT_ENTRIES or entry_size % 8:
        raise PartitionError(f"GPT header claims {count} entries of {entry_size} bytes")
    check = bytearray(header[:header_size])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(check) != header_crc:
        raise PartitionError("GPT header CRC32 does not match: the table is damaged")
    table = read_at(entries_lba * SECTOR, count * entry_size)
    if len(table) != count * entry_size:
        raise PartitionError(f"GPT entries at LBA {entries_lba} lie past the end of the disk")
    if zlib.crc32(table) != entries_crc:
        raise PartitionError("GPT partition entries CRC32 does not match: the table is damaged")
    partitions = []
    for index in range(count):
        (type_raw, _, start, end, _, name) = _GPT_ENTRY.unpack_from(table, index * entry_size)
        if type_raw == bytes(16):
            continue
        if end < start:
            raise PartitionError(f"GPT partition {index + 1} ends (LBA {end}) before it starts "
                                 f"(LBA {start})")
        label = name.decode("utf-16-le", "replace").split("\0", 1)[0]
        partitions.append(Partition(index + 1, UUID(bytes_le=type_raw), start * SECTOR,
                                    (end - start + 1) * SECTOR, label))
    del first, last
    return PartitionTable("GPT", partitions)


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int]]:
    """(type, first LBA, sector count) of the four slots, empty ones left out."""
    result = []
    for slot in range(4):
        (_, _, kind, _, start, count) = _MBR_ENTRY.unpack_from(sector, 446 + 16 * slot)
        if kind and count:
            result.append((kind, start, count))
    return result


def _mbr(read_at: ReadAt, mbr: bytes) -> PartitionTable:
    partitions: list[Partition] = []
    extended: tuple[int, int] | None = None
    for number, (kind, start, count) in enumerate(_mbr_entries(mbr), start=1):
        if kind in MBR_EXTENDED:
            extended = extended or (start, count)
            continue
        partitions.append(Partition(number, kind, start * SECTOR, count * SECTOR))
    if extended is not None:
        base = extended[0]
        link = 0
        seen: set[int] = set()
        number = 5
        while True:
            if link in seen or len(seen) >= MAX_LOGICAL_PARTITIONS:
                raise PartitionError("the MBR's chain of logical partitions loops")
            seen.add(link)
            ebr = read_at((base + link) * SECTOR, SECTOR)
            if len(ebr) < SECTOR or ebr[510:512] != b"\x55\xaa":
                break
            entries = _mbr_entries(ebr)
            next_link = None
            for kind, start, count in entries[:2]:
                if kind in MBR_EXTENDED:
                    next_link = start
                else:
                    partitions.append(Partition(number, kind, (base + link + start) * SECTOR,
                                                count * SECTOR))
                    number += 1
            if next_link is None:
                break
            link = next_link
    return PartitionTable("MBR", partitions)


def read_partition_table(read_at: ReadAt) -> PartitionTable:
    """GPT when LBA 1 holds its header, else the MBR; NoPartitionTable when neither is there."""
    head = read_at(0, 2 * SECTOR)
    mbr, gpt = head[:SECTOR], head[SECTOR : 2 * SECTOR]
    if gpt[:8] == b"EFI PART" and len(gpt) >= _GPT_HEADER.size:
        return _gpt(read_at, gpt)
    if len(mbr) == SECTOR and mbr[510:512] == b"\x55\xaa":
        if any(kind == MBR_PROTECTIVE for kind, _, _ in _mbr_entries(mbr)):
            raise PartitionError("a protective MBR (type 0xEE) but no GPT header at LBA 1")
        return _mbr(read_at, mbr)
    raise NoPartitionTable("neither a GPT header nor an MBR boot signature")
