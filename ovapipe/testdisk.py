"""Small real boot disks for tests: EFI (GPT + ESP/FAT32 + BOOTX64.EFI + root) or BIOS (MBR).

Everything is built in an ordinary file with sgdisk, mkfs.vfat/mtools and mke2fs (no root, no
loop devices), then converted to a VMDK with ``qemu-img convert``.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast

from ovapipe.errors import BuildError, ConfigError
from ovapipe.ova.vmdk import MAX_VMDK_CAPACITY, SECTOR
from ovapipe.validators.disk import FALLBACK_LOADER

DiskKind = Literal["efi", "bios"]
DISK_KINDS: Final = ("efi", "bios")
Subformat = Literal["streamOptimized", "monolithicSparse"]

MIB: Final = 1024 * 1024
PARTITION_START_MIB: Final = 1
# FAT32 needs at least 65525 clusters; 40 MiB with 512-byte clusters has about 80000.
ESP_MIB: Final = 40
MIN_ROOT_MIB: Final = 4
MIN_SIZE_MIB: Final = PARTITION_START_MIB + ESP_MIB + MIN_ROOT_MIB + 1
GPT_ESP_TYPE: Final = "EF00"
GPT_LINUX_TYPE: Final = "8300"
MBR_LINUX_TYPE: Final = 0x83

# Debian's grub-efi-amd64-bin: a standalone x86-64 EFI GRUB image.
EFI_LOADER_CANDIDATES: Final = (
    Path("/usr/lib/grub/x86_64-efi/monolithic/grubx64.efi"),
    Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
)

# Fixed GUIDs and volume ids so that one kind and size always gives the same partition table.
DISK_GUID: Final = "6f766170-0000-4000-8000-000000000001"
ESP_GUID: Final = "6f766170-0000-4000-8000-000000000002"
ROOT_GUID: Final = "6f766170-0000-4000-8000-000000000003"
ROOT_FS_UUID: Final = "6f766170-0000-4000-8000-000000000004"
OS_RELEASE: Final = 'NAME="ovapipe test disk"\nID=ovapipe-test\n'
GUESTINFO_DATASOURCE: Final = (
    "# Written by ovapipe: CAPV passes user-data and metadata through VMware guestinfo.\n"
    "datasource_list: [ VMware, OVF, None ]\n"
)
# What a cleaned Ubuntu node image holds besides Kubernetes (a realistic, short dpkg list).
BASE_PACKAGES: Final = (
    ("base-files", "11ubuntu5.8", "amd64"), ("libc6", "2.31-0ubuntu9.16", "amd64"),
    ("systemd", "245.4-4ubuntu3.24", "amd64"), ("openssh-server", "1:8.2p1-4ubuntu0.11", "amd64"),
    ("cloud-init", "24.1.3-0ubuntu1~20.04.1", "all"),
    ("open-vm-tools", "2:11.3.0-2ubuntu0~ubuntu20.04.7", "amd64"),
    ("kubernetes-cni", "1.4.0-1.1", "amd64"), ("cri-tools", "1.30.1-1.1", "amd64"),
)


def _default_versions() -> tuple[str, str]:
    import json

    from ovapipe.paths import VARS_DIR

    defaults = json.loads((VARS_DIR / "defaults.json").read_text())
    return str(defaults["kubernetes_version"]), str(defaults["containerd_version"])


@dataclass(frozen=True)
class RootContent:
    """What the test disk's root file system holds: a cleaned node image by default.

    Each field can be turned into the mistake the image inspection must catch.
    """

    kubernetes_version: str = field(default_factory=lambda: _default_versions()[0])
    containerd_version: str = field(default_factory=lambda: _default_versions()[1])
    missing_packages: tuple[str, ...] = ()
    guestinfo_datasource: bool = True
    ssh_host_keys: bool = False
    machine_id: str = ""
    builder_shadow: str | None = None  # e.g. "builder:$6$...:19700:0:99999:7:::"
    extra_files: Mapping[str, str] = field(default_factory=dict)

    def dpkg_status(self) -> str:
        kube = self.kubernetes_version.removeprefix("v")
        packages = [*BASE_PACKAGES, *((name, f"{kube}-1.1", "amd64")
                                      for name in ("kubelet", "kubeadm", "kubectl")),
                    ("containerd", f"{self.containerd_version.removeprefix('v')}"
                     "-0ubuntu1~20.04.1", "amd64")]
        stanzas = []
        for name, version, arch in packages:
            if name in self.missing_packages:
                continue
            stanzas.append(
                f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
                f"Architecture: {arch}\nVersion: {version}\n"
                f"Description: {name} (ovapipe test disk)\n ovapipe's stand-in for the real "
                "package.\n"
            )
        stanzas.append("Package: removed-tool\nStatus: deinstall ok config-files\n"
                       "Version: 1.0\n")
        return "\n".join(stanzas)

    def write(self, tree: Path) -> None:
        files = {
            "etc/os-release": OS_RELEASE,
            "etc/machine-id": self.machine_id,
            "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n"
                          "sshd:x:110:65534::/run/sshd:/usr/sbin/nologin\n",
            "etc/shadow": "root:*:19700:0:99999:7:::\nsshd:*:19700:0:99999:7:::\n"
                          + (f"{self.builder_shadow}\n" if self.builder_shadow else ""),
            "etc/ssh/sshd_config": "PasswordAuthentication no\n",
            "var/lib/dpkg/status": self.dpkg_status(),
            **self.extra_files,
        }
        if self.guestinfo_datasource:
            files["etc/cloud/cloud.cfg.d/90-ovapipe-datasource.cfg"] = GUESTINFO_DATASOURCE
        if self.ssh_host_keys:
            files["etc/ssh/ssh_host_ed25519_key"] = "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            files["etc/ssh/ssh_host_ed25519_key.pub"] = "ssh-ed25519 AAAA test\n"
        for name, text in files.items():
            path = tree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        (tree / "var/lib/dbus").mkdir(parents=True, exist_ok=True)
        (tree / "var/lib/dbus/machine-id").symlink_to("/etc/machine-id")


def efi_loader_source() -> Path:
    for candidate in EFI_LOADER_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "no x86-64 EFI loader found (expected "
        f"{EFI_LOADER_CANDIDATES[0]}): install the Debian package grub-efi-amd64-bin"
    )


def _run(args: list[str]) -> None:
    if shutil.which(args[0]) is None:
        raise ConfigError(f"`{args[0]}` not found: install it (see scripts/setup)")
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise BuildError(f"`{' '.join(args)}` failed (exit {result.returncode}): {detail}")


def _write_mbr(raw: Path, start_sector: int, sector_count: int) -> None:
    """A BIOS disk's MBR: one active Linux partition, boot signature 0x55AA."""
    entry = struct.pack(
        "<B3sB3sII", 0x80, b"\xfe\xff\xff", MBR_LINUX_TYPE, b"\xfe\xff\xff",
        start_sector, sector_count,
    )
    with raw.open("r+b") as handle:
        handle.seek(440)
        handle.write(struct.pack("<I", 0x6F766170) + b"\x00\x00")  # disk signature
        handle.write(entry + b"\x00" * 48 + b"\x55\xaa")


