"""`invoke cluster-template`: patching a clusterctl file, new manifests, bad inputs."""

from __future__ import annotations

import difflib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ovapipe.validators.capv import validate_machine_template
from ruamel.yaml import YAML

from ovapipe.clustertemplate import (
    CUDA_TEST_POD,
    GPU_OPERATOR_SCRIPT,
    ClusterTemplateRequest,
    parse_gpu_spec,
    run,
)
from ovapipe.errors import CheckFailed, ConfigError
from ovapipe.paths import REPO_ROOT
from ovapipe.pci import PciId
from ovapipe.yamldocs import join_documents, split_documents

CLUSTER_TEMPLATE = REPO_ROOT / "tests" / "data" / "capv" / "cluster-template.yaml"
WORKER = "${CLUSTER_NAME}-worker"


def docs(text: str) -> list[Any]:
    return list(YAML(typ="safe").load_all(text))


def machine_template(text: str, name: str) -> Any:
    for doc in docs(text):
        if doc and doc.get("kind") == "VSphereMachineTemplate" and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no VSphereMachineTemplate {name}")


def changed_lines(before: str, after: str) -> tuple[list[str], list[str], list[int]]:
    removed, added, where = [], [], []
    matcher = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines(), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed += before.splitlines()[i1:i2]
        added += after.splitlines()[j1:j2]
        where.append(i1)
    return removed, added, where


def record(tmp_path: Path, **overrides: Any) -> Path:
    data = {
        "datacenter": "DC0",
        "template": "ubuntu-2004-efi-v1.30.0",
        "inventory_path": "/DC0/vm/templates/ubuntu-2004-efi-v1.30.0",
        "moref": "vm-42",
        "instance_uuid": "5003a1c2-0000-0000-0000-000000000000",
        "vmx": "vmx-17",
        "firmware": "efi",
        "secure_boot": False,
        "snapshot": "root",
        "ova_sha256": "0" * 64,
    }
    data.update(overrides)
    path = tmp_path / "publish-DC0.json"
    path.write_text(json.dumps(data))
    return path


def test_patch_changes_only_the_intended_lines(tmp_path: Path) -> None:
    before = CLUSTER_TEMPLATE.read_text()
    out = tmp_path / "out" / "cluster.yaml"
    result = run(ClusterTemplateRequest(
        in_path=CLUSTER_TEMPLATE, out_path=out, publish_record=record(tmp_path),
        gpus=["10de:20b5x2"],
    ))
    after = out.read_text()
    assert result.patched == [WORKER]
    removed, added, where = changed_lines(before, after)
    assert removed == ["      template: '${VSPHERE_TEMPLATE}'"]
    assert added == [
        "      customVMXKeys:",
        '        pciPassthru.64bitMMIOSizeGB: "512"',
        '        pciPassthru.use64bitMMIO: "TRUE"',
        "      hardwareVersion: vmx-17",
        "      pciDevices:",
        "      - deviceId: 8373",
        "        vendorId: 4318",
        "      - deviceId: 8373",
        "        vendorId: 4318",
        "      template: '/DC0/vm/templates/ubuntu-2004-efi-v1.30.0'",
    ]
    worker_start = before.index(f"  name: {WORKER}\n")
    worker_end = before.index("---", worker_start)
    first_line, last_line = before[:worker_start].count("\n"), before[:worker_end].count("\n")
    assert all(first_line <= line <= last_line for line in where)

    worker = machine_template(after, WORKER)
    check = validate_machine_template(worker, "out")
    assert check.report.ok, check.report.render()
    assert worker["spec"]["template"]["spec"]["pciDevices"] == [
        {"deviceId": 8373, "vendorId": 4318}, {"deviceId": 8373, "vendorId": 4318},
    ]
    assert (out.parent / GPU_OPERATOR_SCRIPT).read_text().startswith("#!/bin/sh")
    pod = docs((out.parent / CUDA_TEST_POD).read_text())[0]
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert any("numCPUs 2 looks too small" in w for w in result.warnings)
    assert any("memoryMiB 8192 looks too small" in w for w in result.warnings)


