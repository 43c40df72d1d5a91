"""The SBOM: read from the shipped disk's dpkg status, SPDX 2.3 in the OVA, reported, printed."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import pytest
from ovafactory import Entry, read_members, write_tar
from ovapipe.validators.ova import validate_ova

from ovapipe.files import sha256_file
from ovapipe.ova import assemble_ova
from ovapipe.ova.facts import BuildFacts
from ovapipe.paths import REPO_ROOT
from ovapipe.sbom import DiskSbom, disk_sbom
from ovapipe.testdisk import RootContent

NAME = "ubuntu-2004-efi-sbom"
CREATED = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def sbom(efi_vmdk: Path) -> DiskSbom:
    return disk_sbom(efi_vmdk, NAME, created=CREATED, disk_sha256=sha256_file(efi_vmdk))


@pytest.fixture(scope="module")
def sbom_ova(tmp_path_factory: pytest.TempPathFactory, efi_vmdk: Path, build_facts: BuildFacts,
             sbom: DiskSbom) -> Path:
    return assemble_ova(tmp_path_factory.mktemp("sbom"), NAME, [efi_vmdk], build_facts,
                        sbom=sbom.document).path


def test_packages_come_from_the_disk(sbom: DiskSbom) -> None:
    expected = RootContent()
    versions = {p.name: p.version for p in sbom.packages}
    for name in ("kubelet", "kubeadm", "kubectl"):
        assert versions[name] == f"{expected.kubernetes_version}-1.1"
    assert versions["containerd"].startswith(expected.containerd_version + "-")
    assert sbom.distro == "ovapipe-test"


def test_spdx_23_document(sbom: DiskSbom, efi_vmdk: Path) -> None:
    document = json.loads(sbom.document)
    assert document["spdxVersion"] == "SPDX-2.3" and document["dataLicense"] == "CC0-1.0"
    assert document["creationInfo"]["created"] == "2026-12-01T03:00:00Z"
    ids = [p["SPDXID"] for p in document["packages"]]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", i)
                                             for i in ids)
    image = document["packages"][0]
    assert image["checksums"] == [{"algorithm": "SHA256",
                                   "checksumValue": sha256_file(efi_vmdk)}]
    contains = {r["relatedSpdxElement"] for r in document["relationships"]
                if r["relationshipType"] == "CONTAINS"}
    assert contains == set(ids[1:])
    purls = [p["externalRefs"][0]["referenceLocator"] for p in document["packages"][1:]]
    assert "pkg:deb/ovapipe-test/openssh-server@1%3A8.2p1-4ubuntu0.11?arch=amd64" in purls
    again = disk_sbom(efi_vmdk, NAME, created=CREATED, disk_sha256=sha256_file(efi_vmdk))
    assert again.document == sbom.document  # deterministic


def test_in_the_ova_listed_in_the_manifest_and_reported(sbom_ova: Path, sbom: DiskSbom) -> None:
    entries = {e.name: e.data for e in read_members(sbom_ova)}
    assert entries[f"{NAME}.spdx.json"] == sbom.document
    assert f"SHA256({NAME}.spdx.json)= {sbom.sha256}" in entries[f"{NAME}.mf"].decode()
    report = validate_ova(sbom_ova)
    assert report.ok and report.findings == [], report.render()
    assert report.sbom == {"member": f"{NAME}.spdx.json", "sha256": sbom.sha256,
                           "packages": len(sbom.packages), "name": f"{NAME} node image"}
    assert f"SBOM: {NAME}.spdx.json ({len(sbom.packages)} packages" in report.render()


def test_a_changed_or_broken_sbom_is_caught(tmp_path: Path, sbom_ova: Path) -> None:
    entries = read_members(sbom_ova)
    changed = [Entry(e.name, e.data.replace(b"kubelet", b"kubelex"))
               if e.name.endswith(".spdx.json") else e for e in entries]
    report = validate_ova(write_tar(tmp_path / "changed.ova", changed))
    assert {f.rule for f in report.errors} == {"manifest.mismatch"}
    broken = [Entry(e.name, b"{not json") if e.name.endswith(".spdx.json") else e
              for e in entries]
    report = validate_ova(write_tar(tmp_path / "broken.ova", broken), check_digests=False)
    assert {f.rule for f in report.errors} == {"sbom.invalid"}


def test_invoke_sbom_prints_it(sbom_ova: Path, sbom: DiskSbom, efi_ova: Path) -> None:
    invoke = str(REPO_ROOT / ".venv" / "bin" / "invoke")
    shown = subprocess.run([invoke, "sbom", "--path", str(sbom_ova)], capture_output=True,
                           cwd=REPO_ROOT, timeout=120)
    assert shown.returncode == 0 and shown.stdout == sbom.document
    none = subprocess.run([invoke, "sbom", "--path", str(efi_ova)], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)
    assert none.returncode == 1 and "holds no SBOM" in none.stderr
