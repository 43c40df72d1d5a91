"""ovapipe's own VMDK/GPT/FAT readers against the real tools that made the disks.

qemu-img's raw conversion is the reference for grains, `sgdisk -i` for GPT entries, mtools'
`mdir`/`mtype` for FAT12/16/32 directories and files. Hypothesis feeds damaged structures:
the readers raise only their own errors and never ask for more bytes than a bound.
"""

from __future__ import annotations

import random
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ovapipe.validators.disk import ESP_GPT_TYPE

from ovapipe.ova.fat import FatError, FatVolume
from ovapipe.ova.grains import BytesFile, GrainError, GrainReader, WindowFile
from ovapipe.ova.partitions import NoPartitionTable, PartitionError, read_partition_table
from ovapipe.ova.vmdk import SECTOR
from ovapipe.testdisk import ESP_MIB, MIB, convert_to_vmdk, make_test_disk

MAX_BYTES_ASKED = 64 * MIB


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def _raw(vmdk: Path, out: Path) -> bytes:
    _run("qemu-img", "convert", "-O", "raw", str(vmdk), str(out))
    return out.read_bytes()


class CountingFile(BytesFile):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked = 0

    def pread(self, length: int, offset: int) -> bytes:
        self.asked += length
        assert length <= 4 * MIB, f"a single read of {length} bytes"
        return super().pread(length, offset)


def _reader(vmdk: Path) -> tuple[GrainReader, CountingFile]:
    source = CountingFile(vmdk.read_bytes())
    return GrainReader(source), source


@pytest.mark.parametrize("subformat", ["streamOptimized", "monolithicSparse"])
def test_grains_match_qemu_img_raw(tmp_path: Path, subformat: str) -> None:
    disk = make_test_disk("efi", tmp_path / "d.vmdk", 48, subformat=subformat,  # type: ignore[arg-type]
                          fill_random=True)
    raw = _raw(disk, tmp_path / "d.raw")
    reader, _ = _reader(disk)
    assert reader.capacity == len(raw)
    rng = random.Random(18)
    spots = [(0, 4096), (len(raw) - 3000, 5000), (MIB - 100, 70_000)]
    spots += [(rng.randrange(len(raw)), rng.randrange(1, 300_000)) for _ in range(40)]
    for offset, length in spots:
        assert reader.read_at(offset, length) == raw[offset : offset + length], (offset, length)


def test_stream_with_grain_directory_in_the_footer(tmp_path: Path, efi_vmdk: Path) -> None:
    """VMware's stream layout: header says GD_AT_END, the footer before EOS holds the offset."""
    data = bytearray(efi_vmdk.read_bytes())
    header = bytes(data[:SECTOR])
    footer_marker = struct.pack("<QII", 1, 0, 3).ljust(SECTOR, b"\0")
    eos = bytes(SECTOR)
    data[56:64] = struct.pack("<Q", 0xFFFFFFFFFFFFFFFF)
    streamed = bytes(data) + footer_marker + header + eos
    raw = _raw(efi_vmdk, tmp_path / "e.raw")
    reader = GrainReader(BytesFile(streamed))
    assert reader.read_at(0, 2 * MIB) == raw[: 2 * MIB]


def test_gpt_matches_sgdisk(tmp_path: Path, efi_vmdk: Path) -> None:
    raw = tmp_path / "e.raw"
    _raw(efi_vmdk, raw)
    reader, _ = _reader(efi_vmdk)
    table = read_partition_table(reader.read_at)
    assert table.scheme == "GPT"
    assert [p.number for p in table.partitions] == [1, 2]
    for part in table.partitions:
        info = _run("sgdisk", "-i", str(part.number), str(raw))
        guid = re.search(r"Partition GUID code: (\S+)", info)
        first = re.search(r"First sector: (\d+)", info)
        last = re.search(r"Last sector: (\d+)", info)
        name = re.search(r"Partition name: '(.*)'", info)
        assert guid and first and last and name
        assert part.type == UUID(guid.group(1))
        assert part.offset == int(first.group(1)) * SECTOR
        assert part.size == (int(last.group(1)) - int(first.group(1)) + 1) * SECTOR
        assert part.name == name.group(1)
    assert table.partitions[0].type == ESP_GPT_TYPE


def test_mbr_matches_sfdisk_layout(bios_vmdk: Path) -> None:
    reader, _ = _reader(bios_vmdk)
    table = read_partition_table(reader.read_at)
    assert table.scheme == "MBR"
    assert [(p.number, p.type, p.offset) for p in table.partitions] == [(1, 0x83, MIB)]


