"""Offline image inspection (image.* rules): a test disk violating each rule is caught."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from ovapipe.validators.ova import RULES, validate_ova

from ovapipe.inspection import ImageExpectations, inspect_root, upstream_version
from ovapipe.ova import assemble_ova
from ovapipe.ova.facts import BuildFacts
from ovapipe.ova.grains import WindowFile
from ovapipe.paths import REPO_ROOT
from ovapipe.rootfs import open_root_fs
from ovapipe.testdisk import RootContent, make_test_disk

KUBE, CONTAINERD = "1.30.5", "1.7.27"
EXPECT = ImageExpectations(KUBE, CONTAINERD)
CLEAN = RootContent(kubernetes_version=KUBE, containerd_version=CONTAINERD)

CASES: dict[str, tuple[RootContent, set[str]]] = {
    "kubelet missing": (replace(CLEAN, missing_packages=("kubelet",)), {"image.package-missing"}),
    "containerd missing": (replace(CLEAN, missing_packages=("containerd",)),
                           {"image.package-missing"}),
    "older Kubernetes": (replace(CLEAN, kubernetes_version="1.29.9"), {"image.package-version"}),
    "other containerd": (replace(CLEAN, containerd_version="1.6.1"), {"image.package-version"}),
    "no datasource_list": (replace(CLEAN, guestinfo_datasource=False), {"image.no-guestinfo"}),
    "datasource_list without VMware": (
        replace(CLEAN, extra_files={"etc/cloud/cloud.cfg.d/99-late.cfg":
                                    "datasource_list:\n  - NoCloud\n  - None\n"}),
        {"image.no-guestinfo"},
    ),
    "SSH host keys left": (replace(CLEAN, ssh_host_keys=True), {"image.ssh-host-keys"}),
    "machine-id left": (replace(CLEAN, machine_id="0123456789abcdef0123456789abcdef\n"),
                        {"image.machine-id"}),
    "builder password": (replace(CLEAN, builder_shadow="builder:$6$salt$hash:19700:0:99999:7:::"),
                         {"image.builder-password"}),
    "builder without password": (replace(CLEAN, builder_shadow="builder::19700:0:99999:7:::"),
                                 {"image.builder-password"}),
}


def _inspect(disk: Path) -> set[str]:
    with disk.open("rb") as handle:
        root = open_root_fs(WindowFile(handle))
        return {f.rule for f in inspect_root(root, EXPECT, "disk").findings}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_violation_is_caught(case: str, tmp_path: Path) -> None:
    content, expected = CASES[case]
    disk = make_test_disk("efi", tmp_path / "d.vmdk", root=content)
    assert _inspect(disk) == expected


def test_a_clean_image_passes_and_locked_builder_is_fine(tmp_path: Path) -> None:
    locked = replace(CLEAN, builder_shadow="builder:!$6$salt$hash:19700:0:99999:7:::",
                     machine_id="uninitialized\n",
                     extra_files={"etc/cloud/cloud.cfg": "datasource_list: [ NoCloud ]\n"})
    assert _inspect(make_test_disk("efi", tmp_path / "ok.vmdk", root=locked)) == set()


def test_every_image_rule_has_a_case() -> None:
    tripped = set().union(*(rules for _, rules in CASES.values())) | {"image.unreadable"}
    assert tripped == {rule for rule in RULES if rule.startswith("image.")}


def test_upstream_version() -> None:
    assert upstream_version("1.30.5-1.1") == "1.30.5"
    assert upstream_version("1:8.2p1-4ubuntu0.11") == "8.2p1"
    assert upstream_version("1.7.27-0ubuntu1~20.04.1") == "1.7.27"
    assert upstream_version("2.0") == "2.0"


@pytest.fixture(scope="module")
def inspected_ova(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inspect")
    disk = make_test_disk("efi", folder / "d.vmdk", root=replace(CLEAN, ssh_host_keys=True))
    facts = BuildFacts(distro_name="ubuntu", distro_version="20.04",
                       kubernetes_version=f"v{KUBE}", image_version="x", build_timestamp=1,
                       containerd_version=CONTAINERD,
                       git_commit="0000000000000000000000000000000000000000")
    return assemble_ova(folder, "inspect-me", [disk], facts).path


def test_validate_ova_inspect_uses_the_descriptor_versions(inspected_ova: Path) -> None:
    assert validate_ova(inspected_ova).ok  # not inspected unless asked
    report = validate_ova(inspected_ova, inspect=True)
    assert {f.rule for f in report.errors} == {"image.ssh-host-keys"}
    assert report.inspection is not None and report.inspection["packages"]["kubelet"] == (
        f"{KUBE}-1.1")
    older = validate_ova(inspected_ova, inspect=ImageExpectations("1.31.0", CONTAINERD))
    assert {f.rule for f in older.errors} == {"image.ssh-host-keys", "image.package-version"}
    result = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "invoke"), "validate-ova",
                             "--path", str(inspected_ova), "--inspect", "--json"],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 1
    assert "image.ssh-host-keys" in {f["rule"] for f in json.loads(result.stdout)["findings"]}


def test_an_unreadable_root_is_reported(tmp_path: Path) -> None:
    noise = make_test_disk("efi", tmp_path / "n.vmdk", fill_random=True)
    facts = BuildFacts(distro_name="ubuntu", distro_version="20.04", kubernetes_version="v1",
                       image_version="x", build_timestamp=1,
                       git_commit="0000000000000000000000000000000000000000")
    ova = assemble_ova(tmp_path, "noise", [noise], facts).path
    assert {f.rule for f in validate_ova(ova, inspect=True).errors} == {"image.unreadable"}
