"""The OVA's tar layer: scan member headers in place, write deterministic ustar archives.

Reading never extracts: ``scan_tar`` walks the 512-byte headers, seeking over member data, and
records where each member's bytes lie in the file. ustar, POSIX pax (``path``/``size``
records) and GNU long names are understood, as written by ovftool, GNU tar and Go's
archive/tar (govc).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO, Final, Literal

BLOCK: Final = 512
# ustar's 11 octal digits hold sizes below 8 GiB; bigger members get a pax size record.
USTAR_MAX_SIZE: Final = 8**11 - 1
MAX_MEMBERS: Final = 10_000
MAX_EXTENDED_HEADER: Final = 1 << 20

MemberKind = Literal["file", "directory", "symlink", "hardlink", "device", "fifo", "other"]
_KINDS: Final[dict[bytes, MemberKind]] = {
    b"0": "file", b"\0": "file", b"7": "file", b"5": "directory", b"2": "symlink",
    b"1": "hardlink", b"3": "device", b"4": "device", b"6": "fifo",
}


@dataclass(frozen=True)
class Member:
    """One tar member: its name and where its data lies in the archive file."""

    name: str
    offset: int  # of the first data byte
    size: int
    kind: MemberKind = "file"
    header_offset: int = 0
    link_target: str = ""

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass
class TarScan:
    """Members found in order, and the problem that stopped the scan (if any)."""

    members: list[Member] = field(default_factory=list)
    truncated: str | None = None  # the archive ends inside a header or a member's data
    unreadable: str | None = None  # not a tar, or a damaged header
    file_size: int = 0


class _ScanStop(Exception):
    def __init__(self, kind: Literal["truncated", "unreadable"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _number(field_bytes: bytes, what: str, header_offset: int) -> int:
    """A numeric header field: NUL/space terminated octal, or GNU base-256."""
    if field_bytes and field_bytes[0] & 0x80:
        value = int.from_bytes(field_bytes[1:], "big")
        if field_bytes[0] & 0x40:
            raise _ScanStop("unreadable", f"negative {what} in the header at {header_offset}")
        return value
    text = field_bytes.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _ScanStop(
            "unreadable", f"{what} field {text[:16]!r} is not octal in the header at offset "
            f"{header_offset}"
        ) from None


def _text(field_bytes: bytes) -> str:
    return field_bytes.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(header: bytes, header_offset: int) -> bool:
    try:
        stored = _number(header[148:156], "checksum", header_offset)
    except _ScanStop:
        return False
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    signed = sum(b - 256 if b > 127 else b for b in header[:148]) + 8 * 32 + sum(
        b - 256 if b > 127 else b for b in header[156:]
    )
    return stored in (unsigned, signed)


def _pax_records(data: bytes, header_offset: int) -> dict[str, str]:
    records: dict[str, str] = {}
    position = 0
    while position < len(data):
        if not data[position:].strip(b"\0"):
            break
        space = data.find(b" ", position)
        if space < 0:
            raise _ScanStop("unreadable", f"bad pax header at offset {header_offset}")
        try:
            length = int(data[position:space])
        except ValueError:
            raise _ScanStop("unreadable", f"bad pax record length at {header_offset}") from None
        record = data[space + 1 : position + length]
        if length <= 0 or position + length > len(data) or not record.endswith(b"\n"):
            raise _ScanStop("unreadable", f"bad pax record at offset {header_offset}")
        key, sep, value = record[:-1].partition(b"=")
        if not sep:
            raise _ScanStop("unreadable", f"bad pax record at offset {header_offset}")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def _pax_size(text: str, header_offset: int) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise _ScanStop("unreadable", f"bad pax size {text[:20]!r} at offset {header_offset}")
    return int(text)


def _read_exact(handle: BinaryIO, offset: int, length: int, file_size: int, what: str) -> bytes:
    if offset + length > file_size:
        raise _ScanStop("truncated", f"the archive ends inside {what} at offset {offset}")
    handle.seek(offset)
    data = handle.read(length)
    if len(data) != length:
        raise _ScanStop("truncated", f"the archive ends inside {what} at offset {offset}")
    return data


# Magic numbers of the compressors an OVA is sometimes (wrongly) passed through.
COMPRESSION_MAGIC: Final = (
    (b"\x1f\x8b", "gzip", "gunzip -c"),
    (b"\xfd7zXZ\x00", "xz", "xz -dc"),
    (b"\x28\xb5\x2f\xfd", "zstd", "zstd -dc"),
    (b"BZh", "bzip2", "bunzip2 -c"),
)


def compressed_as(head: bytes) -> str | None:
    """'gzip-compressed (...)' when ``head`` starts like a compressed stream, else None."""
    for magic, name, command in COMPRESSION_MAGIC:
        if head.startswith(magic):
            return (
                f"the file is {name}-compressed, not a tar archive: an OVA is an uncompressed "
                f"tar (decompress it first, e.g. {command} FILE > NAME.ova)"
            )
    return None


def _not_tar(handle: BinaryIO, fallback: str) -> _ScanStop:
    handle.seek(0)
    return _ScanStop("unreadable", compressed_as(handle.read(8)) or fallback)


def scan_tar(handle: BinaryIO) -> TarScan:
    """Walk the headers of a tar file without reading member data."""
    handle.seek(0, os.SEEK_END)
    file_size = handle.tell()
    scan = TarScan(file_size=file_size)
    position = 0
    pending_name: str | None = None
    pending_size: int | None = None
    try:
        if file_size < BLOCK:
            raise _not_tar(handle, f"{file_size} bytes: too short to be a tar archive")
        while True:
            if position == file_size:
                break  # no end-of-archive blocks: tolerated, as GNU tar does
            header = _read_exact(handle, position, BLOCK, file_size, "a member header")
            if header == bytes(BLOCK):
                break
            if not _checksum_ok(header, position):
                mismatch = f"no valid tar header at offset {position} (checksum mismatch)"
                raise _not_tar(handle, mismatch) if position == 0 else _ScanStop(
                    "unreadable", mismatch
                )
            typeflag = header[156:157]
            size = _number(header[124:136], "size", position)
            data_offset = position + BLOCK
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
            if typeflag in (b"x", b"g", b"L", b"K"):
                if size > MAX_EXTENDED_HEADER:
                    raise _ScanStop("unreadable", f"extended header of {size} bytes at {position}")
                data = _read_exact(handle, data_offset, size, file_size, "an extended header")
                if typeflag == b"x":
                    records = _pax_records(data, position)
                    pending_name = records.get("path", pending_name)
                    if "size" in records:
                        pending_size = _pax_size(records["size"], position)
                elif typeflag == b"L":
                    pending_name = _text(data)
                position = data_offset + padded
                continue
            name = _text(header[0:100])
            if header[257:263] == b"ustar\0":  # POSIX; GNU keeps atime/ctime there
                prefix = _text(header[345:500])
                if prefix:
                    name = f"{prefix}/{name}"
            if pending_name is not None:
                name, pending_name = pending_name, None
            if pending_size is not None:
                size, pending_size = pending_size, None
                padded = (size + BLOCK - 1) // BLOCK * BLOCK
            while name.startswith("./"):
                name = name[2:]  # "./x" and "x" are the same member to tar
            kind = _KINDS.get(typeflag, "other")
            if kind in ("symlink", "hardlink", "device", "fifo"):
                size, padded = 0, 0  # no data blocks follow these, whatever the size field says
            member = Member(
                name=name, offset=data_offset, size=size, kind=kind, header_offset=position,
                link_target=_text(header[157:257]),
            )
            scan.members.append(member)
            if len(scan.members) > MAX_MEMBERS:
                raise _ScanStop("unreadable", f"more than {MAX_MEMBERS} members")
            if data_offset + size > file_size:
                raise _ScanStop(
                    "truncated",
                    f"member '{name}' declares {size} bytes but the archive ends "
                    f"{file_size - data_offset} bytes into its data",
                )
            position = data_offset + padded
            if position > file_size:
                position = file_size
    except _ScanStop as stop:
        if stop.kind == "truncated":
            scan.truncated = stop.message
        else:
            scan.unreadable = stop.message
    return scan


# ---- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TarEntryInfo:
    """What goes into a member header; ownership and mode are fixed for reproducible output."""

    name: str
    size: int
    mtime: int
    mode: int = 0o644


def is_safe_member_name(name: str) -> bool:
    """A relative path that stays inside the archive: no '/' start, no '..', no backslash."""
    return bool(name) and not name.startswith("/") and "\\" not in name and (
        ".." not in name.split("/")
    )


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _split_name(name: str) -> tuple[bytes, bytes]:
    encoded = name.encode()
    if len(encoded) <= 100:
        return encoded, b""
    cut = encoded.rfind(b"/", 0, 156)
    if cut <= 0 or len(encoded) - cut - 1 > 100:
        raise ValueError(f"member name too long for ustar: {name!r}")
    return encoded[cut + 1 :], encoded[:cut]


def _header(name: bytes, prefix: bytes, size: int, mtime: int, mode: int, typeflag: bytes) -> bytes:
    header = bytearray(BLOCK)
    header[0 : len(name)] = name
    header[100:108] = _octal(mode, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _octal(size, 12)
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[257:263] = b"ustar\0"
    header[263:265] = b"00"
    header[345 : 345 + len(prefix)] = prefix
    checksum = sum(header)
    header[148:156] = f"{checksum:06o}".encode() + b"\0 "
    return bytes(header)


def header_blocks(entry: TarEntryInfo) -> bytes:
    """The header block(s) for one regular file member (a pax record above 8 GiB)."""
    if not is_safe_member_name(entry.name):
        raise ValueError(f"not a safe relative member name: {entry.name!r}")
    name, prefix = _split_name(entry.name)
    blocks = b""
    size_field = entry.size
    if entry.size > USTAR_MAX_SIZE:
        body = f"size={entry.size}\n"
        length = len(body) + 3
        while len(f"{length} {body}") != length:
            length += 1
        record = f"{length} {body}".encode()
        blocks += _header(b"PaxHeader", b"", len(record), entry.mtime, 0o644, b"x")
        blocks += record + bytes(padding(len(record)))
        size_field = 0
    return blocks + _header(name, prefix, size_field, entry.mtime, entry.mode, b"0")


def padding(size: int) -> int:
    """Zero bytes after ``size`` data bytes up to the next 512-byte block."""
    return -size % BLOCK


END_OF_ARCHIVE: Final = bytes(2 * BLOCK)

