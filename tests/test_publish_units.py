"""The parts of publish that need no vCenter: the template record, the .sha256 file, paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe.vsphere.publish import record_path, sidecar_sha256
from ovapipe.vsphere.template import TemplateRecord

SHA = "ab" * 32


def test_the_record_round_trips_through_the_annotation() -> None:
    record = TemplateRecord(SHA, "node.ova", {"build.IMAGE_VERSION": "v1", "published": "now"})
    text = record.annotation()
    assert text.startswith("Published by ovapipe from node.ova\n")
    assert TemplateRecord.parse(text) == record


@given(st.text(max_size=200))
def test_any_annotation_parses_without_error(text: str) -> None:
    parsed = TemplateRecord.parse(text)
    assert parsed is None or len(parsed.ova_sha256) == 64


def test_an_annotation_without_a_sha256_is_not_ovapipes() -> None:
    assert TemplateRecord.parse("built by image-builder\nowner: team") is None
    assert TemplateRecord.parse(None) is None
    assert TemplateRecord.parse("ovapipe.ova_sha256: short") is None


def test_a_fresh_sidecar_gives_the_sha256(tmp_path: Path) -> None:
    ova = tmp_path / "node.ova"
    ova.write_bytes(b"ova")
    sidecar = tmp_path / "node.ova.sha256"
    sidecar.write_text(f"{hashlib.sha256(b'ova').hexdigest()}  node.ova\n")
    assert sidecar_sha256(ova) == hashlib.sha256(b"ova").hexdigest()


def test_a_stale_or_bad_sidecar_is_ignored(tmp_path: Path) -> None:
    ova = tmp_path / "node.ova"
    sidecar = tmp_path / "node.ova.sha256"
    sidecar.write_text(f"{SHA}  node.ova\n")
    ova.write_bytes(b"rebuilt later")
    stat = sidecar.stat()
    os.utime(ova, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert sidecar_sha256(ova) is None
    os.utime(sidecar, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert sidecar_sha256(ova) == SHA
    sidecar.write_text("not-a-digest node.ova\n")
    assert sidecar_sha256(ova) is None
    assert sidecar_sha256(tmp_path / "missing.ova") is None


def test_record_paths_are_per_template_and_datacenter(tmp_path: Path) -> None:
    assert record_path(tmp_path, "node", "DC0") == tmp_path / "node" / "publish-DC0.json"
    assert record_path(tmp_path, "node", "dc/west 1").name == "publish-dc_west_1.json"


def placement_with_datastore(free: int, accessible: bool = True) -> Any:
    from ovapipe.vsphere.inventory import Found
    from ovapipe.vsphere.placement import Placement

    datastore = Found(SimpleNamespace(_moId="ds-1"), {
        "name": "LocalDS_0", "summary.freeSpace": free, "summary.accessible": accessible})
    nothing = Found(SimpleNamespace(_moId="x"), {"name": "x"})
    return Placement(nothing, nothing, None, [], datastore, None, None)


def test_the_datastore_must_have_room_for_the_disks() -> None:
    from ovapipe.vsphere.preflight import check_datastore

    assert check_datastore(placement_with_datastore(10 << 30), 5 << 30) == []
    [problem] = check_datastore(placement_with_datastore(1 << 30), 5 << 30)
    assert problem.startswith("datastore LocalDS_0 has 1.0 GiB free, the OVA's disks need 5.0 GiB")
    [problem] = check_datastore(placement_with_datastore(10 << 30, accessible=False), 1)
    assert "not accessible" in problem


def test_a_directory_is_not_called_a_missing_ova(tmp_path: Path) -> None:
    from ovapipe.errors import ConfigError
    from ovapipe.vsphere.publish import check_ova

    with pytest.raises(ConfigError, match=r": is a directory, not an OVA file$"):
        check_ova(tmp_path, min_vmx=17, firmware="efi", name=None)
    with pytest.raises(ConfigError, match=r"missing\.ova: no such OVA file$"):
        check_ova(tmp_path / "missing.ova", min_vmx=17, firmware="efi", name=None)


def test_a_sidecar_is_bound_to_the_file_not_to_its_mtime(tmp_path: Path) -> None:
    """Issue 11: another OVA copied in with an old mtime (cp -p, rsync -t, tar x) must not
    be taken for the one the sidecar describes."""
    import shutil

    ova = tmp_path / "node.ova"
    ova.write_bytes(b"first build")
    sidecar = tmp_path / "node.ova.sha256"
    sidecar.write_text(f"{hashlib.sha256(b'first build').hexdigest()}  node.ova\n")
    assert sidecar_sha256(ova) == hashlib.sha256(b"first build").hexdigest()
    other = tmp_path / "other.ova"
    other.write_bytes(b"second build")
    old = sidecar.stat().st_mtime_ns - 10**10
    os.utime(other, ns=(old, old))
    shutil.copy2(other, ova)  # cp -p: the old mtime travels with the bytes
    assert ova.stat().st_mtime_ns < sidecar.stat().st_mtime_ns
    assert sidecar_sha256(ova) is None
