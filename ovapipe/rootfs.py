"""The Linux root file system of a boot disk (a VMDK, read through its grains), and its packages.

The root partition is the first Linux partition in the GPT (or MBR) whose content is ext2/3/4;
its file system is read with ovapipe.ext4, offline, nothing mounted or extracted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from ovapipe.ext4 import Ext4Error, Ext4Volume
from ovapipe.ova.grains import GrainError, GrainReader, PositionalFile
from ovapipe.ova.partitions import Partition, PartitionError, read_partition_table

# Linux filesystem data, and the Discoverable Partitions root types of x86-64 and arm64.
LINUX_GPT_TYPES: Final = (
    UUID("0fc63daf-8483-4772-8e79-3d69d8477de4"),
    UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
    UUID("b921b045-1df0-41c3-af44-4c6f280d3fae"),
)
LINUX_MBR_TYPE: Final = 0x83
DPKG_STATUS: Final = "/var/lib/dpkg/status"
MAX_DPKG_STATUS: Final = 32 * 1024 * 1024
MAX_PACKAGES: Final = 20_000
_FIELD: Final = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*):\s?(.*)$")


class RootFsError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Package:
    """One installed dpkg package."""

    name: str
    version: str
    architecture: str = ""
    source: str = ""
    maintainer: str = ""
    homepage: str = ""


@dataclass
class RootFs:
    partition: Partition
    volume: Ext4Volume


def _is_linux(partition: Partition) -> bool:
    return partition.type in LINUX_GPT_TYPES or partition.type == LINUX_MBR_TYPE


def open_root_fs(source: PositionalFile) -> RootFs:
    """The root file system of a streamOptimized/sparse VMDK; RootFsError says why not."""
    try:
        disk = GrainReader(source)
        table = read_partition_table(disk.read_at)
    except (GrainError, PartitionError) as exc:
        raise RootFsError(f"cannot read the disk's partitions: {exc}") from None
    candidates = [p for p in table.partitions if _is_linux(p)]
    if not candidates:
        raise RootFsError(f"the {table.scheme} partition table has no Linux partition")
    problems = []
    for partition in candidates:
        try:
            return RootFs(partition, Ext4Volume(disk.part_reader(partition.offset,
                                                                partition.size), partition.size))
        except (Ext4Error, GrainError) as exc:
            message = exc.message if isinstance(exc, Ext4Error) else str(exc)
            problems.append(f"partition {partition.number}: {message}")
    raise RootFsError("no ext4 root file system: " + "; ".join(problems))


def parse_dpkg_status(data: bytes) -> list[Package]:
    """The packages dpkg calls 'install ok installed', in file order."""
    text = data.decode("utf-8", "replace")
    packages: list[Package] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # a continuation line (Description, Conffiles)
            match = _FIELD.match(line)
            if match:
                last = match.group(1).lower()
                fields[last] = match.group(2).strip()
        if not fields.get("package") or "install ok installed" not in fields.get("status", ""):
            continue
        packages.append(Package(
            name=fields["package"], version=fields.get("version", ""),
            architecture=fields.get("architecture", ""),
            source=fields.get("source", "").split(" ", 1)[0],
            maintainer=fields.get("maintainer", ""), homepage=fields.get("homepage", ""),
        ))
        if len(packages) > MAX_PACKAGES:
            raise RootFsError(f"{DPKG_STATUS} lists more than {MAX_PACKAGES} packages")
    return packages


def installed_packages(root: RootFs) -> list[Package]:
    try:
        data = root.volume.read_file(DPKG_STATUS, MAX_DPKG_STATUS)
    except Ext4Error as exc:
        raise RootFsError(f"{DPKG_STATUS}: {exc.message}") from None
    if data is None:
        raise RootFsError(f"the root file system has no {DPKG_STATUS}")
    return parse_dpkg_status(data)
