"""`invoke cluster-template`: write or patch CAPV VSphereMachineTemplates for GPU nodes.

The stages pass typed records: the flags become ``Changes`` (clustertemplate_changes), the
input file a ``TemplateFile`` whose ``Target``s say what to change (clustertemplate_find), the
patch returns ``Patched`` templates with the paths ovapipe wrote (clustertemplate_patch), and
those are checked against CAPV's CRD schema and webhook rules before anything is written
(clustertemplate_check). With an input file only the chosen templates change, and in them
only ``template``, ``pciDevices``, ``hardwareVersion`` and the 64-bit MMIO ``customVMXKeys``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ovapipe import capv
from ovapipe.clustertemplate_changes import (
    ChangeFlags,
    Changes,
    check_hardware_version,
    parse_gpu_spec,
    parse_mmio_gb,
    read_publish_record,
)
from ovapipe.clustertemplate_check import check_patched
from ovapipe.clustertemplate_find import choose_targets, read_template_file
from ovapipe.clustertemplate_patch import OWNED_PATHS, Patched, new_machine_template, patch_file
from ovapipe.files import read_input_text, write_text
from ovapipe.hardware import GPU_MIN_VMX, vmx_name
from ovapipe.yamldocs import YamlDocument, dump_new, load_safe

__all__ = [
    "CUDA_TEST_POD", "GPU_OPERATOR_SCRIPT", "ClusterTemplateRequest", "ClusterTemplateResult",
    "check_hardware_version", "parse_gpu_spec", "parse_mmio_gb", "read_publish_record", "run",
    "write_post_cluster_checks",
]

GPU_OPERATOR_SCRIPT: Final = "gpu-operator-install.sh"
CUDA_TEST_POD: Final = "cuda-vector-add.yaml"


@dataclass
class ClusterTemplateRequest:
    in_path: Path | None = None
    out_path: Path | None = None
    publish_record: Path | None = None
    template: str | None = None
    gpus: Sequence[str] = ()
    machine: str = capv.MACHINE_WORKER
    hardware_version: str = vmx_name(GPU_MIN_VMX)
    mmio_gb: str | int | None = None


@dataclass
class ClusterTemplateResult:
    text: str
    patched: list[str]
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        return [f"warning: {w}" for w in self.warnings] + self.notes


def _new_manifest(machine: str, changes: Changes, notes: list[str],
                  warnings: list[str]) -> tuple[str, list[str]]:
    role = capv.MACHINE_ROLES.get(machine)
    name = role.template_name if role else machine
    data = new_machine_template(name, changes, notes, warnings)
    notes.append(
        f"{name}: new {capv.DEFAULT_API_VERSION} manifest (served by every CAPV release with "
        "pciDevices; deprecated in favour of v1beta2 by current CAPV)"
    )
    text = "---\n" + dump_new(data)
    loaded = load_safe(YamlDocument("", text), "new manifest")
    check_patched([Patched(name, loaded, None)], "new manifest", warnings, notes,
                  strict=OWNED_PATHS)
    return text, [name]


def _patch(path: Path, machine: str, changes: Changes, notes: list[str],
           warnings: list[str]) -> tuple[str, list[str]]:
    found = read_template_file(read_input_text(path, f"--in {path}"), str(path))
    targets = choose_targets(machine, found)
    result = patch_file(found, targets, changes, notes, warnings)
    check_patched(result.patched, str(path), warnings, notes)
    return result.text, [item.name for item in result.patched]


def run(request: ClusterTemplateRequest) -> ClusterTemplateResult:
    from ovapipe.clustertemplate_changes import changes_from

    notes: list[str] = []
    warnings: list[str] = []
    flags = ChangeFlags(request.publish_record, request.template, request.gpus,
                        request.hardware_version, request.mmio_gb)
    changes = changes_from(flags, notes, warnings)
    if request.in_path is None:
        text, patched = _new_manifest(request.machine, changes, notes, warnings)
    else:
        text, patched = _patch(request.in_path, request.machine, changes, notes, warnings)
    result = ClusterTemplateResult(text, patched, notes=notes, warnings=warnings)
    if request.out_path is not None:
        write_text(request.out_path, text)
        result.written.append(request.out_path)
        result.written.extend(write_post_cluster_checks(request.out_path.parent))
        result.notes.append("wrote " + ", ".join(str(p) for p in result.written))
    else:
        result.notes.append(
            f"{GPU_OPERATOR_SCRIPT} and {CUDA_TEST_POD} are written beside the manifest with --out"
        )
    return result


CUDA_VECTOR_ADD: Final = """\
# A one-shot pod that runs a CUDA vector addition on one GPU (CAPV docs/gpu-pci.md).
# kubectl apply -f cuda-vector-add.yaml; kubectl logs cuda-vector-add  -> "Test PASSED"
apiVersion: v1
kind: Pod
metadata:
  name: cuda-vector-add
spec:
  restartPolicy: OnFailure
  containers:
  - name: cuda-vector-add
    image: registry.k8s.io/cuda-vector-add:v0.1
    resources:
      limits:
        nvidia.com/gpu: 1
"""

GPU_OPERATOR_INSTALL: Final = """\
#!/bin/sh
# After the workload cluster's nodes are Ready (with a CNI): install NVIDIA's gpu-operator
# and run the CUDA test pod (CAPV docs/gpu-pci.md).
# Usage: KUBECONFIG=./WORKLOAD.kubeconfig sh gpu-operator-install.sh
set -eu
here=$(dirname "$0")
helm repo add nvidia https://helm.ngc.nvidia.com/nvidia
helm repo update
helm install --wait --generate-name -n gpu-operator --create-namespace nvidia/gpu-operator
kubectl get pods -n gpu-operator
kubectl apply -f "$here/cuda-vector-add.yaml"
echo "then: kubectl logs cuda-vector-add   (expect: Test PASSED)"
"""


def write_post_cluster_checks(folder: Path) -> list[Path]:
    script = folder / GPU_OPERATOR_SCRIPT
    pod = folder / CUDA_TEST_POD
    write_text(script, GPU_OPERATOR_INSTALL)
    write_text(pod, CUDA_VECTOR_ADD)
    return [script, pod]
