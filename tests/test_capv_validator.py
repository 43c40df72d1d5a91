"""ovapipe.validators.capv: CRD schema of the declared apiVersion, webhook rules, GPU advice."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from ovapipe.validators.capv import crd_text, schemas, validate_machine_template

from ovapipe.paths import REPO_ROOT

SHARED_CRD = REPO_ROOT.parent / "shared" / "capv" / (
    "infrastructure.cluster.x-k8s.io_vspheremachinetemplates.yaml"
)
V1BETA1 = "infrastructure.cluster.x-k8s.io/v1beta1"
V1BETA2 = "infrastructure.cluster.x-k8s.io/v1beta2"


def template(api_version: str = V1BETA2, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cloneMode": "linkedClone",
        "datacenter": "${VSPHERE_DATACENTER}",
        "memoryMiB": 16384,
        "network": {"devices": [{"dhcp4": True, "networkName": "${VSPHERE_NETWORK}"}]},
        "numCPUs": 4,
        "template": "/DC0/vm/t",
        "hardwareVersion": "vmx-17",
        "pciDevices": [{"deviceId": 7864, "vendorId": 4318}],
    }
    base.update(spec)
    return {
        "apiVersion": api_version,
        "kind": "VSphereMachineTemplate",
        "metadata": {"name": "${CLUSTER_NAME}-worker", "namespace": "${NAMESPACE}"},
        "spec": {"template": {"spec": base}},
    }


def rules(doc: dict[str, Any]) -> set[str]:
    return validate_machine_template(doc, "t").report.rules()


@pytest.mark.skipif(not SHARED_CRD.exists(), reason="no ../shared/capv next to the repo")
def test_vendored_crd_equals_shared_copy() -> None:
    assert crd_text() == SHARED_CRD.read_text(encoding="utf-8")


def test_both_served_versions_are_known() -> None:
    assert set(schemas()) == {V1BETA1, V1BETA2}


@pytest.mark.parametrize("api_version", [V1BETA1, V1BETA2])
def test_valid_gpu_template(api_version: str) -> None:
    check = validate_machine_template(template(api_version), "t")
    assert check.report.ok and not check.report.findings, check.report.render()


def test_unknown_api_version() -> None:
    assert rules(template("infrastructure.cluster.x-k8s.io/v1alpha4")) == {"capv.api-version"}


@pytest.mark.parametrize("value", ["vmx17", "17", "vmx-017", "vmx-0", "vmx-100", "VMX-17"])
def test_hardware_version_pattern(value: str) -> None:
    assert "capv.hardware-version" in rules(template(hardwareVersion=value))


def test_gpus_need_vmx_17() -> None:
    assert rules(template(hardwareVersion="vmx-15")) == {"capv.gpu-vmx"}
    assert rules(template(hardwareVersion="vmx-15", pciDevices=[])) == set()


@pytest.mark.parametrize(
    "device",
    [
        {"deviceId": 7864},
        {"vendorId": 4318},
        {},
        {"vGPUProfile": "grid_t4-4c", "deviceId": 7864},
        {"vGPUProfile": "grid_t4-4c", "vendorId": 4318, "deviceId": 7864},
    ],
)
def test_pci_device_webhook_rule(device: dict[str, Any]) -> None:
    assert "capv.pci-device" in rules(template(pciDevices=[device]))


def test_vgpu_profile_alone_is_valid() -> None:
    assert rules(template(pciDevices=[{"vGPUProfile": "grid_t4-4c"}])) == set()


def test_signed_id_is_rejected() -> None:
    assert "capv.pci-id-range" in rules(template(pciDevices=[{"deviceId": 1, "vendorId": -32634}]))


def test_schema_errors_name_the_field() -> None:
    doc = template()
    doc["spec"]["template"]["spec"]["pciDevice"] = []  # a typo: strict fields catch it
    doc["spec"]["template"]["spec"]["numCPUs"] = "four"
    report = validate_machine_template(doc, "t").report
    messages = " ".join(f.message for f in report.errors)
    assert "'pciDevice' was unexpected" in messages
    assert "spec.template.spec.numCPUs: 'four' is not of type 'integer'" in messages
    missing = template()
    del missing["spec"]["template"]["spec"]["template"]
    assert "capv.schema" in rules(missing)


def test_placeholders_in_typed_fields_are_validated_with_samples() -> None:
    doc = template(numCPUs="${WORKER_CPUS}", memoryMiB="${WORKER_MEMORY:=32768}", diskGiB="${D}")
    check = validate_machine_template(doc, "t")
    assert check.report.ok and not check.report.findings, check.report.render()
    assert "spec.template.spec.numCPUs: ${WORKER_CPUS} validated as 2" in check.substitutions
    assert "spec.template.spec.memoryMiB: ${WORKER_MEMORY:=32768} validated as 32768" in (
        check.substitutions
    )
    # v1beta2 wants at least 2 vCPUs; a sample never hides that a literal is wrong.
    assert "capv.schema" in rules(template(numCPUs=1))


def test_sizing_warnings_only_for_gpu_nodes() -> None:
    small = validate_machine_template(template(numCPUs=2, memoryMiB=8192), "t").report
    assert small.ok and [f.rule for f in small.findings] == ["capv.gpu-sizing"] * 2
    no_gpu = template(numCPUs=2, memoryMiB=8192)
    del no_gpu["spec"]["template"]["spec"]["pciDevices"]
    assert rules(no_gpu) == set()


def test_input_is_not_modified() -> None:
    doc = template(numCPUs="${WORKER_CPUS}")
    before = copy.deepcopy(doc)
    validate_machine_template(doc, "t")
    assert doc == before


def test_vendored_crd_has_its_origin_note() -> None:
    note = (Path(REPO_ROOT) / "ovapipe" / "data" / "capv" / "README.md").read_text()
    assert "111a1ba9b" in note and "Apache" in note
