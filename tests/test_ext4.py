"""ovapipe.ext4 against file systems made by e2fsprogs' own `mke2fs -d DIR`, and fuzzed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovapipe.ext4 import Ext4Error, Ext4Volume
from ovapipe.ova.grains import WindowFile
from ovapipe.rootfs import (
    DPKG_STATUS,
    RootFsError,
    installed_packages,
    open_root_fs,
    parse_dpkg_status,
)
from ovapipe.testdisk import RootContent, make_test_disk


def _tree(root: Path) -> dict[str, bytes]:
    files = {
        "etc/hostname": b"node\n",
        "etc/deep/er/still/file.txt": b"deep\n",
        "var/lib/dpkg/status": b"Package: a\nStatus: install ok installed\nVersion: 1\n",
        "big.bin": os.urandom(700 * 1024),  # ext2 with 1 KiB blocks: double indirect blocks
        "empty": b"",
    }
    for index in range(400):  # enough entries for an htree (dir_index) directory
        files[f"many/entry-with-a-longish-name-{index:04d}"] = f"{index}\n".encode()
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "etc/link-abs").symlink_to("/etc/hostname")
    (root / "etc/deep/er/link-rel").symlink_to("../../hostname")
    (root / "loop").symlink_to("loop")
    (root / "long-link").symlink_to("/" + "x/" * 40 + "target")  # a slow (block) symlink
    return files


def _image(tmp_path: Path, fs_type: str, block: int, *features: str) -> tuple[Path, dict]:
    tree = tmp_path / "tree"
    tree.mkdir()
    files = _tree(tree)
    image = tmp_path / f"{fs_type}.img"
    args = ["mke2fs", "-q", "-F", "-t", fs_type, "-b", str(block), "-d", str(tree)]
    for feature in features:
        args += ["-O", feature]
    subprocess.run([*args, str(image), "8M"], check=True, capture_output=True)
    return image, files


def _volume(image: Path) -> Ext4Volume:
    data = image.read_bytes()
    return Ext4Volume(lambda offset, length: data[offset:offset + length], len(data))


@pytest.mark.parametrize("fs_type,block,features", [
    ("ext4", 4096, ()), ("ext4", 1024, ()), ("ext4", 4096, ("64bit",)),
    ("ext2", 1024, ()), ("ext3", 4096, ()), ("ext4", 4096, ("inline_data",)),
])
def test_reads_what_mke2fs_wrote(tmp_path: Path, fs_type: str, block: int,
                                 features: tuple[str, ...]) -> None:
    image, files = _image(tmp_path, fs_type, block, *features)
    volume = _volume(image)
    assert volume.block_size == block
    for name, data in files.items():
        assert volume.read_file("/" + name) == data, name
    assert volume.read_file("/etc/link-abs") == b"node\n"
    assert volume.read_file("/etc/deep/er/link-rel") == b"node\n"
    assert volume.exists("/long-link") and volume.lookup("/long-link") is None
    assert len(volume.listdir("/many")) == 400
    assert volume.read_file("/etc/absent") is None and volume.read_file("/etc") is None
    with pytest.raises(Ext4Error, match="symbolic links"):
        volume.lookup("/loop")


def test_not_ext4_and_size_limits(tmp_path: Path) -> None:
    with pytest.raises(Ext4Error, match="no ext2/3/4 superblock"):
        Ext4Volume(lambda o, n: bytes(n), 1 << 20)
    image, _ = _image(tmp_path, "ext4", 4096)
    with pytest.raises(Ext4Error, match="more than the 1000 read here"):
        _volume(image).read_file("/big.bin", limit=1000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_images_raise_ext4error_only(tmp_path_factory: pytest.TempPathFactory,
                                             data: st.DataObject) -> None:
    global _FUZZ_IMAGE
    if _FUZZ_IMAGE is None:
        image, _ = _image(tmp_path_factory.mktemp("fuzz"), "ext4", 1024)
        _FUZZ_IMAGE = image.read_bytes()[: 1 << 20]
    raw = bytearray(_FUZZ_IMAGE)
    # Damage the metadata: superblock, group descriptors, inode table, directory blocks.
    for _ in range(data.draw(st.integers(1, 24))):
        position = data.draw(st.integers(1024, 300 * 1024))
        raw[position] = data.draw(st.integers(0, 255))
    blob = bytes(raw)
    try:
        volume = Ext4Volume(lambda o, n: blob[o:o + n], len(blob))
        for path in ("/etc/hostname", "/var/lib/dpkg/status", "/many", "/etc/link-abs",
                     "/big.bin"):
            inode = volume.lookup(path)
            if inode is not None and (inode.is_file or inode.is_dir):
                volume.read(inode, 4 << 20)
        volume.listdir("/many")
    except Ext4Error as exc:
        assert exc.message


_FUZZ_IMAGE: bytes | None = None


# ---- the root file system of a test disk, through its VMDK grains -------------------------


def test_packages_of_the_test_disk(tmp_path: Path) -> None:
    disk = make_test_disk("efi", tmp_path / "d.vmdk",
                          root=RootContent(kubernetes_version="1.29.1",
                                           containerd_version="1.7.2"))
    with disk.open("rb") as handle:
        root = open_root_fs(WindowFile(handle))
        packages = {p.name: p.version for p in installed_packages(root)}
        assert root.partition.number == 2
        assert root.volume.superblock.label == "cloudimg-rootfs"
    assert packages["kubelet"] == "1.29.1-1.1" and packages["kubectl"] == "1.29.1-1.1"
    assert packages["containerd"].startswith("1.7.2-")
    assert "removed-tool" not in packages  # deinstalled: config files only


def test_bios_disk_root_and_no_linux_partition(tmp_path: Path, bios_vmdk: Path) -> None:
    with bios_vmdk.open("rb") as handle:
        root = open_root_fs(WindowFile(handle))
        assert root.volume.read_file(DPKG_STATUS) is not None
    noise = make_test_disk("efi", tmp_path / "n.vmdk", fill_random=True)
    with noise.open("rb") as handle, pytest.raises(RootFsError, match="no ext4 root"):
        open_root_fs(WindowFile(handle))


@given(st.binary(max_size=2000))
def test_dpkg_status_parser_takes_anything(data: bytes) -> None:
    for package in parse_dpkg_status(data):
        assert package.name
