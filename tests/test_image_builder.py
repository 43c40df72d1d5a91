"""image-builder interop: the exported var file, the OVA name and the ProductSection keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ovapipe.ova.facts import BuildFacts
from ovapipe.paths import VARS_DIR
from ovapipe.runs import kube_image_name
from ovapipe.varfiles import IMAGE_BUILDER_VARS_FILE, resolve, write_vars

DATA = json.loads((Path(__file__).parent / "data" / "image-builder" / "variables.json")
                  .read_text())
KNOWN = {name for names in DATA["sources"].values() for name in names}
SITE = VARS_DIR / "site" / "example.json"


def exported(tmp_path: Path, *sets: str) -> dict[str, str]:
    resolved = resolve("ubuntu-2004-efi", [SITE], sets, env={"VSPHERE_PASSWORD": "not-written"})
    path = write_vars(resolved, tmp_path, "image-builder")
    assert path.name == IMAGE_BUILDER_VARS_FILE
    data: dict[str, str] = json.loads(path.read_text())
    return data


def test_the_export_has_every_variable_image_builder_needs_and_only_its_names(
    tmp_path: Path,
) -> None:
    data = exported(tmp_path, "kubernetes_version=1.31.4", "containerd_version=1.7.27",
                    "cni_version=1.6.2")
    assert [n for n in DATA["required_for_the_same_kubernetes"] if n not in data] == []
    assert sorted(set(data) - KNOWN) == []
    assert all(isinstance(v, str) for v in data.values())  # PACKER_VAR_FILES are strings
    assert data["kubernetes_semver"] == "v1.31.4" and data["kubernetes_series"] == "v1.31"
    assert re.fullmatch(r"1\.31\.4-\d+\.\d+", data["kubernetes_deb_version"])
    assert data["kubernetes_rpm_version"] == "1.31.4"
    assert data["containerd_version"] == "1.7.27" and data["kubernetes_cni_semver"] == "v1.6.2"


def test_the_defaults_pin_containerd_and_cni(tmp_path: Path) -> None:
    defaults = json.loads((VARS_DIR / "defaults.json").read_text())
    data = exported(tmp_path)
    assert data["containerd_version"] == defaults["containerd_version"]
    assert data["kubernetes_cni_semver"] == f"v{defaults['cni_version']}"


def test_nightly_names_follow_image_builders_os_kube_semver() -> None:
    name = kube_image_name("ubuntu-2004-efi-kube", "1.30.5", "20261203-021700-1a2b3c4-77")
    assert name == "ubuntu-2004-efi-kube-v1.30.5-20261203-021700-1a2b3c4-77"
    assert kube_image_name("ubuntu-2004-efi-kube-v1.30.5", "v1.30.5", "x") == (
        "ubuntu-2004-efi-kube-v1.30.5-x")


def test_the_product_section_carries_image_builders_keys() -> None:
    facts = BuildFacts(distro_name="ubuntu", distro_version="20.04",
                       kubernetes_version="v1.30.5", image_version="ubuntu-2004-efi-kube-v1.30.5",
                       build_timestamp=1_764_320_000, containerd_version="1.7.27",
                       cni_version="1.2.0")
    properties = dict(facts.properties())
    assert [k for k in DATA["product_section_keys"] if not properties.get(k)] == []
    assert properties["CONTAINERD_VERSION"] == "v1.7.27"
    assert properties["CNI_VERSION"] == "v1.2.0"
    assert "OVAPIPE_COMMIT" in properties and "VMX_VERSION" in properties


def test_a_profiles_image_is_named_os_kube_semver_unless_the_user_names_it() -> None:
    env = {"VSPHERE_PASSWORD": "not-written"}
    values = resolve("ubuntu-2004-efi", [SITE], ["kubernetes_version=1.31.4"], env=env).values
    assert values["vm_name"] == "ubuntu-2004-efi-kube-v1.31.4"
    named = resolve("ubuntu-2004-efi", [SITE], ["vm_name=mine"], env=env).values
    assert named["vm_name"] == "mine"


def test_an_assembled_ova_reads_back_with_image_builders_keys(efi_vmdk: Path,
                                                              tmp_path: Path) -> None:
    from ovapipe.ova import assemble_ova
    from ovapipe.ova.reader import read_ova

    facts = BuildFacts(distro_name="ubuntu", distro_version="20.04",
                       kubernetes_version="v1.30.5", image_version="ubuntu-2004-efi-kube-v1.30.5",
                       build_timestamp=1_764_320_000, containerd_version="1.7.27",
                       cni_version="1.2.0")
    ova = assemble_ova(tmp_path, "ubuntu-2004-efi-kube-v1.30.5", [efi_vmdk], facts).path
    product = read_ova(ova).descriptor.product
    assert [k for k in DATA["product_section_keys"] if not product.get(k)] == []
    assert product["KUBERNETES_SEMVER"] == "v1.30.5" and product["DISTRO_ARCH"] == "amd64"
