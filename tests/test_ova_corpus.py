"""A corpus of broken OVAs, built here (never committed): each trips exactly its rule."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from ovafactory import (
    DISK_NAME,
    Entry,
    arm64_pe,
    make_ova,
    manifest_for,
    replace_esp_file,
    rewrite_disk,
    write_tar,
    zero_range,
)
from ovapipe.validators.ova import RULES, validate_ova

from ovapipe.errors import ConfigError
from ovapipe.findings import Report
from ovapipe.ova.descriptor import DescriptorSpec, DiskEntry, write_descriptor
from ovapipe.testdisk import FALLBACK_LOADER, MIB, PARTITION_START_MIB, make_test_disk

REPO = Path(__file__).resolve().parent.parent
CAPACITY = 64 * 1024 * 1024

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><Name>&lol9;</Name></Envelope>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><Name>&xxe;</Name></Envelope>
"""


@dataclass(frozen=True)
class Disks:
    efi: bytes
    bios: bytes
    sparse: bytes
    empty_esp: bytes
    shim_only: bytes
    no_table: bytes
    esp_not_fat: bytes
    arm64_loader: bytes
    corrupt_grain: bytes


def _corrupt_first_grain(vmdk: bytes) -> bytes:
    """Break the zlib header of the first compressed grain (the one holding LBA 0)."""
    overhead = int.from_bytes(vmdk[64:72], "little")
    marker = overhead * 512
    assert int.from_bytes(vmdk[marker : marker + 8], "little") == 0
    damaged = bytearray(vmdk)
    damaged[marker + 12 : marker + 14] = b"\0\0"
    return bytes(damaged)


@pytest.fixture(scope="module")
def disks(efi_vmdk: Path, bios_vmdk: Path, tmp_path_factory: pytest.TempPathFactory) -> Disks:
    folder = tmp_path_factory.mktemp("corpus-disks")
    sparse = make_test_disk("efi", folder / "sparse.vmdk", subformat="monolithicSparse")
    empty = make_test_disk("efi", folder / "empty.vmdk", loader=None)
    shim = make_test_disk("efi", folder / "shim.vmdk", loader="EFI/ubuntu/shimx64.efi")
    esp = PARTITION_START_MIB * MIB
    return Disks(
        efi_vmdk.read_bytes(), bios_vmdk.read_bytes(), sparse.read_bytes(), empty.read_bytes(),
        shim.read_bytes(),
        no_table=rewrite_disk(efi_vmdk, folder / "no-table.vmdk",
                              lambda raw: zero_range(raw, 0, 2 * 512)),
        esp_not_fat=rewrite_disk(efi_vmdk, folder / "not-fat.vmdk",
                                 lambda raw: zero_range(raw, esp, 64 * 512)),
        arm64_loader=rewrite_disk(
            efi_vmdk, folder / "arm64.vmdk",
            lambda raw: replace_esp_file(raw, esp, FALLBACK_LOADER, arm64_pe()),
        ),
        corrupt_grain=_corrupt_first_grain(efi_vmdk.read_bytes()),
    )