def test_t4_gets_no_mmio_keys_and_a_second_run_is_stable(tmp_path: Path) -> None:
    first = run(ClusterTemplateRequest(in_path=CLUSTER_TEMPLATE, gpus=["10de:1eb8"]))
    assert "customVMXKeys" not in first.text
    assert "      - deviceId: 7864\n        vendorId: 4318\n" in first.text
    patched = tmp_path / "patched.yaml"
    patched.write_text(first.text)
    second = run(ClusterTemplateRequest(in_path=patched, gpus=["10de:1eb8"]))
    assert second.text == first.text


def test_switching_gpus_replaces_devices_and_drops_stale_mmio(tmp_path: Path) -> None:
    a100 = run(ClusterTemplateRequest(in_path=CLUSTER_TEMPLATE, gpus=["10de:20b5"]))
    patched = tmp_path / "a100.yaml"
    patched.write_text(a100.text)
    t4 = run(ClusterTemplateRequest(in_path=patched, gpus=["10de:1eb8"]))
    spec = machine_template(t4.text, WORKER)["spec"]["template"]["spec"]
    assert spec["pciDevices"] == [{"deviceId": 7864, "vendorId": 4318}]
    assert "customVMXKeys" not in spec
    assert any("removed 64-bit MMIO keys" in n for n in t4.notes)


def test_control_plane_only_when_asked() -> None:
    result = run(ClusterTemplateRequest(
        in_path=CLUSTER_TEMPLATE, machine="control-plane", gpus=["10de:27b8"],
    ))
    assert result.patched == ["${CLUSTER_NAME}"]
    assert "pciDevices" not in machine_template(result.text, WORKER)["spec"]["template"]["spec"]
    cp = machine_template(result.text, "${CLUSTER_NAME}")["spec"]["template"]["spec"]
    assert cp["customVMXKeys"] == {
        "pciPassthru.use64bitMMIO": "TRUE", "pciPassthru.64bitMMIOSizeGB": "64",
    }
    explicit = run(ClusterTemplateRequest(in_path=CLUSTER_TEMPLATE, machine=WORKER))
    assert explicit.patched == [WORKER]


def test_worker_found_through_machine_deployment(tmp_path: Path) -> None:
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(CLUSTER_TEMPLATE.read_text().replace(WORKER, "${CLUSTER_NAME}-gpu"))
    result = run(ClusterTemplateRequest(in_path=renamed, gpus=["10de:1eb8"]))
    assert result.patched == ["${CLUSTER_NAME}-gpu"]


def test_unknown_gpu_with_and_without_mmio_gb() -> None:
    without = run(ClusterTemplateRequest(in_path=CLUSTER_TEMPLATE, gpus=["8086:0bd5"]))
    assert "customVMXKeys" not in without.text
    assert any("no 64-bit MMIO keys for 8086:0bd5" in w for w in without.warnings)
    assert "      - deviceId: 3029\n        vendorId: 32902\n" in without.text
    with_gb = run(ClusterTemplateRequest(
        in_path=CLUSTER_TEMPLATE, gpus=["8086:0bd5x2"], mmio_gb="48",
    ))
    assert 'pciPassthru.64bitMMIOSizeGB: "128"' in with_gb.text


def test_new_manifest_without_in_validates() -> None:
    result = run(ClusterTemplateRequest(gpus=["10de:2331x4"], template="/DC1/vm/gpu-node"))
    (doc,) = docs(result.text)
    assert doc["apiVersion"] == "infrastructure.cluster.x-k8s.io/v1beta1"
    assert doc["metadata"]["name"] == WORKER
    spec = doc["spec"]["template"]["spec"]
    assert spec["datacenter"] == "${VSPHERE_DATACENTER}"
    assert spec["template"] == "/DC1/vm/gpu-node"
    assert spec["customVMXKeys"]["pciPassthru.64bitMMIOSizeGB"] == "1024"
    assert len(spec["pciDevices"]) == 4
    assert validate_machine_template(doc, "new").report.ok
    assert not result.warnings


