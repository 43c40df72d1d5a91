"""Read an OVA in place: member index, parsed descriptor and manifest, windows on members.

Nothing is extracted. ``read_ova`` reads the tar headers, the descriptor and the manifest;
``open_member`` gives a seekable read-only file object over one member's bytes inside the OVA,
which is what the uploader streams and what the disk checks read grains from.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ovapipe.errors import CheckFailed, ConfigError
from ovapipe.ova.archive import Member, TarScan, scan_tar
from ovapipe.ova.descriptor import (
    MAX_DESCRIPTOR_BYTES,
    Descriptor,
    DescriptorError,
    DiskRef,
    parse_descriptor,
)
from ovapipe.ova.manifest import MAX_MANIFEST_BYTES, ManifestEntry, ManifestError, parse_manifest


class OvaFormatError(CheckFailed):
    """The OVA cannot be used; ``rule`` is the validate-ova rule id that describes why."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass
class OvaIndex:
    """Where each member lies, what the descriptor says, what the manifest expects."""

    path: Path
    size: int
    members: list[Member]
    descriptor_member: Member
    descriptor: Descriptor
    manifest_member: Member | None = None
    manifest: dict[str, ManifestEntry] = field(default_factory=dict)

    def member(self, name: str) -> Member | None:
        """The first member of that name (validate-ova reports duplicates)."""
        return next((m for m in self.members if m.name == name), None)

    def disks(self) -> list[tuple[DiskRef, Member | None]]:
        """Each DiskSection disk with the member holding it (None when it is missing)."""
        result = []
        for disk in self.descriptor.disks:
            ref = self.descriptor.disk_file(disk)
            result.append((disk, self.member(ref.href) if ref else None))
        return result

    @property
    def nvram_member(self) -> Member | None:
        ref = self.descriptor.nvram_file
        return self.member(ref.href) if ref else None

    def expected_digest(self, name: str) -> ManifestEntry | None:
        """The manifest's algorithm and digest for a member, to hash it while streaming."""
        return self.manifest.get(name)


class MemberWindow(io.RawIOBase):
    """A seekable, read-only view of one member's bytes inside an OVA (positional reads)."""

    def __init__(self, fd: int, member: Member, *, owns_fd: bool = False) -> None:
        super().__init__()
        self._fd = fd
        self._owns_fd = owns_fd
        self.member = member
        self.name = member.name
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            position = offset
        elif whence == os.SEEK_CUR:
            position = self._position + offset
        elif whence == os.SEEK_END:
            position = self.member.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        remaining = self.member.size - self._position
        if remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), remaining)
        count = os.preadv(self._fd, [view[:wanted]], self.member.offset + self._position)
        self._position += count
        return count

    def close(self) -> None:
        if not self.closed and self._owns_fd:
            os.close(self._fd)
        super().close()


def open_file(path: Path | str) -> int:
    """Open an OVA for reading; a ConfigError (exit 2) when that is impossible."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path}: is a directory, not an OVA file")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path}: not a regular file (a pipe or device is no OVA)")
        return os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None


def open_member(path: Path | str, member: Member) -> io.BufferedReader:
    """A buffered, seekable window over ``member``; close it (or use ``with``) when done."""
    window = MemberWindow(open_file(path), member, owns_fd=True)
    return io.BufferedReader(window, buffer_size=1024 * 1024)


def read_member_bytes(fd: int, member: Member, limit: int) -> bytes:
    if member.size > limit:
        raise ValueError(f"'{member.name}' is {member.size} bytes, more than {limit}")
    data = os.pread(fd, member.size, member.offset)
    if len(data) != member.size:
        raise ValueError(f"'{member.name}' is shorter than its header says")
    return data


def descriptor_members(members: list[Member]) -> list[Member]:
    """The .ovf members in archive order (an OVA has one)."""
    return [m for m in members if m.name.lower().endswith(".ovf")]


def read_descriptor(fd: int, member: Member) -> Descriptor:
    """Read and parse the descriptor member; OvaFormatError names the member and the rule."""
    try:
        return parse_descriptor(read_member_bytes(fd, member, MAX_DESCRIPTOR_BYTES))
    except DescriptorError as exc:
        raise OvaFormatError(exc.rule, f"{member.name}: {exc.message}") from None
    except ValueError as exc:
        raise OvaFormatError("descriptor.invalid", f"{member.name}: {exc}") from None


def read_manifest(fd: int, member: Member) -> dict[str, ManifestEntry]:
    """Read and parse the manifest member; OvaFormatError (manifest.invalid) names it."""
    try:
        return parse_manifest(read_member_bytes(fd, member, MAX_MANIFEST_BYTES))
    except (ManifestError, ValueError) as exc:
        raise OvaFormatError("manifest.invalid", f"{member.name}: {exc}") from None


def find_manifest(members: list[Member], descriptor: Member | None) -> Member | None:
    """NAME.mf beside NAME.ovf, else the only .mf member."""
    manifests = [m for m in members if m.name.lower().endswith(".mf") and m.kind == "file"]
    if descriptor is not None:
        stem = str(PurePosixPath(descriptor.name).with_suffix(""))
        for member in manifests:
            if str(PurePosixPath(member.name).with_suffix("")) == stem:
                return member
    return manifests[0] if len(manifests) == 1 else None


def scan_file(fd: int) -> TarScan:
    with os.fdopen(os.dup(fd), "rb", buffering=0) as handle:
        return scan_tar(handle)


def whole_members(fd: int, path: Path, refusal: str = "") -> list[Member]:
    """The members of a complete archive; CheckFailed (exit 1) for an unreadable or cut one."""
    scan = scan_file(fd)
    if scan.unreadable or scan.truncated:
        raise CheckFailed(f"{path}: {scan.unreadable or scan.truncated}{refusal}")
    return scan.members


def read_ova(path: Path | str) -> OvaIndex:
    """Index an OVA: tar members, descriptor, manifest. Raises OvaFormatError with a rule id.

    This checks only what reading needs; ``ovapipe.validators.ova.validate_ova`` is the gate.
    """
    path = Path(path)
    fd = open_file(path)
    try:
        scan = scan_file(fd)
        if scan.unreadable:
            raise OvaFormatError("archive.unreadable", f"{path}: {scan.unreadable}")
        if scan.truncated:
            raise OvaFormatError("archive.truncated", f"{path}: {scan.truncated}")
        descriptors = descriptor_members(scan.members)
        if not descriptors:
            raise OvaFormatError("archive.no-descriptor", f"{path}: no .ovf member")
        descriptor_member = descriptors[0]
        descriptor = read_descriptor(fd, descriptor_member)
        manifest_member = find_manifest(scan.members, descriptor_member)
        manifest = read_manifest(fd, manifest_member) if manifest_member is not None else {}
        return OvaIndex(
            path=path, size=scan.file_size, members=scan.members,
            descriptor_member=descriptor_member, descriptor=descriptor,
            manifest_member=manifest_member, manifest=manifest,
        )
    finally:
        os.close(fd)