def spec_for(disk: bytes, **changes: object) -> DescriptorSpec:
    spec = DescriptorSpec(
        name="node", vmx=17, firmware="efi", secure_boot=False, os_type="ubuntu64Guest",
        os_cim_id=94, cpus=2, memory_mb=4096, network="nic0",
        disks=(DiskEntry(DISK_NAME, len(disk), CAPACITY),),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def ovf_text(disk: bytes, **changes: object) -> str:
    return write_descriptor(spec_for(disk, **changes)).decode()


def error_rules(report: Report) -> set[str]:
    return {f.rule for f in report.errors}


def test_good_ova_passes(tmp_path: Path, disks: Disks) -> None:
    path = make_ova(tmp_path / "good.ova", ovf_text(disks.efi), disks.efi)
    report = validate_ova(path)
    assert report.ok and report.findings == [], report.render()
    assert (report.vmx, report.firmware, report.secure_boot) == ("vmx-17", "efi", False)


def test_assembled_ova_passes(efi_ova: Path) -> None:
    report = validate_ova(efi_ova)
    assert report.ok and report.findings == [], report.render()


# Each case: build(tmp_path, disks) -> path, and the exact set of error rules it must trip.
Build = Callable[[Path, Disks], Path]


def _truncated(tmp: Path, d: Disks) -> Path:
    path = make_ova(tmp / "t.ova", ovf_text(d.efi), d.efi)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _with_ovf(edit: Callable[[str], str], disk: str = "efi") -> Build:
    def build(tmp: Path, d: Disks) -> Path:
        data = getattr(d, disk)
        return make_ova(tmp / "x.ova", edit(ovf_text(data)), data)

    return build


def _firmware_line_removed(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if 'vmw:key="firmware"' not in line)


def _random(tmp: Path, d: Disks) -> Path:
    path = tmp / "random.ova"
    path.write_bytes(os.urandom(200_000))
    return path


def _empty(tmp: Path, d: Disks) -> Path:
    path = tmp / "empty.ova"
    path.write_bytes(b"")
    return path


def _manifest(edit: Callable[[bytes, bytes], bytes]) -> Build:
    def build(tmp: Path, d: Disks) -> Path:
        ovf = ovf_text(d.efi)
        good = manifest_for([Entry("node.ovf", ovf.encode()), Entry(DISK_NAME, d.efi)])
        return make_ova(tmp / "m.ova", ovf, d.efi, manifest=edit(good, d.efi))

    return build


def _flip_last_hex(manifest: bytes, _disk: bytes) -> bytes:
    lines = manifest.splitlines(keepends=True)
    last = lines[-1].rstrip(b"\n")
    flipped = last[:-1] + (b"0" if last[-1:] != b"0" else b"1")
    return b"".join(lines[:-1]) + flipped + b"\n"


CORPUS: dict[str, tuple[Build, set[str]]] = {
    "truncated tar": (_truncated, {"archive.truncated"}),
    "encoding not read": (
        _with_ovf(lambda t: t.replace("encoding='utf-8'", "encoding='EBCDIC-US'", 1)),
        {"descriptor.encoding"},
    ),
    "random bytes": (_random, {"archive.unreadable"}),
    "empty file": (_empty, {"archive.unreadable"}),
    "path traversal": (
        lambda t, d: make_ova(t / "p.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry("../../etc/cron.d/evil", b"* * * * * root id\n")]),
        {"archive.path-traversal"},
    ),
    "absolute path": (
        lambda t, d: make_ova(t / "a.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry("/etc/evil", b"x")]),
        {"archive.path-traversal"},
    ),
    "symlink member": (
        lambda t, d: make_ova(t / "s.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry("shadow", b"", tarfile.SYMTYPE, "/etc/shadow")]),
        {"archive.link-member"},
    ),
    "hard link member": (
        lambda t, d: make_ova(t / "h.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry("copy.vmdk", type=tarfile.LNKTYPE, linkname=DISK_NAME)]),
        {"archive.link-member"},
    ),
    "directory member": (
        lambda t, d: make_ova(t / "d.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry("folder", type=tarfile.DIRTYPE)]),
        {"archive.not-regular"},
    ),
    "duplicate member": (
        lambda t, d: make_ova(t / "u.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry(DISK_NAME, d.efi)]),
        {"archive.duplicate"},
    ),
    "missing disk": (
        lambda t, d: make_ova(t / "n.ova", ovf_text(d.efi), None),
        {"archive.missing-file"},
    ),
    "no descriptor": (
        lambda t, d: write_tar(t / "o.ova", [Entry(DISK_NAME, d.efi)]),
        {"archive.no-descriptor"},
    ),
    "size mismatch": (
        _with_ovf(lambda text: text.replace('ovf:size="', 'ovf:size="1', 1)),
        {"archive.size-mismatch"},
    ),
    "OVF not first": (
        lambda t, d: make_ova(t / "f.ova", ovf_text(d.efi), d.efi, disk_first=True),
        {"archive.ovf-not-first"},
    ),
    "manifest mismatch": (_manifest(_flip_last_hex), {"manifest.mismatch"}),
    "manifest unlisted disk": (
        _manifest(lambda m, _d: m.splitlines(keepends=True)[0]), {"manifest.unlisted"},
    ),
    "manifest lists a missing file": (
        _manifest(lambda m, _d: m + b"SHA256(ghost.vmdk)= " + b"0" * 64 + b"\n"),
        {"manifest.missing-file"},
    ),
    "manifest garbage": (_manifest(lambda m, _d: m + b"this is not a digest\n"),
                         {"manifest.invalid"}),
    "vmx-13": (lambda t, d: make_ova(t / "v.ova", ovf_text(d.efi, vmx=13), d.efi),
               {"hardware.vmx-too-old"}),
    "no vmx": (_with_ovf(lambda text: text.replace("vmx-17", "virtualbox-2.2")),
               {"hardware.vmx-missing"}),
    "BIOS firmware": (lambda t, d: make_ova(t / "b.ova", ovf_text(d.efi, firmware="bios"), d.efi),
                      {"boot.firmware-mismatch"}),
    "no firmware": (_with_ovf(_firmware_line_removed), {"boot.firmware-missing"}),
    "XML bomb": (
        lambda t, d: make_ova(t / "x.ova", BILLION_LAUGHS, d.efi), {"descriptor.unsafe-xml"},
    ),
    "external entity": (
        lambda t, d: make_ova(t / "x.ova", EXTERNAL_ENTITY, d.efi), {"descriptor.unsafe-xml"},
    ),
    "not XML": (lambda t, d: make_ova(t / "x.ova", b"<Envelope", d.efi), {"descriptor.invalid"}),
    "not OVF": (lambda t, d: make_ova(t / "x.ova", b"<html/>", d.efi), {"descriptor.invalid"}),
    "dangling fileRef": (
        _with_ovf(lambda text: text.replace('ovf:fileRef="file1"', 'ovf:fileRef="file9"')),
        {"descriptor.inconsistent"},
    ),
    "negative capacity": (
        _with_ovf(lambda text: text.replace(f'ovf:capacity="{CAPACITY}"', 'ovf:capacity="-1"')),
        {"descriptor.inconsistent"},
    ),
    "disk not attached": (
        _with_ovf(lambda text: text.replace("ovf:/disk/vmdisk1", "ovf:/disk/vmdisk7")),
        {"descriptor.inconsistent"},
    ),
    "monolithicSparse disk": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.sparse), d.sparse),
        {"disk.not-stream-optimized"},
    ),
    "wrong ovf:format": (
        _with_ovf(lambda text: text.replace("#streamOptimized", "#sparse")),
        {"disk.not-stream-optimized"},
    ),
    "disk is not a VMDK": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(b"\0" * 4096), b"\0" * 4096),
        {"disk.not-vmdk"},
    ),
    "VMDK bigger than declared": (
        _with_ovf(lambda text: text.replace(f'ovf:capacity="{CAPACITY}"', 'ovf:capacity="1024"')),
        {"disk.capacity-mismatch"},
    ),
    "BIOS-only disk under EFI": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.bios), d.bios), {"disk.no-esp"},
    ),
    "ESP without a loader": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.empty_esp), d.empty_esp),
        {"disk.no-efi-loader"},
    ),
    "aarch64 loader": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.arm64_loader), d.arm64_loader),
        {"disk.no-efi-loader"},
    ),
    "ESP without FAT": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.esp_not_fat), d.esp_not_fat),
        {"disk.esp-not-fat"},
    ),
    "no partition table": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.no_table), d.no_table), {"disk.no-esp"},
    ),
    "corrupt grain": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.corrupt_grain), d.corrupt_grain),
        {"disk.unreadable"},
    ),
    "two descriptors": (
        lambda t, d: make_ova(t / "x.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry("other.ovf", ovf_text(d.efi).encode())]),
        {"archive.extra-descriptor"},
    ),
}