def test_existing_newer_hardware_version_is_kept(tmp_path: Path) -> None:
    newer = tmp_path / "newer.yaml"
    newer.write_text(CLUSTER_TEMPLATE.read_text().replace(
        "      folder: '${VSPHERE_FOLDER}'\n      memoryMiB: 8192\n",
        "      folder: '${VSPHERE_FOLDER}'\n      hardwareVersion: vmx-19\n      memoryMiB: 8192\n",
    ))
    result = run(ClusterTemplateRequest(in_path=newer, gpus=["10de:1eb8"]))
    assert machine_template(result.text, WORKER)["spec"]["template"]["spec"][
        "hardwareVersion"] == "vmx-19"
    assert any("kept hardwareVersion vmx-19 (newer than vmx-17)" in n for n in result.notes)
    assert machine_template(result.text, "${CLUSTER_NAME}")["spec"]["template"]["spec"][
        "hardwareVersion"] == "vmx-19"  # untouched control plane template


def test_publish_record_without_snapshot_warns_for_linked_clones(tmp_path: Path) -> None:
    result = run(ClusterTemplateRequest(
        in_path=CLUSTER_TEMPLATE, publish_record=record(tmp_path, snapshot=None),
    ))
    assert any("has no snapshot" in w for w in result.warnings)
    with_snapshot = run(ClusterTemplateRequest(
        in_path=CLUSTER_TEMPLATE, publish_record=record(tmp_path),
    ))
    assert not any("snapshot" in w for w in with_snapshot.warnings)


def test_publish_record_as_publish_writes_it(tmp_path: Path) -> None:
    result = run(ClusterTemplateRequest(
        in_path=CLUSTER_TEMPLATE, publish_record=record(tmp_path, vmx=17, snapshot="root"),
    ))
    spec = machine_template(result.text, WORKER)["spec"]["template"]["spec"]
    assert spec["template"] == "/DC0/vm/templates/ubuntu-2004-efi-v1.30.0"
    assert not any("vmx" in w for w in result.warnings)


def test_publish_record_vmx_below_asked_warns(tmp_path: Path) -> None:
    result = run(ClusterTemplateRequest(
        in_path=CLUSTER_TEMPLATE, publish_record=record(tmp_path, vmx="vmx-15"),
        hardware_version="vmx-19",
    ))
    assert any("is vmx-15, below hardwareVersion vmx-19" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"gpus": ["10de-1eb8"]}, "--gpu '10de-1eb8': expected VENDOR:DEVICE"),
        ({"gpus": ["10de:1eb8x0"]}, "count must be at least 1"),
        ({"gpus": ["10de:1eb8x99999999999999999999"]}, "at most 128 passthrough devices"),
        ({"gpus": ["10de:1eb8x100", "10de:20b5x29"]}, "--gpu: 129 GPUs in one VM"),
        ({"gpus": ["10de:1eb8"], "mmio_gb": "lots"}, "--mmio-gb 'lots'"),
        ({"mmio_gb": "64"}, "--mmio-gb needs --gpu"),
        ({"hardware_version": "vmx-017"}, "--hardware-version 'vmx-017'"),
        ({"hardware_version": "17"}, r"requires \^vmx-"),
        ({"machine": "nope"}, "no VSphereMachineTemplate named 'nope'; available: "),
        ({"template": "x", "publish_record": Path("r.json")}, "not both"),
    ],
)
def test_bad_inputs(request_kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        run(ClusterTemplateRequest(in_path=CLUSTER_TEMPLATE, **request_kwargs))
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"vmx": "vmx-17"}), "field 'inventory_path' is missing"),
        (json.dumps({"inventory_path": "tpl", "vmx": "vmx-17"}), "is not an inventory path"),
        (json.dumps({"inventory_path": "/DC0/vm/t", "vmx": "seventeen"}), "field 'vmx'"),
    ],
)
def test_bad_publish_record(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "publish-DC0.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        run(ClusterTemplateRequest(in_path=CLUSTER_TEMPLATE, publish_record=path))


def test_duplicate_machine_template_names(tmp_path: Path) -> None:
    text = CLUSTER_TEMPLATE.read_text()
    worker = text[text.index("apiVersion: infrastructure.cluster.x-k8s.io/v1beta2\nkind: "
                             "VSphereMachineTemplate\nmetadata:\n  name: ${CLUSTER_NAME}-worker"):]
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.rstrip("\n") + "\n---\n" + worker[:worker.index("---")])
    with pytest.raises(ConfigError, match="ambiguous"):
        run(ClusterTemplateRequest(in_path=twice))


