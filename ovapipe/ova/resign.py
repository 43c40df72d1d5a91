"""``invoke sign-ova``: add (or replace) the NAME.cert member of an existing OVA.

The archive is rewritten in one sequential copy: the descriptor and manifest blocks as they are,
the new signature member, then every other member's header and data blocks byte for byte (a
previous signature is dropped). Nothing is extracted; memory stays flat in the OVA's size.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from ovapipe.errors import CheckFailed, ConfigError
from ovapipe.files import atomic_writer, write_text
from ovapipe.ova.archive import END_OF_ARCHIVE, TarEntryInfo, header_blocks, padding
from ovapipe.ova.members import CERT_SUFFIX
from ovapipe.ova.reader import open_file, read_member_bytes, whole_members
from ovapipe.ova.signing import MAX_CERT_MEMBER_BYTES, Signer

COPY_BLOCK: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class SignedOva:
    path: Path
    sha256: str
    signer: str
    cert_member: str


def _stem(name: str) -> str:
    return str(PurePosixPath(name).with_suffix(""))


def _mtime(fd: int, header_offset: int) -> int:
    field = os.pread(fd, 12, header_offset + 136).split(b"\0", 1)[0].strip()
    try:
        return int(field, 8)
    except ValueError:
        return 0


def sign_ova(path: Path, signer: Signer) -> SignedOva:
    """Sign ``path`` in place (atomically); NAME.ova.sha256 beside it is rewritten if present."""
    path = Path(path)
    fd = open_file(path)
    try:
        members = whole_members(fd, path, "; not signed")
        if len(members) < 2 or not members[0].name.endswith(".ovf") or (
            members[1].name != f"{_stem(members[0].name)}.mf"
        ):
            found = ", ".join(m.name for m in members[:3]) or "nothing"
            raise ConfigError(f"{path}: sign-ova needs NAME.ovf then NAME.mf as the first "
                              f"members (ovftool's order), found {found}")
        manifest = members[1]
        manifest_bytes = read_member_bytes(fd, manifest, MAX_CERT_MEMBER_BYTES * 4)
        cert_name = f"{_stem(manifest.name)}{CERT_SUFFIX}"
        cert_bytes = signer.cert_member(manifest.name, manifest_bytes)
        # Each member's blocks run from the previous member's padded end (pax headers included).
        starts = [0, *(m.end + padding(m.size) for m in members[:-1])]
        ends = [m.end + padding(m.size) for m in members]
        keep = [(start, end) for member, start, end in zip(members, starts, ends, strict=True)
                if not member.name.lower().endswith(CERT_SUFFIX)]
        digest = hashlib.sha256()
        with atomic_writer(path) as handle:
            def write(data: bytes) -> None:
                handle.write(data)
                digest.update(data)

            def copy(start: int, end: int) -> None:
                while start < end:
                    block = os.pread(fd, min(COPY_BLOCK, end - start), start)
                    if not block:
                        raise CheckFailed(f"{path} shrank while it was being signed")
                    write(block)
                    start += len(block)

            copy(*keep[0])  # the descriptor
            copy(*keep[1])  # the manifest
            write(header_blocks(TarEntryInfo(cert_name, len(cert_bytes),
                                             _mtime(fd, manifest.header_offset))))
            write(cert_bytes + bytes(padding(len(cert_bytes))))
            for start, end in keep[2:]:
                copy(start, end)
            write(END_OF_ARCHIVE)
    finally:
        os.close(fd)
    sha256 = digest.hexdigest()
    sidecar = path.with_name(f"{path.name}.sha256")
    if sidecar.exists():
        write_text(sidecar, f"{sha256}  {path.name}\n")
    return SignedOva(path, sha256, signer.subject, cert_name)