# Warnings: the OVA stays valid, and the finding names the rule.
WARNING_CASES: dict[str, tuple[Build, set[str], str]] = {
    "no manifest": (
        lambda t, d: make_ova(t / "w.ova", ovf_text(d.efi), d.efi, manifest=False),
        {"manifest.missing"}, "efi",
    ),
    "BootOrderSection with EFI": (
        _with_ovf(lambda text: text.replace(
            "</ovf:VirtualSystem>",
            '<vmw:BootOrderSection vmw:type="disk"><ovf:Info>Boot order</ovf:Info>'
            "</vmw:BootOrderSection></ovf:VirtualSystem>",
        )),
        {"boot.bootorder-with-efi"}, "efi",
    ),
    "secure boot with BIOS": (
        lambda t, d: make_ova(t / "w.ova", ovf_text(d.bios, firmware="bios", secure_boot=True),
                              d.bios),
        {"boot.secure-boot-without-efi"}, "bios",
    ),
    "unreferenced member": (
        lambda t, d: make_ova(t / "w.ova", ovf_text(d.efi), d.efi,
                              extra=[Entry("README.txt", b"hello")]),
        {"archive.unreferenced"}, "efi",
    ),
}


@pytest.mark.parametrize("case", sorted(WARNING_CASES))
def test_warning_cases(case: str, tmp_path: Path, disks: Disks) -> None:
    build, expected, firmware = WARNING_CASES[case]
    report = validate_ova(build(tmp_path, disks), firmware=firmware)
    assert report.ok, report.render()
    assert report.rules() == expected