def _fill_random(raw: Path, offset: int, length: int) -> None:
    with raw.open("r+b") as handle:
        handle.seek(offset)
        remaining = length
        while remaining:
            block = os.urandom(min(remaining, 4 * MIB))
            handle.write(block)
            remaining -= len(block)


def _root_filesystem(raw: Path, offset: int, length: int, work: Path,
                     content: RootContent) -> None:
    tree = work / "root"
    tree.mkdir()
    content.write(tree)
    blocks = length // 4096
    _run([
        "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "cloudimg-rootfs",
        "-U", ROOT_FS_UUID, "-E", f"offset={offset},root_owner=0:0", "-d", str(tree),
        str(raw), str(blocks),
    ])


def _build_raw(
    kind: DiskKind, raw: Path, size_mb: int, work: Path, fill_random: bool, loader: str | None,
    content: RootContent,
) -> None:
    try:
        with raw.open("wb") as handle:
            handle.truncate(size_mb * MIB)
    except OSError as exc:
        raise ConfigError(
            f"test disk size {size_mb} MiB: cannot make a raw image that large in "
            f"{raw.parent}: {exc.strerror}"
        ) from None
    start = PARTITION_START_MIB * MIB
    # Leave the last MiB free: GPT keeps its backup table there.
    end = (size_mb - 1) * MIB
    if kind == "efi":
        esp_end = start + ESP_MIB * MIB
        _run([
            "sgdisk", "--clear", f"--disk-guid={DISK_GUID}",
            f"--new=1:{start // SECTOR}:{esp_end // SECTOR - 1}", f"--typecode=1:{GPT_ESP_TYPE}",
            "--change-name=1:EFI System Partition", f"--partition-guid=1:{ESP_GUID}",
            f"--new=2:{esp_end // SECTOR}:{end // SECTOR - 1}", f"--typecode=2:{GPT_LINUX_TYPE}",
            "--change-name=2:root", f"--partition-guid=2:{ROOT_GUID}",
            str(raw),
        ])
        _run([
            "mkfs.vfat", "-F", "32", "-S", str(SECTOR), "-s", "1", "-n", "ESP",
            "-i", "6F766170", "--invariant", f"--offset={start // SECTOR}",
            str(raw), str(ESP_MIB * MIB // 1024),
        ])
        image = f"{raw}@@{start}"
        if loader is not None:
            parts = loader.strip("/").split("/")
            folders = ["::/" + "/".join(parts[:depth]) for depth in range(1, len(parts))]
            if folders:
                _run(["mmd", "-i", image, *folders])
            _run(["mcopy", "-i", image, str(efi_loader_source()), "::/" + "/".join(parts)])
        root_start = esp_end
    else:
        _write_mbr(raw, start // SECTOR, (end - start) // SECTOR)
        root_start = start
    if fill_random:
        _fill_random(raw, root_start, end - root_start)
    else:
        _root_filesystem(raw, root_start, end - root_start, work, content)


def convert_to_vmdk(raw: Path, out: Path, subformat: Subformat = "streamOptimized") -> Path:
    """qemu-img convert a raw image to a VMDK at a temporary name beside ``out``, then rename."""
    # The VMDK names its own extent file: keep the final name inside a temporary folder.
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        folder = tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write there ({exc.filename}: {exc.strerror})") from None
    with folder as temp:
        temp_vmdk = Path(temp) / out.name
        _run([
            "qemu-img", "convert", "-f", "raw", "-O", "vmdk",
            "-o", f"subformat={subformat},adapter_type=lsilogic", str(raw), str(temp_vmdk),
        ])
        os.replace(temp_vmdk, out)
    return out


def make_test_disk(
    kind: str,
    out: Path,
    size_mb: int = 64,
    *,
    subformat: Subformat = "streamOptimized",
    fill_random: bool = False,
    loader: str | None = FALLBACK_LOADER,
    root: RootContent | None = None,
) -> Path:
    """Build a real EFI or BIOS disk and write it to ``out`` as a VMDK.

    ``efi``: GPT, an EFI System Partition (FAT32) holding ``\\EFI\\BOOT\\BOOTX64.EFI`` from
    grub-efi-amd64-bin, and a Linux root partition (ext4). ``bios``: MBR with one active Linux
    partition and no ESP. ``fill_random`` fills the root partition with random bytes instead
    of a file system (benchmarks need disks that do not compress away). ``loader`` is where
    the EFI loader goes on the ESP (e.g. ``EFI/ubuntu/shimx64.efi``); None leaves it empty.
    ``root`` is what the root file system holds (a cleaned node image with a dpkg status).
    """
    if kind not in DISK_KINDS:
        raise ConfigError(f"test disk kind {kind!r}: expected one of {', '.join(DISK_KINDS)}")
    if size_mb < MIN_SIZE_MIB:
        raise ConfigError(f"test disk size {size_mb} MiB: at least {MIN_SIZE_MIB} MiB needed")
    if size_mb * MIB > MAX_VMDK_CAPACITY:
        raise ConfigError(
            f"test disk size {size_mb} MiB: a VMDK holds at most {MAX_VMDK_CAPACITY // MIB} MiB"
        )
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the VMDK's file name")
    with tempfile.TemporaryDirectory(prefix="ovapipe-disk-") as temp:
        work = Path(temp)
        raw = work / "disk.raw"
        _build_raw(cast(DiskKind, kind), raw, size_mb, work, fill_random, loader,
                   root or RootContent())
        return convert_to_vmdk(raw, out, subformat)