def test_missing_or_bad_input_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        run(ClusterTemplateRequest(in_path=tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        run(ClusterTemplateRequest(in_path=bad))
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text("kind: VSphereMachineTemplate\nmetadata: [1]\n")
    with pytest.raises(ConfigError, match="no VSphereMachineTemplate documents"):
        run(ClusterTemplateRequest(in_path=unnamed))
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(ConfigError, match="no VSphereMachineTemplate documents"):
        run(ClusterTemplateRequest(in_path=empty))


@pytest.mark.parametrize(
    ("machine", "expected"),
    [("worker", "'${CLUSTER_NAME}-worker' or referenced by a MachineDeployment"),
     ("control-plane", "'${CLUSTER_NAME}' or referenced by a KubeadmControlPlane")],
)
def test_no_template_for_the_role(tmp_path: Path, machine: str, expected: str) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("kind: VSphereMachineTemplate\nmetadata:\n  name: gpu\n")
    with pytest.raises(ConfigError, match=re.escape(f"expected one named {expected}")):
        run(ClusterTemplateRequest(in_path=other, machine=machine))


def test_invalid_result_is_not_written(tmp_path: Path) -> None:
    out = tmp_path / "cluster.yaml"
    with pytest.raises(CheckFailed, match=r"capv\.gpu-vmx") as info:
        run(ClusterTemplateRequest(
            in_path=CLUSTER_TEMPLATE, out_path=out, gpus=["10de:1eb8"], hardware_version="vmx-15",
        ))
    assert info.value.exit_code == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_gpu_spec_forms() -> None:
    assert parse_gpu_spec("10DE:20B5x2").pci_id == PciId(0x10DE, 0x20B5)
    assert parse_gpu_spec("10DE:20B5x2").count == 2
    assert parse_gpu_spec("0x10de:0x1234").pci_id == PciId(0x10DE, 0x1234)
    assert parse_gpu_spec("0x10de:0x1234X3").count == 3


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "cluster-template", *args], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=60,
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    ok = _invoke("--gpu", "10de:1eb8")
    assert ok.returncode == 0, ok.stderr
    assert "kind: VSphereMachineTemplate" in ok.stdout
    usage = _invoke("--in", str(CLUSTER_TEMPLATE), "--machine", "gpu-pool")
    assert usage.returncode == 2
    assert "no VSphereMachineTemplate named 'gpu-pool'" in usage.stderr
    out = tmp_path / "c.yaml"
    failed = _invoke("--gpu", "10de:1eb8", "--hardware-version", "vmx-13", "--out", str(out))
    assert failed.returncode == 1 and "nothing written" in failed.stderr
    assert "Traceback" not in usage.stderr + failed.stderr and not out.exists()


@given(st.lists(st.text(alphabet="ab: -\n#'", max_size=40), max_size=6), st.booleans())
def test_split_and_join_documents_round_trip(bodies: list[str], leading: bool) -> None:
    text = ("---\n" if leading else "") + "---\n".join(
        body if body.endswith("\n") or not body else body + "\n" for body in bodies
    )
    assert join_documents(split_documents(text)) == text