def test_every_rule_has_a_case() -> None:
    tripped = set().union(*(rules for _, rules in CORPUS.values()))
    tripped |= set().union(*(rules for _, rules, _ in WARNING_CASES.values()))
    # signature.*, sbom.* and image.* rules have their cases in tests/test_ova_signing.py,
    # tests/test_sbom.py and tests/test_inspection.py
    assert tripped == {r for r in RULES if not r.startswith(("signature.", "sbom.", "image."))}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_trips_exactly_its_rule(case: str, tmp_path: Path, disks: Disks) -> None:
    build, expected = CORPUS[case]
    path = build(tmp_path, disks)
    report = validate_ova(path)
    assert not report.ok
    assert error_rules(report) == expected, report.render()
    assert all(f.rule in RULES for f in report.findings)
    for finding in report.findings:
        assert RULES[finding.rule][0] == finding.severity
        assert finding.message


def test_vmx_message_names_esxi_versions(tmp_path: Path, disks: Disks) -> None:
    path = make_ova(tmp_path / "v.ova", ovf_text(disks.efi, vmx=13), disks.efi)
    (finding,) = validate_ova(path).errors
    assert "vmx-13 (ESXi 6.5+)" in finding.message
    assert "at least vmx-17 is required (vmx-17 needs ESXi 7.0 or newer)" in finding.message
    report = validate_ova(path, min_vmx=13)
    assert report.ok and report.vmx == "vmx-13"
    (newer,) = validate_ova(
        make_ova(tmp_path / "w.ova", ovf_text(disks.efi), disks.efi), min_vmx=21
    ).errors
    assert "vmx-21 needs ESXi 8.0U2" in newer.message


def test_missing_firmware_is_bios(tmp_path: Path, disks: Disks) -> None:
    path = _with_ovf(_firmware_line_removed)(tmp_path, disks)
    report = validate_ova(path)
    assert report.firmware is None
    assert "imports the VM as BIOS" in report.errors[0].message
    assert error_rules(validate_ova(path, firmware="bios")) == set()


def test_bios_required_and_given(tmp_path: Path, disks: Disks) -> None:
    path = make_ova(tmp_path / "b.ova", ovf_text(disks.bios, firmware="bios"), disks.bios)
    report = validate_ova(path, firmware="bios")
    assert report.ok, report.render()
    assert report.firmware == "bios"


def test_absurd_gpt_entry_table_is_refused_before_parsing(
    tmp_path: Path, efi_vmdk: Path
) -> None:
    def claim_a_million_entries(raw: Path) -> None:
        with raw.open("r+b") as handle:
            handle.seek(512 + 80)  # GPT header: number of partition entries
            handle.write((1_000_000).to_bytes(4, "little"))

    disk = rewrite_disk(efi_vmdk, tmp_path / "gpt.vmdk", claim_a_million_entries)
    (finding,) = validate_ova(make_ova(tmp_path / "g.ova", ovf_text(disk), disk)).errors
    assert finding.rule == "disk.unreadable"
    assert "GPT header claims 1000000 entries of 128 bytes" in finding.message


def test_distribution_loader_is_enough(tmp_path: Path, disks: Disks) -> None:
    path = make_ova(tmp_path / "s.ova", ovf_text(disks.shim_only), disks.shim_only)
    report = validate_ova(path)
    assert report.ok and report.findings == [], report.render()


def test_secure_boot_is_reported(tmp_path: Path, disks: Disks) -> None:
    path = make_ova(tmp_path / "s.ova", ovf_text(disks.efi, secure_boot=True), disks.efi)
    report = validate_ova(path)
    assert report.ok and report.secure_boot is True
    assert json.loads(report.to_json())["secure_boot"] is True


def test_warnings_do_not_fail(tmp_path: Path, disks: Disks) -> None:
    ovf = ovf_text(disks.efi).replace(
        "</ovf:VirtualSystem>",
        '<vmw:BootOrderSection vmw:type="disk"><ovf:Info>Boot order</ovf:Info>'
        "</vmw:BootOrderSection></ovf:VirtualSystem>",
    )
    path = make_ova(tmp_path / "w.ova", ovf, disks.efi, manifest=False)
    report = validate_ova(path)
    assert report.ok
    assert report.rules() == {"boot.bootorder-with-efi", "manifest.missing"}


@pytest.mark.parametrize("algorithm", ["sha1", "sha512"])
def test_other_manifest_algorithms(tmp_path: Path, disks: Disks, algorithm: str) -> None:
    path = make_ova(tmp_path / "a.ova", ovf_text(disks.efi), disks.efi, algorithm=algorithm)
    assert validate_ova(path).findings == []
    ovf = ovf_text(disks.efi)
    good = manifest_for([Entry("node.ovf", ovf.encode()), Entry(DISK_NAME, disks.efi)], algorithm)
    broken = make_ova(tmp_path / "b.ova", ovf, disks.efi, manifest=_flip_last_hex(good, b""))
    assert error_rules(validate_ova(broken)) == {"manifest.mismatch"}


