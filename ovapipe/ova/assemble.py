"""Assemble an OVA from streamOptimized disks and build facts.

Layout: NAME.ovf, NAME.mf (SHA256), NAME.cert when signed (ovapipe.ova.signing), the disks,
an optional nvram file, as one ustar archive
with fixed ownership, mode and mtime (the build timestamp): the same inputs always give the
same bytes. NAME.ova and NAME.ova.sha256 are written to temporary names and renamed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from ovapipe.errors import ConfigError
from ovapipe.files import atomic_writer, sha256_file, write_text
from ovapipe.ova.archive import END_OF_ARCHIVE, TarEntryInfo, header_blocks, padding
from ovapipe.ova.descriptor import DescriptorSpec, DiskEntry, FileEntry, write_descriptor
from ovapipe.ova.facts import BuildFacts, HardwareSizes
from ovapipe.ova.manifest import format_manifest
from ovapipe.ova.members import CERT_SUFFIX, SBOM_SUFFIX
from ovapipe.ova.vmdk import VmdkError, read_vmdk_header

if TYPE_CHECKING:
    from ovapipe.ova.signing import Signer

COPY_BLOCK: Final = 4 * 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")


@dataclass(frozen=True)
class AssembledOva:
    path: Path
    sha256_path: Path
    sha256: str
    size: int
    descriptor: bytes
    members: tuple[str, ...]
    signer: str | None = None  # the signing certificate's subject


@dataclass(frozen=True)
class _Input:
    source: Path
    member: str
    size: int
    sha256: str
    capacity_bytes: int = 0


def _disk_input(path: Path, member: str) -> _Input:
    try:
        with path.open("rb") as handle:
            header = read_vmdk_header(handle)
    except OSError as exc:
        raise ConfigError(f"disk {path}: {exc.strerror}") from None
    except VmdkError as exc:
        raise ConfigError(f"disk {path}: {exc.message}") from None
    if not header.stream_optimized:
        raise ConfigError(
            f"disk {path} is not a streamOptimized VMDK ({header.why_not_stream_optimized()}); "
            "convert it with `qemu-img convert -O vmdk -o subformat=streamOptimized`"
        )
    return _Input(path, member, path.stat().st_size, sha256_file(path), header.capacity_bytes)


class _HashingWriter:
    def __init__(self, handle: IO[Any]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)


def _write_member(out: _HashingWriter, name: str, data: bytes, mtime: int) -> None:
    out.write(header_blocks(TarEntryInfo(name, len(data), mtime)))
    out.write(data + bytes(padding(len(data))))


def _copy_member(out: _HashingWriter, item: _Input, mtime: int) -> None:
    out.write(header_blocks(TarEntryInfo(item.member, item.size, mtime)))
    buffer = bytearray(COPY_BLOCK)
    view = memoryview(buffer)
    copied = 0
    with item.source.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            out.write(view[:count])
            copied += count
    if copied != item.size:
        raise ConfigError(f"{item.source} changed size while it was being packed")
    out.write(bytes(padding(item.size)))


def assemble_ova(
    out_dir: Path,
    name: str,
    disks: Sequence[Path],
    facts: BuildFacts,
    *,
    hardware: HardwareSizes | None = None,
    nvram: Path | None = None,
    signer: Signer | None = None,
    sbom: bytes | None = None,
) -> AssembledOva:
    """Write ``out_dir/NAME.ova`` and ``NAME.ova.sha256``; the first disk is the boot disk.

    ``sbom`` (SPDX JSON) becomes the last member, ``NAME.spdx.json``, listed in the manifest.
    """
    hardware = hardware or HardwareSizes()
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"OVA name {name!r}: use letters, digits, '.', '_', '+', '-' (at most 80)"
        )
    if not disks:
        raise ConfigError("an OVA needs at least one disk")
    facts.check()
    hardware.check()
    inputs = [
        _disk_input(Path(disk), f"{name}-disk{index}.vmdk")
        for index, disk in enumerate(disks, start=1)
    ]
    nvram_input = None
    if nvram is not None:
        nvram = Path(nvram)
        if not nvram.is_file():
            raise ConfigError(f"nvram file {nvram} does not exist")
        nvram_input = _Input(nvram, f"{name}.nvram", nvram.stat().st_size, sha256_file(nvram))

    descriptor = write_descriptor(DescriptorSpec(
        name=name, vmx=facts.vmx, firmware=facts.firmware, secure_boot=facts.secure_boot,
        os_type=hardware.os_type, os_cim_id=hardware.os_cim_id, cpus=hardware.cpus,
        memory_mb=hardware.memory_mb, network=hardware.network,
        disks=tuple(DiskEntry(i.member, i.size, i.capacity_bytes) for i in inputs),
        nvram=FileEntry(nvram_input.member, nvram_input.size) if nvram_input else None,
        product=f"{facts.distro_name} {facts.distro_version} Kubernetes "
        f"{facts.kubernetes_version} node image",
        vendor="ovapipe", version=facts.image_version,
        full_version=f"{facts.image_version} ({facts.build_date}, ovapipe "
        f"{facts.ovapipe_version} {facts.git_commit})",
        properties=facts.properties(),
    ))
    descriptor_name = f"{name}.ovf"
    payload = [*inputs, *([nvram_input] if nvram_input else [])]
    trailer = () if sbom is None else ((f"{name}{SBOM_SUFFIX}", sbom),)
    manifest = format_manifest([
        (descriptor_name, hashlib.sha256(descriptor).hexdigest()),
        *((item.member, item.sha256) for item in payload),
        *((member, hashlib.sha256(data).hexdigest()) for member, data in trailer),
    ])

    manifest_name = f"{name}.mf"
    signed = () if signer is None else ((f"{name}{CERT_SUFFIX}",
                                         signer.cert_member(manifest_name, manifest)),)
    ova_path = Path(out_dir) / f"{name}.ova"
    with atomic_writer(ova_path) as handle:
        out = _HashingWriter(handle)
        _write_member(out, descriptor_name, descriptor, facts.build_timestamp)
        _write_member(out, manifest_name, manifest, facts.build_timestamp)
        for member_name, data in signed:
            _write_member(out, member_name, data, facts.build_timestamp)
        for item in payload:
            _copy_member(out, item, facts.build_timestamp)
        for member_name, data in trailer:
            _write_member(out, member_name, data, facts.build_timestamp)
        out.write(END_OF_ARCHIVE)
    sha256 = out.digest.hexdigest()
    sha256_path = ova_path.with_name(f"{ova_path.name}.sha256")
    write_text(sha256_path, f"{sha256}  {ova_path.name}\n")
    return AssembledOva(
        path=ova_path, sha256_path=sha256_path, sha256=sha256, size=out.size,
        descriptor=descriptor,
        members=(descriptor_name, manifest_name, *(n for n, _ in signed),
                 *(item.member for item in payload), *(n for n, _ in trailer)),
        signer=signer.subject if signer else None,
    )
