"""Property tests: mutated descriptors, manifests, tar headers never raise unexpected errors."""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ovafactory import DISK_NAME, Entry, manifest_for, write_tar
from ovapipe.validators.ova import RULES, validate_ova

from ovapipe.findings import Report
from ovapipe.ova.archive import scan_tar
from ovapipe.ova.descriptor import (
    DescriptorError,
    DescriptorSpec,
    DiskEntry,
    check_consistency,
    parse_descriptor,
    write_descriptor,
)
from ovapipe.ova.manifest import ManifestError, parse_manifest

GOOD_OVF = write_descriptor(DescriptorSpec(
    name="node", vmx=17, firmware="efi", secure_boot=False, os_type="ubuntu64Guest",
    os_cim_id=94, cpus=2, memory_mb=4096, network="nic0",
    disks=(DiskEntry(DISK_NAME, 4096, 64 * 1024 * 1024),),
))

XML_PIECES = [
    b"<", b">", b"/>", b"</ovf:Item>", b'"', b"'", b"&", b"&amp;", b"&#0;", b"&#x110000;",
    b"<!DOCTYPE x>", b'<!ENTITY a "b">', b"<![CDATA[", b"]]>", b"<?pi?>", b"\x00", b"\xff\xfe",
    b'ovf:capacity="-1"', b'ovf:size="x"', b"vmx-", b"vmx-99", b"vmx-0", b"ovf:/disk/",
    b'xmlns="urn:x"', b'vmw:key="firmware"', b'vmw:value="bios"', b"<VirtualSystem>",
    b"</ovf:VirtualSystem>", b"<rasd:ResourceType>17</rasd:ResourceType>",
    b"<rasd:ResourceType>x</rasd:ResourceType>", b'capacityAllocationUnits="byte * 2^999"',
]


@st.composite
def mutated_descriptor(draw: st.DrawFn) -> bytes:
    data = bytearray(GOOD_OVF)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        length = draw(st.integers(0, 64))
        if action == "delete":
            del data[position : position + length]
        elif action == "insert":
            piece = draw(st.sampled_from(XML_PIECES) | st.binary(max_size=16))
            data[position:position] = piece
        elif action == "replace":
            data[position : position + 1] = draw(st.binary(min_size=1, max_size=1))
        else:
            data[position:position] = data[position : position + length]
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(mutated_descriptor())
def test_parser_raises_only_descriptor_errors(data: bytes) -> None:
    try:
        descriptor = parse_descriptor(data)
    except DescriptorError as exc:
        assert exc.rule in ("descriptor.invalid", "descriptor.unsafe-xml", "descriptor.encoding")
        assert exc.message
        return
    for problem in check_consistency(descriptor):
        assert isinstance(problem, str) and problem


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_parser_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(DescriptorError):
        parse_descriptor(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_manifest_parser(text: str) -> None:
    try:
        entries = parse_manifest(text.encode("utf-8", "surrogatepass"))
    except ManifestError as exc:
        assert exc.message
        return
    for name, entry in entries.items():
        assert entry.name == name and entry.algorithm in ("SHA1", "SHA256", "SHA512")


def _small_ova() -> bytes:
    disk = b"KDMV" + bytes(4092)
    entries = [Entry("node.ovf", GOOD_OVF), Entry(DISK_NAME, disk)]
    entries.insert(1, Entry("node.mf", manifest_for(entries)))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.size = len(entry.data)
            archive.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


SMALL_OVA = _small_ova()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SMALL_OVA) - 1), st.integers(0, 255)), max_size=8),
       st.integers(512, len(SMALL_OVA)))
def test_scan_never_raises(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SMALL_OVA)
    for position, value in flips:
        data[position] = value
    scan = scan_tar(io.BytesIO(bytes(data[:cut])))
    for member in scan.members:
        assert member.offset >= 512 and member.size >= 0


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3 * 512), st.integers(0, 255)), min_size=1, max_size=6))
def test_validate_on_damaged_headers_gives_a_report(
    tmp_path: Path, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(SMALL_OVA)
    for position, value in flips:
        data[position] = value
    path = tmp_path / "fuzz.ova"
    path.write_bytes(bytes(data))
    report = validate_ova(path)
    assert isinstance(report, Report)
    assert all(f.rule in RULES for f in report.findings)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_descriptor())
def test_validate_with_mutated_descriptor(tmp_path: Path, data: bytes) -> None:
    path = write_tar(tmp_path / "m.ova", [Entry("node.ovf", data), Entry(DISK_NAME, b"x" * 600)])
    report = validate_ova(path)
    assert all(f.rule in RULES for f in report.findings)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_disk_check_on_damaged_vmdk(efi_vmdk: Path, data: st.DataObject) -> None:
    from ovapipe.validators.disk import check_efi_boot, check_vmdk

    from ovapipe.ova.archive import Member
    from ovapipe.ova.descriptor import DiskRef

    disk = bytearray(efi_vmdk.read_bytes())
    regions = [(0, 512), (512, 64 * 1024), (len(disk) - 4096, len(disk))]
    for _ in range(data.draw(st.integers(1, 8))):
        start, end = data.draw(st.sampled_from(regions))
        disk[data.draw(st.integers(start, end - 1))] = data.draw(st.integers(0, 255))
    window = io.BytesIO(bytes(disk))
    ref = DiskRef("vmdisk1", "file1", 64 * 1024 * 1024, None)
    member = Member(DISK_NAME, 0, len(disk))
    result = check_vmdk(window, ref, member.name, ref.capacity_bytes)
    if result.header is not None:
        for finding in check_efi_boot(window, ref, member.name):
            assert finding.rule in RULES


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["path", "size", "mtime", "linkpath"]),
                       st.text(max_size=40) | st.sampled_from(["-1", "9" * 5000, "١٢"]),
                       max_size=3))
def test_pax_records_of_any_content(records: dict[str, str]) -> None:
    body = b""
    for key, value in records.items():
        text = f" {key}={value}\n".encode("utf-8", "surrogatepass")
        length = len(text) + 1
        while len(str(length).encode() + text) != length:
            length += 1
        body += str(length).encode() + text
    info = tarfile.TarInfo("PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(body)
    buffer = io.BytesIO()
    buffer.write(info.tobuf(tarfile.USTAR_FORMAT))
    buffer.write(body + bytes(-len(body) % 512))
    member = tarfile.TarInfo("disk.vmdk")
    member.size = 10
    buffer.write(member.tobuf(tarfile.USTAR_FORMAT) + b"x" * 10 + bytes(502) + bytes(1024))
    scan = scan_tar(buffer)
    for found in scan.members:
        assert found.size >= 0