def test_check_digests_false_skips_hashing(tmp_path: Path, disks: Disks) -> None:
    path = _manifest(_flip_last_hex)(tmp_path, disks)
    assert validate_ova(path, check_digests=False).ok


def test_unopenable_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        validate_ova(tmp_path / "absent.ova")
    with pytest.raises(ConfigError, match="directory"):
        validate_ova(tmp_path)
    os.mkfifo(tmp_path / "pipe.ova")
    with pytest.raises(ConfigError, match="not a regular file"):
        validate_ova(tmp_path / "pipe.ova")
    with pytest.raises(ConfigError, match="--firmware"):
        validate_ova(tmp_path / "absent.ova", firmware="uefi")
    with pytest.raises(ConfigError, match="--min-vmx"):
        validate_ova(tmp_path / "absent.ova", min_vmx="seventeen")
    # issue 17: a version no ESXi release creates was accepted as --min-vmx
    with pytest.raises(ConfigError, match="--min-vmx: vmx-99 is not a hardware version any ESXi"):
        validate_ova(tmp_path / "absent.ova", min_vmx=99)


# ---- the command line: exit codes, JSON, no tracebacks --------------------------------------


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "invoke"), "validate-ova", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )


@pytest.mark.parametrize(
    "case", ["truncated tar", "random bytes", "XML bomb", "symlink member", "vmx-13",
             "BIOS-only disk under EFI"],
)
def test_cli_exit_1_with_json(case: str, tmp_path: Path, disks: Disks) -> None:
    build, expected = CORPUS[case]
    path = build(tmp_path, disks)
    result = _invoke(str(path), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    document = json.loads(result.stdout)
    assert set(document) == {"ok", "path", "vmx", "firmware", "secure_boot", "findings"}
    assert document["ok"] is False and document["path"] == str(path)
    assert {f["rule"] for f in document["findings"] if f["severity"] == "error"} == expected


def test_cli_pass_and_terminal_report(efi_ova: Path) -> None:
    result = _invoke(str(efi_ova))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("PASS")
    assert "vmx-17" in result.stdout and "firmware: efi" in result.stdout


def test_cli_exit_2_when_unopenable(tmp_path: Path) -> None:
    for target in (tmp_path / "absent.ova", tmp_path):
        result = _invoke(str(target))
        assert result.returncode == 2
        assert "error:" in result.stderr and "Traceback" not in result.stderr
    bad_flag = _invoke(str(tmp_path), "--firmware", "uefi")
    assert bad_flag.returncode == 2 and "Traceback" not in bad_flag.stderr


def test_many_problems_are_capped_per_rule(tmp_path: Path, disks: Disks) -> None:
    files = "".join(f'<ovf:File ovf:href="ghost{i}.vmdk" ovf:id="g{i}"/>' for i in range(500))
    ovf = ovf_text(disks.efi).replace("</ovf:References>", files + "</ovf:References>")
    report = validate_ova(make_ova(tmp_path / "many.ova", ovf, disks.efi))
    missing = [f for f in report.findings if f.rule == "archive.missing-file"]
    assert len(missing) == 21
    assert missing[-1].message == "... and 480 more like the above"


@pytest.mark.timeout(10)
def test_xml_bomb_is_refused_at_once() -> None:
    from ovapipe.ova.descriptor import DescriptorError, parse_descriptor

    for bomb in (BILLION_LAUGHS, EXTERNAL_ENTITY):
        with pytest.raises(DescriptorError) as caught:
            parse_descriptor(bomb)
        assert caught.value.rule == "descriptor.unsafe-xml"
        assert "<!DOCTYPE" in caught.value.message


def test_cli_min_vmx_forms(efi_ova: Path) -> None:
    assert _invoke(str(efi_ova), "--min-vmx", "vmx-17").returncode == 0
    newer = _invoke(str(efi_ova), "--min-vmx", "vmx-19", "--json")
    assert newer.returncode == 1
    (finding,) = json.loads(newer.stdout)["findings"]
    assert finding["rule"] == "hardware.vmx-too-old" and "ESXi 7.0U2" in finding["message"]
    bad = _invoke(str(efi_ova), "--min-vmx", "seventeen")
    assert bad.returncode == 2 and "--min-vmx" in bad.stderr and "Traceback" not in bad.stderr
