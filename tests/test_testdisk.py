"""Test disks have the real layout: checked with sgdisk/mdir on the raw image and with ovapipe's
own readers (which tests/test_disk_readers.py checks against those tools)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ovapipe.errors import ConfigError
from ovapipe.ova.fat import FatVolume
from ovapipe.ova.grains import BytesFile, GrainReader
from ovapipe.ova.partitions import read_partition_table
from ovapipe.ova.vmdk import read_vmdk_header
from ovapipe.testdisk import ESP_MIB, make_test_disk

ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
LINUX_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"


def _raw(vmdk: Path, tmp_path: Path) -> Path:
    raw = tmp_path / f"{vmdk.stem}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vmdk), str(raw)], check=True)
    return raw


def test_efi_disk_is_stream_optimized(efi_vmdk: Path) -> None:
    with efi_vmdk.open("rb") as handle:
        header = read_vmdk_header(handle)
    assert header.stream_optimized, header.why_not_stream_optimized()
    assert header.capacity_bytes == 64 * 1024 * 1024
    info = subprocess.run(["qemu-img", "info", str(efi_vmdk)], capture_output=True, text=True)
    assert "create type: streamOptimized" in info.stdout


def test_efi_disk_has_gpt_esp_and_root(efi_vmdk: Path, tmp_path: Path) -> None:
    raw = _raw(efi_vmdk, tmp_path)
    table = subprocess.run(["sgdisk", "-p", str(raw)], capture_output=True, text=True, check=True)
    lines = [line.split() for line in table.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [(line[0], line[5]) for line in lines] == [("1", "EF00"), ("2", "8300")]
    esp_start = int(lines[0][1]) * 512
    listing = subprocess.run(
        ["mdir", "-i", f"{raw}@@{esp_start}", "-b", "::/EFI/BOOT"],
        capture_output=True, text=True, check=True,
    )
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing.stdout


def test_efi_disk_through_ovapipe_readers(efi_vmdk: Path) -> None:
    disk = GrainReader(BytesFile(efi_vmdk.read_bytes()))
    table = read_partition_table(disk.read_at)
    assert table.scheme == "GPT"
    assert [str(p.type) for p in table.partitions] == [ESP_TYPE, LINUX_TYPE]
    esp = table.partitions[0]
    assert esp.size >= (ESP_MIB - 1) * 1024 * 1024
    fs = FatVolume(lambda offset, length: disk.read_at(esp.offset + offset, length), esp.size)
    assert fs.bits == 32
    entry = fs.find("EFI/BOOT/BOOTX64.EFI")
    assert entry is not None and fs.read_head(entry, 64)[:2] == b"MZ"


def test_bios_disk_is_mbr_without_esp(bios_vmdk: Path, tmp_path: Path) -> None:
    with bios_vmdk.open("rb") as handle:
        assert read_vmdk_header(handle).stream_optimized
    table = read_partition_table(GrainReader(BytesFile(bios_vmdk.read_bytes())).read_at)
    assert table.scheme == "MBR"
    assert [p.type for p in table.partitions] == [0x83]
    raw = _raw(bios_vmdk, tmp_path)
    table = subprocess.run(["sgdisk", "-p", str(raw)], capture_output=True, text=True)
    assert "MBR: MBR only" in table.stdout or "Found invalid GPT" in table.stdout


def test_monolithic_sparse_variant(tmp_path: Path) -> None:
    disk = make_test_disk("efi", tmp_path / "sparse.vmdk", subformat="monolithicSparse")
    with disk.open("rb") as handle:
        header = read_vmdk_header(handle)
    assert header.create_type == "monolithicSparse"
    assert not header.stream_optimized


@pytest.mark.parametrize(("kind", "size"), [("ntfs", 64), ("efi", 8), ("efi", 64 * 1024**2 + 1)])
def test_bad_arguments_are_config_errors(tmp_path: Path, kind: str, size: int) -> None:
    with pytest.raises(ConfigError):
        make_test_disk(kind, tmp_path / "x.vmdk", size)
    assert list(tmp_path.iterdir()) == []


def test_invoke_test_disk(tmp_path: Path) -> None:
    out = tmp_path / "bios.vmdk"
    result = subprocess.run(
        [".venv/bin/invoke", "test-disk", "--kind", "bios", "--out", str(out)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and str(out) in result.stdout
    bad = subprocess.run(
        [".venv/bin/invoke", "test-disk", "--kind", "floppy", "--out", str(out)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_unwritable_out_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder"):
        make_test_disk("bios", tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write there"):
        make_test_disk("bios", blocker / "x.vmdk")
    assert list(tmp_path.iterdir()) == [blocker]