def test_efi_check_reads_a_small_part_of_the_disk(tmp_path: Path) -> None:
    disk = make_test_disk("efi", tmp_path / "big.vmdk", 96, fill_random=True)
    reader, source = _reader(disk)
    table = read_partition_table(reader.read_at)
    esp = table.partitions[0]
    fs = FatVolume(lambda o, n: reader.read_at(esp.offset + o, n), esp.size)
    entry = fs.find("EFI/BOOT/BOOTX64.EFI")
    assert entry is not None and fs.read_head(entry, 4096)[:2] == b"MZ"
    assert source.asked < source.size // 20, (source.asked, source.size)


def _fat_image(tmp_path: Path, bits: int, mib: int, files: dict[str, bytes],
               cluster_sectors: int = 1) -> Path:
    image = tmp_path / f"fat{bits}.img"
    with image.open("wb") as handle:
        handle.truncate(mib * MIB)
    _run("mkfs.vfat", "-F", str(bits), "-s", str(cluster_sectors), "-n", "T", str(image))
    folders = sorted({"/".join(p.split("/")[:d]) for p in files
                      for d in range(1, p.count("/") + 1)})
    if folders:
        _run("mmd", "-i", str(image), *("::/" + f for f in folders))
    for number, (path, content) in enumerate(files.items()):
        source = tmp_path / f"src{number}"
        source.write_bytes(content)
        _run("mcopy", "-i", str(image), str(source), "::/" + path)
    return image


def _walk(fs: FatVolume, cluster: int = 0, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    for entry in fs.listdir(cluster):
        path = f"{prefix}/{entry.name}"
        if entry.is_directory:
            found.update(_walk(fs, entry.cluster, path))
        else:
            found[path] = entry.size
    return found


@pytest.mark.parametrize(("bits", "mib"), [(12, 2), (16, 20), (32, 40)])
def test_fat_directory_walk_matches_mdir(tmp_path: Path, bits: int, mib: int) -> None:
    rng = random.Random(bits)
    files = {
        "EFI/BOOT/BOOTX64.EFI": b"MZ" + rng.randbytes(9000),
        "EFI/ubuntu/shimx64.efi": b"MZ" + rng.randbytes(3000),
        "EFI/Vendor With A Long Name/grubx64.efi": rng.randbytes(700),
        "empty.txt": b"",
    }
    # Enough entries to spread a directory over several clusters.
    files.update({f"many/file number {i:03}.conf": rng.randbytes(i) for i in range(60)})
    image = _fat_image(tmp_path, bits, mib, files)
    data = image.read_bytes()
    fs = FatVolume(lambda o, n: data[o : o + n], len(data))
    assert fs.bits == bits
    walked = _walk(fs)
    assert set(walked) == _mdir_files(str(image)) == {"/" + p for p in files}
    for path, content in files.items():
        entry = fs.find(path.upper())
        assert entry is not None, path
        assert entry.size == len(content)
        head = fs.read_head(entry, 1 << 20)
        assert head == content
        shown = subprocess.run(["mtype", "-i", str(image), "::/" + path],
                               capture_output=True, check=True).stdout
        assert head == shown


def _mdir_files(image: str) -> set[str]:
    listing = _run("mdir", "-i", image, "-/", "-b", "::/")
    return {line[2:] for line in listing.splitlines()
            if line.startswith("::/") and not line.endswith("/")}


def test_esp_partition_of_the_test_disk_matches_mdir(tmp_path: Path, efi_vmdk: Path) -> None:
    raw = tmp_path / "e.raw"
    data = _raw(efi_vmdk, raw)
    esp = MIB
    fs = FatVolume(lambda o, n: data[esp + o : esp + o + n], ESP_MIB * MIB)
    walked = _walk(fs)
    assert set(walked) == _mdir_files(f"{raw}@@{esp}")
    assert "/EFI/BOOT/BOOTX64.EFI" in walked


# -- damaged input -------------------------------------------------------------------------

def _bounded(data: bytes) -> Callable[[int, int], bytes]:
    asked = [0]

    def read_at(offset: int, length: int) -> bytes:
        asked[0] += length
        assert 0 <= length <= 16 * MIB and asked[0] <= MAX_BYTES_ASKED
        return data[offset : offset + length] if offset >= 0 else b""

    return read_at


@pytest.fixture(scope="module")
def fat12_image(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    tmp = tmp_path_factory.mktemp("fat12")
    return _fat_image(tmp, 12, 1, {"EFI/BOOT/BOOTX64.EFI": b"MZ" + b"x" * 5000}).read_bytes()


FLIPS = st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=30)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=FLIPS)
def test_fat_on_damaged_volume(fat12_image: bytes, flips: list[tuple[int, int]]) -> None:
    data = bytearray(fat12_image)
    for position, value in flips:
        data[position % 8192] = value
    try:
        fs = FatVolume(_bounded(bytes(data)), len(data))
        entry = fs.find("EFI/BOOT/BOOTX64.EFI")
        _walk(fs)
        if entry is not None:
            fs.read_head(entry, 4096)
    except FatError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=3 * SECTOR), gpt=st.booleans())
