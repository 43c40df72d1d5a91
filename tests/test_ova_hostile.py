"""Unusual OVAs from other tools: compressed archives, descriptor encodings, several types."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ovapipe.validators.ova import validate_ova


def _zstd(data: bytes) -> bytes:
    if shutil.which("zstd"):
        return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                              check=True).stdout
    return b"\x28\xb5\x2f\xfd" + data[:4096]  # the frame magic is all the check looks at


@pytest.mark.parametrize(
    ("name", "compress"),
    [("gzip", lambda data: gzip.compress(data, 1)),
     ("xz", lambda data: lzma.compress(data[: 1 << 20])), ("zstd", _zstd)],
)
def test_compressed_ova_is_named_as_such(tmp_path: Path, efi_ova: Path, name: str,
                                         compress) -> None:
    """Measured: a gzip-compressed OVA was reported as a tar checksum mismatch."""
    packed = tmp_path / f"image.ova.{name}"
    packed.write_bytes(compress(efi_ova.read_bytes()))
    report = validate_ova(packed)
    (finding,) = [f for f in report.findings if f.rule == "archive.unreadable"]
    assert f"the file is {name}-compressed, not a tar archive" in finding.message
    assert "checksum mismatch" not in finding.message


# ---- descriptor encodings: one reading for validate-ova and publish ---------------------------

DISK_NAME = "node-disk1.vmdk"


def _ovf(disk: bytes, name: str = "node") -> str:
    from ovapipe.ova.descriptor import DescriptorSpec, DiskEntry, write_descriptor

    spec = DescriptorSpec(
        name=name, vmx=17, firmware="efi", secure_boot=False, os_type="ubuntu64Guest",
        os_cim_id=94, cpus=2, memory_mb=4096, network="nic0",
        disks=(DiskEntry(DISK_NAME, len(disk), 64 * 1024 * 1024),),
    )
    return write_descriptor(spec).decode()


def _declared(text: str, encoding: str | None) -> str:
    body = text.split("?>", 1)[1].lstrip("\n")
    if encoding is None:
        return body
    return f'<?xml version="1.0" encoding="{encoding}"?>\n{body}'


@pytest.fixture(scope="module")
def small_disk() -> bytes:
    return b"KDMV" + bytes(1020)


ENCODED: dict[str, tuple[str | None, str, bytes]] = {
    # name: (declared, codec, BOM)
    "latin-1": ("ISO-8859-1", "latin-1", b""),
    "utf-16 le with BOM": ("UTF-16", "utf-16-le", b"\xff\xfe"),
    "utf-16 be with BOM, no declaration": (None, "utf-16-be", b"\xfe\xff"),
    "utf-8 with BOM": ("UTF-8", "utf-8", b"\xef\xbb\xbf"),
}


@pytest.mark.parametrize("case", list(ENCODED))
def test_declared_encodings_are_honoured(case: str, small_disk: bytes) -> None:
    from ovapipe.ova.descriptor import decode_descriptor, parse_descriptor

    declared, codec, bom = ENCODED[case]
    text = _declared(_ovf(small_disk, name="nœud-é" if codec != "latin-1" else "nöde-é"), declared)
    data = bom + text.encode(codec)
    descriptor = parse_descriptor(data)
    assert descriptor.name in ("nœud-é", "nöde-é")
    decoded = decode_descriptor(data)
    assert 'encoding="UTF-8"' in decoded.text or declared is None
    assert parse_descriptor(decoded.text.encode()).name == descriptor.name


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b'<?xml version="1.0" encoding="UTF-16"?><a/>', "no byte-order mark"),
        ("<?xml version='1.0'?><a/>".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
        (b'\xff\xfe' + '<?xml version="1.0" encoding="ISO-8859-1"?><a/>'.encode("utf-16-le"),
         "but the byte-order mark is UTF-16's"),
        (b'<?xml version="1.0" encoding="UTF-8"?><a>\xe9</a>', "byte 41 (0xe9) is not valid UTF-8"),
        (b'<?xml version="1.0" encoding="windows-1252"?><a/>', "encoding='windows-1252'"),
        (b"\xff\xfe\x00\x00<\x00\x00\x00", "UTF-32"),
    ],
)
def test_unreadable_encodings_are_refused_by_a_named_rule(data: bytes, says: str) -> None:
    from ovapipe.ova.descriptor import DescriptorError, descriptor_text, parse_descriptor

    for reader in (parse_descriptor, descriptor_text):
        with pytest.raises(DescriptorError) as excinfo:
            reader(data)
        assert excinfo.value.rule == "descriptor.encoding"
        assert says in excinfo.value.message


def test_latin1_ova_passes_validate_and_publish_reads_it(tmp_path: Path, efi_vmdk: Path) -> None:
    """Measured: encoding="ISO-8859-1" passed validate-ova, then publish failed with
    "internal error: UnicodeDecodeError"."""
    from ovafactory import make_ova  # type: ignore[import-not-found]

    from ovapipe.vsphere.publish import check_ova

    disk = efi_vmdk.read_bytes()
    ovf = _declared(_ovf(disk, name="nöde"), "ISO-8859-1").encode("latin-1")
    path = make_ova(tmp_path / "latin1.ova", ovf, disk)
    report = validate_ova(path)
    assert report.ok, report.render()
    checked = check_ova(path, min_vmx=17, firmware="efi", name=None)
    assert "<ovf:Name>nöde</ovf:Name>" in checked.descriptor_text
    assert 'encoding="UTF-8"' in checked.descriptor_text


_DECLARATIONS = st.sampled_from(
    [None, "UTF-8", "utf-8", "US-ASCII", "ISO-8859-1", "latin1", "UTF-16", "UTF-16LE",
     "windows-1252", "EBCDIC-US", "UTF-32", "", "koi8-r"]
)
_CODECS = st.sampled_from(["utf-8", "latin-1", "utf-16-le", "utf-16-be", "cp1252", "utf-32"])
_BOMS = st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"])


@settings(max_examples=150, deadline=None)
@given(declared=_DECLARATIONS, codec=_CODECS, bom=_BOMS,
       name=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12))
def test_validate_passes_implies_publish_reads(declared: str | None, codec: str, bom: bytes,
                                               name: str) -> None:
    """The descriptor half of validate-ova (parse_descriptor) accepts => publish's reader does,
    and both see the same characters."""
    from ovapipe.ova.descriptor import DescriptorError, descriptor_text, parse_descriptor

    text = _declared(_ovf(b"KDMV" + bytes(1020), name="n"), declared)
    text = text.replace("<ovf:Name>n</ovf:Name>", f"<ovf:Name>{escape(name)}</ovf:Name>")
    try:
        data = bom + text.encode(codec)
    except UnicodeEncodeError:
        return
    try:
        descriptor = parse_descriptor(data)
    except DescriptorError as exc:
        assert exc.rule in ("descriptor.encoding", "descriptor.invalid")
        return
    sent = descriptor_text(data)
    assert parse_descriptor(sent.encode("utf-8")).name == descriptor.name


# ---- several VirtualSystemTypes --------------------------------------------------------------


def _typed_ova(tmp_path: Path, disk: bytes, types: str) -> Path:
    from ovafactory import make_ova  # type: ignore[import-not-found]

    ovf = _ovf(disk).replace(">vmx-17<", f">{types}<", 1)
    assert types in ovf
    return make_ova(tmp_path / "typed.ova", ovf, disk)


def test_several_types_are_judged_by_the_lowest(tmp_path: Path, efi_vmdk: Path) -> None:
    """Measured: `vmx-14 vmx-20` (open-vmdk's ova-compose) was judged as vmx-20."""
    report = validate_ova(_typed_ova(tmp_path, efi_vmdk.read_bytes(), "vmx-14 vmx-20"))
    (finding,) = [f for f in report.errors if f.rule == "hardware.vmx-too-old"]
    assert "VirtualSystemType lists vmx-14 vmx-20" in finding.message
    assert "a host from ESXi 6.7 up to (not including) ESXi 8.0 creates vmx-14" in finding.message
    assert "at least vmx-17 is required" in finding.message


def test_several_types_all_new_enough_pass(tmp_path: Path, efi_vmdk: Path) -> None:
    report = validate_ova(_typed_ova(tmp_path, efi_vmdk.read_bytes(), "vmx-17 vmx-20"))
    assert report.ok, report.render()


@pytest.mark.simulator
@pytest.mark.parametrize(("declared", "codec", "bom"),
                         [("ISO-8859-1", "latin-1", b""), ("UTF-16", "utf-16-le", b"\xff\xfe")])
def test_publish_imports_a_descriptor_in_its_declared_encoding(
    tmp_path: Path, efi_vmdk: Path, simulator: object, declared: str, codec: str, bom: bytes
) -> None:
    import io

    from ovafactory import make_ova  # type: ignore[import-not-found]

    from ovapipe.progress import Progress
    from ovapipe.vsphere.publish import PublishOptions, publish

    disk = efi_vmdk.read_bytes()
    ovf = bom + _declared(_ovf(disk, name="nöde"), declared).encode(codec)
    path = make_ova(tmp_path / "encoded.ova", ovf, disk)
    assert validate_ova(path).ok
    options = PublishOptions(ova=path, datacenters=("DC0",), cluster="DC0_C0",
                             datastore="LocalDS_0", network="VM Network",
                             output_dir=tmp_path / "out", snapshot=False)
    [record] = publish(options, simulator.connection,  # type: ignore[attr-defined]
                       log=io.StringIO(),
                       progress=lambda label, total: Progress(label, total, io.StringIO(),
                                                              tty=False))
    assert record.vmx == "vmx-17" and record.firmware == "efi"
