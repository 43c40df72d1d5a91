"""A small read-only ext4 reader: enough to read /etc and /var/lib/dpkg/status of a node image.

It reads through a positional ``read_at(offset, length)`` (the grain reader of a VMDK inside an
OVA), never mounts or extracts. Understood: the superblock, 32- and 64-bit group descriptors,
inodes, extent trees (any depth), classic block maps of ext2/ext3 files, linear and hashed
(htree) directories read as linear ones, fast symlinks and inline data in the inode. Every
count, depth and size is bounded; damaged or hostile input raises Ext4Error with a reason.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

ReadAt = Callable[[int, int], bytes]

SUPERBLOCK_OFFSET: Final = 1024
MAGIC: Final = 0xEF53
ROOT_INODE: Final = 2
EXTENT_MAGIC: Final = 0xF30A
MAX_EXTENT_DEPTH: Final = 5
MAX_EXTENTS: Final = 100_000
MAX_DIRECTORY_BYTES: Final = 64 * 1024 * 1024
MAX_PATH_PARTS: Final = 64
MAX_SYMLINKS: Final = 8
DEFAULT_FILE_LIMIT: Final = 64 * 1024 * 1024
INCOMPAT_64BIT: Final = 0x80
FLAG_EXTENTS: Final = 0x80000
FLAG_INLINE_DATA: Final = 0x10000000
S_IFMT: Final = 0o170000
S_IFDIR: Final = 0o040000
S_IFREG: Final = 0o100000
S_IFLNK: Final = 0o120000


class Ext4Error(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Inode:
    number: int
    mode: int
    size: int
    flags: int
    block: bytes  # i_block: extent tree root, block map, fast symlink or inline data
    blocks_count: int
    extra: bytes = b""  # the in-inode extended attribute area (after i_extra_isize)

    @property
    def kind(self) -> int:
        return self.mode & S_IFMT

    @property
    def is_dir(self) -> bool:
        return self.kind == S_IFDIR

    @property
    def is_file(self) -> bool:
        return self.kind == S_IFREG

    @property
    def is_symlink(self) -> bool:
        return self.kind == S_IFLNK


@dataclass(frozen=True)
class Superblock:
    block_size: int
    inodes_count: int
    blocks_count: int
    inodes_per_group: int
    inode_size: int
    first_data_block: int
    descriptor_size: int
    label: str


def read_superblock(read_at: ReadAt, size: int) -> Superblock:
    raw = read_at(SUPERBLOCK_OFFSET, 1024)
    if len(raw) < 1024:
        raise Ext4Error("too small to hold an ext4 superblock")
    (magic,) = struct.unpack_from("<H", raw, 0x38)
    if magic != MAGIC:
        raise Ext4Error(f"no ext2/3/4 superblock (magic {magic:#06x}, expected {MAGIC:#06x})")
    inodes_count, blocks_lo, _, _, _, first_data_block, log_block = struct.unpack_from(
        "<7I", raw, 0)
    blocks_per_group, _, inodes_per_group = struct.unpack_from("<3I", raw, 0x20)
    (revision,) = struct.unpack_from("<I", raw, 0x4C)
    (inode_size,) = struct.unpack_from("<H", raw, 0x58) if revision else (128,)
    (incompat,) = struct.unpack_from("<I", raw, 0x60)
    (desc_size,) = struct.unpack_from("<H", raw, 0xFE)
    (blocks_hi,) = struct.unpack_from("<I", raw, 0x150)
    if log_block > 6:
        raise Ext4Error(f"block size 2^{10 + log_block} is not an ext4 block size")
    block_size = 1024 << log_block
    if not 128 <= inode_size <= block_size or inode_size & (inode_size - 1):
        raise Ext4Error(f"inode size {inode_size} is invalid")
    if inodes_per_group == 0 or blocks_per_group == 0:
        raise Ext4Error("zero inodes or blocks per group")
    is_64bit = bool(incompat & INCOMPAT_64BIT)
    descriptor_size = desc_size if is_64bit else 32
    if descriptor_size not in (32, 64) and not (64 <= descriptor_size <= 1024):
        raise Ext4Error(f"group descriptor size {descriptor_size} is invalid")
    blocks_count = blocks_lo | ((blocks_hi << 32) if is_64bit else 0)
    if blocks_count * block_size > size * 2 + block_size * 16 and size:
        raise Ext4Error(f"{blocks_count} blocks of {block_size} bytes do not fit in the "
                        f"{size}-byte partition")
    label = raw[0x78:0x88].split(b"\0", 1)[0].decode("utf-8", "replace")
    return Superblock(block_size, inodes_count, blocks_count, inodes_per_group, inode_size,
                      first_data_block, descriptor_size, label)


XATTR_MAGIC: Final = 0xEA020000
XATTR_SYSTEM: Final = 7


def _inline_xattr(inode: Inode) -> bytes:
    """The value of the in-inode ``system.data`` attribute: inline data beyond i_block."""
    extra = inode.extra
    if len(extra) < 4 or struct.unpack_from("<I", extra, 0)[0] != XATTR_MAGIC:
        return b""
    entries = extra[4:]
    position = 0
    while position + 16 <= len(entries):
        name_len, name_index, value_offset, _, value_size = struct.unpack_from(
            "<BBHII", entries, position)
        if name_len == 0 and name_index == 0:
            break
        name = entries[position + 16: position + 16 + name_len]
        if name_index == XATTR_SYSTEM and name == b"data":
            value = entries[value_offset: value_offset + value_size]
            if len(value) != value_size:
                raise Ext4Error(f"inode {inode.number}: inline data attribute is cut short")
            return value
        position += (16 + name_len + 3) // 4 * 4
    return b""


class Ext4Volume:
    """One ext4 file system, read on demand; paths are absolute, '/'-separated."""

    def __init__(self, read_at: ReadAt, size: int) -> None:
        self._read_at = read_at
        self.size = size
        self.superblock = read_superblock(read_at, size)
        self._table_cache: dict[int, int] = {}

    @property
    def block_size(self) -> int:
        return self.superblock.block_size

    def _read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or (self.size and offset + length > self.size):
            raise Ext4Error(f"{what} lies outside the file system (offset {offset})")
        data = self._read_at(offset, length)
        if len(data) != length:
            raise Ext4Error(f"{what} is cut short at offset {offset}")
        return data

    def _block(self, number: int, what: str) -> bytes:
        if not 0 <= number < self.superblock.blocks_count:
            raise Ext4Error(f"{what}: block {number} is beyond the file system's "
                            f"{self.superblock.blocks_count} blocks")
        return self._read(number * self.block_size, self.block_size, what)

    def _inode_table(self, group: int) -> int:
        cached = self._table_cache.get(group)
        if cached is not None:
            return cached
        sb = self.superblock
        table_start = (sb.first_data_block + 1) * sb.block_size
        raw = self._read(table_start + group * sb.descriptor_size, sb.descriptor_size,
                         f"group descriptor {group}")
        (low,) = struct.unpack_from("<I", raw, 0x8)
        high = struct.unpack_from("<I", raw, 0x28)[0] if sb.descriptor_size >= 64 else 0
        table = low | (high << 32)
        if len(self._table_cache) < 4096:
            self._table_cache[group] = table
        return table

    def inode(self, number: int) -> Inode:
        sb = self.superblock
        if not 1 <= number <= sb.inodes_count:
            raise Ext4Error(f"inode {number} is out of range (1..{sb.inodes_count})")
        group, index = divmod(number - 1, sb.inodes_per_group)
        offset = self._inode_table(group) * sb.block_size + index * sb.inode_size
        raw = self._read(offset, sb.inode_size, f"inode {number}")
        mode, _, size_lo = struct.unpack_from("<HHI", raw, 0)
        (blocks_lo,) = struct.unpack_from("<I", raw, 0x1C)
        (flags,) = struct.unpack_from("<I", raw, 0x20)
        (size_hi,) = struct.unpack_from("<I", raw, 0x6C)
        extra = b""
        if len(raw) > 0x82:
            (extra_size,) = struct.unpack_from("<H", raw, 0x80)
            if 128 + extra_size <= len(raw):
                extra = raw[128 + extra_size:]
        return Inode(number, mode, size_lo | (size_hi << 32), flags, raw[0x28:0x28 + 60],
                     blocks_lo, extra)

    # -- file data ------------------------------------------------------------------------

    def _extents(self, node: bytes, depth_left: int, seen: list[int]
                 ) -> Iterator[tuple[int, int, int, bool]]:
        """(logical block, physical block, length, initialized) in tree order."""
        magic, entries, maximum, depth = struct.unpack_from("<HHHH", node, 0)
        if magic != EXTENT_MAGIC:
            raise Ext4Error(f"extent node magic {magic:#06x}, expected {EXTENT_MAGIC:#06x}")
        if entries > maximum or 12 + entries * 12 > len(node):
            raise Ext4Error(f"extent node claims {entries} entries (room for {maximum})")
        if depth > depth_left:
            raise Ext4Error(f"extent tree deeper than {MAX_EXTENT_DEPTH}")
        for index in range(entries):
            seen[0] += 1
            if seen[0] > MAX_EXTENTS:
                raise Ext4Error(f"more than {MAX_EXTENTS} extents in one file")
            at = 12 + index * 12
            if depth == 0:
                logical, length, start_hi, start_lo = struct.unpack_from("<IHHI", node, at)
                initialized = length <= 32768
                yield logical, start_lo | (start_hi << 32), length if initialized else (
                    length - 32768), initialized
            else:
                logical, leaf_lo, leaf_hi = struct.unpack_from("<IIH", node, at)
                child = self._block(leaf_lo | (leaf_hi << 32), "extent index block")
                yield from self._extents(child, depth - 1, seen)

    def _mapped_blocks(self, inode: Inode, count: int) -> Iterator[tuple[int, int]]:
        """(logical, physical) for a block-mapped (ext2/ext3) file; 0 physical = hole."""
        pointers = struct.unpack("<15I", inode.block)
        per_block = self.block_size // 4
        logical = 0

        def walk(block: int, level: int) -> Iterator[int]:
            if level == 0:
                yield block
                return
            if block == 0:
                for _ in range(per_block ** level):
                    yield 0
                return
            for child in struct.unpack(f"<{per_block}I", self._block(block, "indirect block")):
                yield from walk(child, level - 1)

        sources = [(p, 0) for p in pointers[:12]] + [(pointers[12], 1), (pointers[13], 2),
                                                     (pointers[14], 3)]
        for block, level in sources:
            for physical in walk(block, level):
                if logical >= count:
                    return
                yield logical, physical
                logical += 1

    def read(self, inode: Inode, limit: int = DEFAULT_FILE_LIMIT) -> bytes:
        """The whole content of a regular file, directory or symlink (at most ``limit``)."""
        if inode.size > limit:
            raise Ext4Error(f"inode {inode.number} is {inode.size} bytes, more than the "
                            f"{limit} read here")
        size = inode.size
        if inode.flags & FLAG_INLINE_DATA:
            data = inode.block + _inline_xattr(inode)
            if size > len(data):
                raise Ext4Error(f"inode {inode.number}: {size} bytes of inline data, but the "
                                f"inode holds {len(data)}")
            return data[:size]
        if inode.is_symlink and inode.blocks_count == 0 and size < 60:
            return inode.block[:size]  # a fast symlink: the target is in i_block
        bs = self.block_size
        count = (size + bs - 1) // bs
        out = bytearray(size)
        if inode.flags & FLAG_EXTENTS:
            for logical, physical, length, initialized in self._extents(
                    inode.block, MAX_EXTENT_DEPTH, [0]):
                if not initialized or logical >= count:
                    continue
                length = min(length, count - logical)
                start = logical * bs
                data = self._read_run(physical, length)
                out[start:start + len(data)] = data[: max(0, size - start)]
        else:
            for logical, physical in self._mapped_blocks(inode, count):
                if physical:
                    start = logical * bs
                    out[start:start + bs] = self._block(physical, "data block")[: size - start]
        return bytes(out)

    def _read_run(self, physical: int, length: int) -> bytes:
        if physical + length > self.superblock.blocks_count:
            raise Ext4Error(f"extent at block {physical} (+{length}) is beyond the file "
                            f"system's {self.superblock.blocks_count} blocks")
        return self._read(physical * self.block_size, length * self.block_size, "extent")

    # -- directories and paths --------------------------------------------------------------

    def entries(self, directory: Inode) -> Iterator[tuple[str, int]]:
        """(name, inode) of each live entry; htree index blocks read as empty entries."""
        if not directory.is_dir:
            raise Ext4Error(f"inode {directory.number} is not a directory")
        data = self.read(directory, MAX_DIRECTORY_BYTES)
        if directory.flags & FLAG_INLINE_DATA:
            # Inline directories start with the parent's inode number, then entries.
            data = data[4:]
        position = 0
        while position + 8 <= len(data):
            number, rec_len, name_len = struct.unpack_from("<IHB", data, position)
            if rec_len < 8 or position + rec_len > len(data) or 8 + name_len > rec_len:
                raise Ext4Error(f"directory inode {directory.number}: a damaged entry at byte "
                                f"{position}")
            if number:
                name = data[position + 8: position + 8 + name_len]
                yield name.decode("utf-8", "surrogateescape"), number
            position += rec_len

    def lookup(self, path: str, *, follow: bool = True) -> Inode | None:
        """The inode at ``path`` (None when a part of it does not exist)."""
        parts = [p for p in path.split("/") if p and p != "."]
        if len(parts) > MAX_PATH_PARTS:
            raise Ext4Error(f"path {path!r} is too deep")
        return self._walk(parts, follow, 0)

    def _walk(self, parts: list[str], follow: bool, links: int) -> Inode | None:
        stack: list[Inode] = [self.inode(ROOT_INODE)]
        names: list[str] = []  # the path of stack[-1]
        index = 0
        while index < len(parts):
            part = parts[index]
            current = stack[-1]
            if part == "..":
                if len(stack) > 1:
                    stack.pop()
                    names.pop()
                index += 1
                continue
            if not current.is_dir:
                return None
            found = next((n for name, n in self.entries(current) if name == part), None)
            if found is None:
                return None
            child = self.inode(found)
            last = index == len(parts) - 1
            if child.is_symlink and (follow or not last):
                if links >= MAX_SYMLINKS:
                    raise Ext4Error(f"more than {MAX_SYMLINKS} symbolic links in a path")
                target = self.read(child, 4096).decode("utf-8", "surrogateescape")
                base = [] if target.startswith("/") else names
                rest = [p for p in target.split("/") if p and p != "."]
                return self._walk([*base, *rest, *parts[index + 1:]], follow, links + 1)
            stack.append(child)
            names.append(part)
            index += 1
        return stack[-1]

    def read_file(self, path: str, limit: int = DEFAULT_FILE_LIMIT) -> bytes | None:
        """A regular file's bytes, None when there is none at ``path``."""
        inode = self.lookup(path)
        if inode is None or not inode.is_file:
            return None
        return self.read(inode, limit)

    def listdir(self, path: str) -> list[str]:
        inode = self.lookup(path)
        if inode is None or not inode.is_dir:
            return []
        return [name for name, _ in self.entries(inode) if name not in (".", "..")]

    def exists(self, path: str) -> bool:
        return self.lookup(path, follow=False) is not None
