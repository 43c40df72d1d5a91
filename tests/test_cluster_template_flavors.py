"""cluster-template against every CAPV flavor (tests/data/capv/flavors: main and release-1.9)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovapipe.clustertemplate import ClusterTemplateRequest, run
from ovapipe.errors import ConfigError
from ovapipe.paths import REPO_ROOT
from ovapipe.yamldocs import load_safe, split_documents

FLAVORS_DIR = REPO_ROOT / "tests" / "data" / "capv" / "flavors"
FLAVORS = sorted(p for p in FLAVORS_DIR.glob("*/*template*.yaml") if not p.name.startswith("infra"))
IDS = [f"{p.parent.name}/{p.name}" for p in FLAVORS]
H100 = "10de:2331"


def test_every_flavor_is_present() -> None:
    """The suite never skips for want of them: five of main, four of release-1.9."""
    assert len(FLAVORS) == 9
    assert {p.parent.name for p in FLAVORS} == {"main", "release-1.9"}


def documents(text: str) -> list[Any]:
    return [load_safe(d, "out") for d in split_documents(text)]


def by_kind(text: str, kind: str) -> list[Any]:
    return [d for d in documents(text) if isinstance(d, dict) and d.get("kind") == kind]


def template(text: str, name: str) -> Any:
    (found,) = [d for d in by_kind(text, "VSphereMachineTemplate") if d["metadata"]["name"] == name]
    return found["spec"]["template"]["spec"]


def references(text: str) -> dict[str, list[str]]:
    """role -> the VSphereMachineTemplate names its objects reference."""
    from ovapipe.clustertemplate_find import read_template_file

    found = read_template_file(text, "out")
    roles: dict[str, list[str]] = {}
    for reference in found.references:
        roles.setdefault(str(reference.role), []).append(reference.target)
    return roles


@pytest.mark.parametrize("flavor", FLAVORS, ids=IDS)
def test_worker_gets_gpus_and_the_control_plane_does_not(flavor: Path) -> None:
    original = flavor.read_text()
    result = run(ClusterTemplateRequest(in_path=flavor, gpus=[H100]))
    roles = references(result.text)
    for name in roles["worker"]:
        spec = template(result.text, name)
        assert spec["pciDevices"] == [{"deviceId": 0x2331, "vendorId": 0x10DE}]
        assert spec["customVMXKeys"]["pciPassthru.64bitMMIOSizeGB"] == "256"
    for name in roles["control-plane"]:
        assert "pciDevices" not in template(result.text, name)
    assert not [w for w in result.warnings if "capv.schema" in w], result.warnings
    # every document that is not a changed template or a repointed reference is kept as it was
    before = {d.text for d in split_documents(original)}
    kept = [d.text for d in split_documents(result.text) if d.text in before]
    assert len(kept) >= len(before) - 2


@pytest.mark.parametrize("flavor", FLAVORS, ids=IDS)
def test_control_plane_of_every_flavor(flavor: Path) -> None:
    if "ignition" in flavor.name:
        with pytest.raises(ConfigError, match=re.escape(
            "'${CLUSTER_NAME}' serves the control plane and also MachineDeployment "
            "${CLUSTER_NAME}-md-0: patching it gives every one of those machines GPUs. "
            "Pass --machine '${CLUSTER_NAME}'"
        )):
            run(ClusterTemplateRequest(in_path=flavor, machine="control-plane", gpus=[H100]))
        return
    result = run(ClusterTemplateRequest(in_path=flavor, machine="control-plane", gpus=[H100]))
    roles = references(result.text)
    (name,) = set(roles["control-plane"])
    assert result.patched == [name]
    assert template(result.text, name)["pciDevices"]
    for worker in roles["worker"]:
        assert "pciDevices" not in template(result.text, worker)


@pytest.mark.parametrize("release", ["main", "release-1.9"])
def test_shared_template_is_split_for_the_worker(release: str) -> None:
    """Measured: ignition's one template for both roles got pciDevices, exit 0, "other
    documents unchanged": every control-plane VM then asked for a GPU."""
    flavor = FLAVORS_DIR / release / "cluster-template-ignition.yaml"
    result = run(ClusterTemplateRequest(in_path=flavor, gpus=["10de:1eb8"]))
    assert result.patched == ["${CLUSTER_NAME}-gpu-worker"]
    assert "pciDevices" not in template(result.text, "${CLUSTER_NAME}")
    assert template(result.text, "${CLUSTER_NAME}-gpu-worker")["pciDevices"]
    assert references(result.text) == {
        "control-plane": ["${CLUSTER_NAME}"], "worker": ["${CLUSTER_NAME}-gpu-worker"],
    }
    said = "\n".join(result.notes)
    assert ("${CLUSTER_NAME} is shared by KubeadmControlPlane ${CLUSTER_NAME}, "
            "MachineDeployment ${CLUSTER_NAME}-md-0: wrote a separate GPU worker template "
            "${CLUSTER_NAME}-gpu-worker and pointed MachineDeployment ${CLUSTER_NAME}-md-0 at it"
            ) in said
    assert "repointed MachineDeployment ${CLUSTER_NAME}-md-0" in said
    # the copy keeps everything of the shared template but its name and ovapipe's fields
    shared = template(flavor.read_text(), "${CLUSTER_NAME}")
    copy = template(result.text, "${CLUSTER_NAME}-gpu-worker")
    assert {k: v for k, v in copy.items() if k not in ("pciDevices", "hardwareVersion")} == shared