def test_partitions_on_garbage(data: bytes, gpt: bool) -> None:
    raw = bytearray(data.ljust(3 * SECTOR, b"\0"))
    if gpt:
        raw[SECTOR : SECTOR + 8] = b"EFI PART"
    try:
        read_partition_table(_bounded(bytes(raw)))
    except NoPartitionTable:
        pass
    except PartitionError as exc:
        assert str(exc)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=FLIPS)
def test_grains_on_damaged_vmdk(efi_vmdk: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(efi_vmdk.read_bytes())
    for position, value in flips:
        data[position % 40_000] = value
    try:
        reader = GrainReader(BytesFile(bytes(data)), max_total_read=MAX_BYTES_ASKED)
        table = read_partition_table(reader.read_at)
        for part in table.partitions:
            reader.read_at(part.offset, 8192)
    except (GrainError, PartitionError) as exc:
        assert str(exc)


def test_window_file_reads_through_a_member_window(efi_vmdk: Path) -> None:
    with efi_vmdk.open("rb") as handle:
        source = WindowFile(handle)
        assert source.size == efi_vmdk.stat().st_size
        assert source.pread(4, 0) == b"KDMV"
        assert source.pread(10, source.size - 4) == efi_vmdk.read_bytes()[-4:]


def test_grain_reader_refuses_absurd_grain_size() -> None:
    header = struct.pack("<4sIIQQQQIQQQB4sH", b"KDMV", 3, 0x30003, 1 << 20, 1 << 16, 1, 20,
                         512, 21, 30, 128, 0, b"\n \r\n", 1).ljust(SECTOR, b"\0")
    with pytest.raises(GrainError, match="grain size 65536 sectors"):
        GrainReader(BytesFile(header * 64))


def test_vmdk_from_raw_fat16_esp(tmp_path: Path) -> None:
    """An MBR disk with a FAT16 ESP (type 0xEF): the path firmwares take on MBR disks."""
    image = _fat_image(tmp_path, 16, 20, {"EFI/BOOT/BOOTX64.EFI": b"MZ" + b"\0" * 100})
    raw = tmp_path / "mbr.raw"
    esp = image.read_bytes()
    entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0xEF, b"\0\0\0", 2048, len(esp) // SECTOR)
    mbr = bytearray(SECTOR)
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    raw.write_bytes(bytes(mbr).ljust(MIB, b"\0") + esp + bytes(MIB))
    vmdk = convert_to_vmdk(raw, tmp_path / "mbr.vmdk")
    reader, _ = _reader(vmdk)
    table = read_partition_table(reader.read_at)
    (part,) = table.partitions
    assert (table.scheme, part.type, part.offset) == ("MBR", 0xEF, MIB)
    fs = FatVolume(lambda o, n: reader.read_at(part.offset + o, n), part.size)
    assert fs.bits == 16
    found = fs.find("efi/boot/bootx64.efi")
    assert found is not None and fs.read_head(found, 2) == b"MZ"


@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(min_size=0, max_size=64 * 1024), grain=st.sampled_from([8, 128, 2048]))
def test_efi_check_on_garbage_behind_a_sparse_header(garbage: bytes, grain: int) -> None:
    """Any bytes behind a plausible header give one clear finding, never an exception."""
    import io

    from ovapipe.validators.disk import check_efi_boot

    from ovapipe.ova.descriptor import DiskRef

    header = struct.pack("<4sIIQQQQIQQQB4sH", b"KDMV", 3, 0x30003, 1 << 21, grain, 1, 20,
                         512, 21, 2, 128, 0, b"\n \r\n", 1).ljust(SECTOR, b"\0")
    window = io.BytesIO(header + garbage)
    findings = check_efi_boot(window, DiskRef("vmdisk1", "file1", 1 << 30, None),
                              "disk.vmdk")
    assert len(findings) == 1
    assert findings[0].rule in {"disk.unreadable", "disk.no-esp", "disk.esp-not-fat",
                                "disk.no-efi-loader"}
    assert findings[0].message.startswith("boot disk 'vmdisk1' (member 'disk.vmdk'): ")
