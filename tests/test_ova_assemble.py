"""assemble_ova writes a deterministic OVA that read_ova indexes without extracting."""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from ovapipe.errors import ConfigError
from ovapipe.ova import BuildFacts, HardwareSizes, assemble_ova, open_member, read_ova
from ovapipe.ova.descriptor import parse_descriptor
from ovapipe.testdisk import make_test_disk


def test_layout_order_and_ustar(efi_ova: Path) -> None:
    with tarfile.open(efi_ova) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == [
        "ubuntu-2004-efi-test.ovf", "ubuntu-2004-efi-test.mf", "ubuntu-2004-efi-test-disk1.vmdk",
    ]
    assert all(m.isreg() and m.uid == 0 and m.gid == 0 and m.mode == 0o644 for m in members)
    assert {m.mtime for m in members} == {1_764_320_000}
    header = efi_ova.read_bytes()[:512]
    assert header[257:263] == b"ustar\0"


def test_sha256_sidecar(efi_ova: Path) -> None:
    sidecar = efi_ova.with_name(efi_ova.name + ".sha256").read_text()
    assert sidecar == f"{hashlib.sha256(efi_ova.read_bytes()).hexdigest()}  {efi_ova.name}\n"


def test_descriptor_content(efi_ova: Path, efi_vmdk: Path, build_facts: BuildFacts) -> None:
    index = read_ova(efi_ova)
    descriptor = index.descriptor
    assert descriptor.vmx_text == "vmx-17"
    assert descriptor.firmware == "efi" and descriptor.secure_boot is False
    assert descriptor.os_type == "ubuntu64Guest"
    assert not descriptor.has_boot_order_section
    assert descriptor.networks == ["nic0"]
    subtypes = {item.resource_type: item.subtype for item in descriptor.items}
    assert subtypes[6] == "VirtualSCSI" and subtypes[10] == "VmxNet3"
    assert descriptor.cpus == 2
    (disk, member), = index.disks()
    assert disk.capacity_bytes == 64 * 1024 * 1024
    assert member is not None and member.size == efi_vmdk.stat().st_size
    assert descriptor.product["KUBERNETES_SEMVER"] == "v1.27.3"
    assert descriptor.product["BUILD_DATE"] == "2025-11-28T08:53:20Z"
    assert descriptor.product == dict(build_facts.properties())
    raw = open_member(efi_ova, index.descriptor_member).read()
    assert b"BootOrderSection" not in raw
    assert b'vmw:key="firmware" vmw:value="efi"' in raw


def test_manifest_lists_everything_with_sha256(efi_ova: Path) -> None:
    index = read_ova(efi_ova)
    assert set(index.manifest) == {m.name for m in index.members} - {"ubuntu-2004-efi-test.mf"}
    for member in index.members:
        entry = index.expected_digest(member.name)
        if entry is None:
            continue
        assert entry.algorithm == "SHA256"
        with open_member(efi_ova, member) as window:
            digest = entry.new_hash()
            digest.update(window.read())
        assert entry.matches(digest.hexdigest())


def test_member_window_is_a_seekable_view(efi_ova: Path, efi_vmdk: Path) -> None:
    index = read_ova(efi_ova)
    _, member = index.disks()[0]
    assert member is not None
    original = efi_vmdk.read_bytes()
    with open_member(efi_ova, member) as window:
        assert window.read(4) == b"KDMV"
        window.seek(-100, 2)
        assert window.read() == original[-100:]
        window.seek(1000)
        assert window.read(10) == original[1000:1010]
        assert window.seek(0, 2) == len(original)
        assert window.read(10) == b""


def test_byte_identical(tmp_path: Path, efi_vmdk: Path, build_facts: BuildFacts) -> None:
    first = assemble_ova(tmp_path / "a", "node", [efi_vmdk], build_facts)
    second = assemble_ova(tmp_path / "b", "node", [efi_vmdk], build_facts)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256
    later = BuildFacts(**{**build_facts.__dict__, "build_timestamp": 1_800_000_000})
    third = assemble_ova(tmp_path / "c", "node", [efi_vmdk], later)
    assert third.sha256 != first.sha256


def test_nvram_and_hardware(tmp_path: Path, efi_vmdk: Path, build_facts: BuildFacts) -> None:
    nvram = tmp_path / "vm.nvram"
    nvram.write_bytes(b"NVRAM" * 100)
    result = assemble_ova(
        tmp_path, "gpu", [efi_vmdk, efi_vmdk], build_facts,
        hardware=HardwareSizes(cpus=8, memory_mb=32768), nvram=nvram,
    )
    index = read_ova(result.path)
    assert index.nvram_member is not None and index.nvram_member.size == 500
    assert len(index.disks()) == 2
    assert index.descriptor.cpus == 8
    assert set(index.manifest) == {m.name for m in index.members} - {"gpu.mf"}


def test_refuses_bad_inputs(tmp_path: Path, efi_vmdk: Path, build_facts: BuildFacts) -> None:
    sparse = make_test_disk("efi", tmp_path / "disks" / "sparse.vmdk", subformat="monolithicSparse")
    with pytest.raises(ConfigError, match="not a streamOptimized VMDK"):
        assemble_ova(tmp_path, "x", [sparse], build_facts)
    with pytest.raises(ConfigError, match="No such file"):
        assemble_ova(tmp_path, "x", [tmp_path / "disks" / "missing.vmdk"], build_facts)
    with pytest.raises(ConfigError, match="OVA name"):
        assemble_ova(tmp_path, "../evil", [efi_vmdk], build_facts)
    with pytest.raises(ConfigError, match="at least one disk"):
        assemble_ova(tmp_path, "x", [], build_facts)
    for change, message in (
        ({"vmx": 100}, "build facts: hardware version out of range: 100"),
        ({"firmware": "uefi"}, "firmware 'uefi': expected one of efi, bios"),
        ({"build_timestamp": -1}, "before 1970"),
    ):
        with pytest.raises(ConfigError, match=message):
            assemble_ova(tmp_path, "x", [efi_vmdk], replace(build_facts, **change))
    assert not list(tmp_path.glob("*.ova*"))


def test_round_trip_of_written_descriptor(efi_ova: Path) -> None:
    index = read_ova(efi_ova)
    with open_member(efi_ova, index.descriptor_member) as window:
        again = parse_descriptor(window.read())
    assert again == index.descriptor