def test_shared_template_patched_when_named_explicitly_with_a_warning() -> None:
    flavor = FLAVORS_DIR / "main" / "cluster-template-ignition.yaml"
    result = run(ClusterTemplateRequest(in_path=flavor, machine="${CLUSTER_NAME}",
                                        gpus=["10de:1eb8"]))
    assert result.patched == ["${CLUSTER_NAME}"]
    assert any("every one of those machines gets these GPUs" in w for w in result.warnings)


def test_split_name_taken_is_refused(tmp_path: Path) -> None:
    flavor = FLAVORS_DIR / "main" / "cluster-template-ignition.yaml"
    extra = tmp_path / "taken.yaml"
    extra.write_text(flavor.read_text() + "\n---\napiVersion: infrastructure.cluster.x-k8s.io/"
                     "v1beta2\nkind: VSphereMachineTemplate\nmetadata:\n  name: "
                     "${CLUSTER_NAME}-gpu-worker\nspec:\n  template:\n    spec: {}\n")
    with pytest.raises(ConfigError, match="is taken; pass --machine NAME"):
        run(ClusterTemplateRequest(in_path=extra, gpus=["10de:1eb8"]))


def test_node_ipam_placeholders_are_opaque_to_patterns() -> None:
    """Measured: main's node-ipam flavor failed the v1beta2 name patterns on
    ${NODE_IPAM_POOL_*} in fields ovapipe does not touch, so nothing was written."""
    flavor = FLAVORS_DIR / "main" / "cluster-template-node-ipam.yaml"
    result = run(ClusterTemplateRequest(in_path=flavor, gpus=["10de:1eb8"]))
    pools = template(result.text, "${CLUSTER_NAME}-worker")["network"]["devices"][0][
        "addressesFromPools"]
    assert pools[0]["name"] == "${NODE_IPAM_POOL_NAME}"


def test_preexisting_schema_error_is_a_warning_naming_its_path(tmp_path: Path) -> None:
    flavor = FLAVORS_DIR / "main" / "cluster-template.yaml"
    broken = tmp_path / "broken.yaml"
    text = flavor.read_text()
    assert text.count("      diskGiB: 25\n") == 2
    broken.write_text(text.replace("      diskGiB: 25\n", "      diskGiB: lots\n"))
    result = run(ClusterTemplateRequest(in_path=broken, gpus=["10de:1eb8"]))
    (warning,) = [w for w in result.warnings if "capv.schema-input" in w]
    assert "spec.template.spec.diskGiB: 'lots' is not of type 'integer'" in warning
    assert "in the input already" in warning
    assert template(result.text, "${CLUSTER_NAME}-worker")["pciDevices"]


def test_placeholder_in_a_field_ovapipe_writes_is_checked_strictly(tmp_path: Path) -> None:
    from ovapipe.validators.capv import validate_machine_template

    doc = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "VSphereMachineTemplate",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"template": "t", "network": {"devices": [
            {"networkName": "n", "addressesFromPools": [
                {"apiGroup": "${G}", "kind": "${K}", "name": "${N}"}]}]}}}},
    }
    pools = ("spec", "template", "spec", "network")
    assert validate_machine_template(doc, "d", owned=[("metadata",)]).report.ok
    strict = validate_machine_template(doc, "d", owned=[pools])
    assert {f.rule for f in strict.report.errors} == {"capv.schema"}


def test_gpu_flag_with_decimal_ids_is_warned_about() -> None:
    result = run(ClusterTemplateRequest(in_path=FLAVORS[0], gpus=["4318:7864x2"]))
    assert any("--gpu '4318:7864' was read as hex 4318:7864" in w and "10de:1eb8" in w
               for w in result.warnings), result.warnings


_VAR = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,20}\Z")
_LABEL = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd"),
                               whitelist_characters="-._$", max_codepoint=0x2FF),
                 min_size=1, max_size=24)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variables=st.lists(_VAR, min_size=3, max_size=3), suffix=_LABEL)
def test_placeholders_never_fail_form_rules(variables: list[str], suffix: str) -> None:
    """Any ${VAR} (alone or inside a longer string) in fields ovapipe does not write passes."""
    from ovapipe.validators.capv import validate_machine_template

    group, kind, name = (f"${{{v}}}" for v in variables)
    doc = {
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "VSphereMachineTemplate",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"template": "t", "network": {"devices": [
            {"networkName": "n", "addressesFromPools": [
                {"apiGroup": group, "kind": kind + suffix, "name": name}]}]}}}},
    }
    check = validate_machine_template(doc, "d", owned=[("spec", "template", "spec", "template")])
    assert check.report.ok, check.report.render()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_LABEL)
def test_shared_template_of_any_name_is_split(tmp_path_factory: pytest.TempPathFactory,
                                              name: str) -> None:
    flavor = FLAVORS_DIR / "release-1.9" / "cluster-template-ignition.yaml"
    renamed = tmp_path_factory.mktemp("names") / "renamed.yaml"
    renamed.write_text(flavor.read_text().replace("'${CLUSTER_NAME}'", f"'{name}'"))
    result = run(ClusterTemplateRequest(in_path=renamed, gpus=["10de:1eb8"]))
    roles = references(result.text)
    assert result.patched == [f"{name}-gpu-worker"]
    assert roles["worker"] == [f"{name}-gpu-worker"] and name in roles["control-plane"]
    assert "pciDevices" not in template(result.text, name)
