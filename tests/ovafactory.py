"""Build OVAs for tests from parts, with Python's tarfile (an independent writer)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

OVF_NAME = "node.ovf"
MF_NAME = "node.mf"
DISK_NAME = "node-disk1.vmdk"


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""


def descriptor_for(ovf_template: str, disk: bytes, capacity: int = 64 * 1024 * 1024) -> str:
    """The ovapipe-written descriptor, re-pointed at a disk of this size and name."""
    return ovf_template.format(size=len(disk), capacity=capacity, disk=DISK_NAME)


def manifest_for(entries: Sequence[Entry], algorithm: str = "sha256") -> bytes:
    lines = []
    listed: set[str] = set()
    for entry in entries:
        if entry.type == tarfile.REGTYPE and not entry.name.endswith(".mf"):
            if entry.name in listed:
                continue
            listed.add(entry.name)
            digest = hashlib.new(algorithm, entry.data).hexdigest()
            lines.append(f"{algorithm.upper()}({entry.name})= {digest}\n")
    return "".join(lines).encode()


def write_tar(path: Path, entries: Sequence[Entry], fmt: int = tarfile.USTAR_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.mtime = 1_700_000_000
            info.mode = 0o644
            if entry.type == tarfile.REGTYPE:
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    return path


def make_ova(
    path: Path,
    ovf: str | bytes,
    disk: bytes | None,
    *,
    extra: Sequence[Entry] = (),
    manifest: bytes | bool | None = True,
    algorithm: str = "sha256",
    disk_first: bool = False,
    fmt: int = tarfile.USTAR_FORMAT,
) -> Path:
    """OVF, manifest (computed unless given or False), disk, extra members."""
    ovf_bytes = ovf.encode() if isinstance(ovf, str) else ovf
    payload = [Entry(OVF_NAME, ovf_bytes)]
    if disk is not None:
        payload.append(Entry(DISK_NAME, disk))
    payload.extend(extra)
    if disk_first and disk is not None:
        payload = [payload[1], payload[0], *payload[2:]]
    if manifest is True:
        manifest_bytes: bytes | None = manifest_for(payload, algorithm)
    elif manifest is False or manifest is None:
        manifest_bytes = None
    else:
        manifest_bytes = manifest
    entries = list(payload)
    if manifest_bytes is not None:
        entries.insert(1, Entry(MF_NAME, manifest_bytes))
    return write_tar(path, entries, fmt)


def rewrite_disk(vmdk: Path, out: Path, edit: Callable[[Path], None]) -> bytes:
    """Convert a VMDK to raw, let ``edit`` change the raw file, convert back (streamOptimized)."""
    raw = out.with_suffix(".raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vmdk), str(raw)], check=True)
    edit(raw)
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
         str(raw), str(out)],
        check=True,
    )
    raw.unlink()
    return out.read_bytes()


def zero_range(raw: Path, offset: int, length: int) -> None:
    with raw.open("r+b") as handle:
        handle.seek(offset)
        handle.write(bytes(length))


def replace_esp_file(raw: Path, esp_offset: int, target: str, content: bytes) -> None:
    """Overwrite a file on the FAT file system at ``esp_offset`` (mtools, no mounting)."""
    source = raw.with_name("replacement.bin")
    source.write_bytes(content)
    subprocess.run(
        ["mcopy", "-o", "-i", f"{raw}@@{esp_offset}", str(source), f"::/{target}"], check=True,
    )
    source.unlink()


def arm64_pe() -> bytes:
    """A minimal PE header for machine 0xAA64 (aarch64): a loader of the wrong architecture."""
    image = bytearray(512)
    image[0:2] = b"MZ"
    image[0x3C:0x40] = (0x40).to_bytes(4, "little")
    image[0x40:0x44] = b"PE\0\0"
    image[0x44:0x46] = (0xAA64).to_bytes(2, "little")
    return bytes(image)


def read_members(path: Path) -> list[Entry]:
    """Every member of a (small) test OVA, in order, read with tarfile."""
    with tarfile.open(path) as archive:
        result = []
        for info in archive.getmembers():
            handle = archive.extractfile(info)
            assert handle is not None
            result.append(Entry(info.name, handle.read()))
        return result
