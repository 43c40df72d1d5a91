"""`invoke cluster-template`: write or patch CAPV VSphereMachineTemplates for GPU nodes.

With an input file only the chosen VSphereMachineTemplate documents change, and in them only
``template``, ``pciDevices``, ``hardwareVersion`` and the 64-bit MMIO ``customVMXKeys``; every
other byte of the file is kept. The result is checked against CAPV's CRD schema and webhook
rules before anything is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ovapipe import capv
from ovapipe.bounded import load_json
from ovapipe.capv import GpuRequest, MmioPlan, plan_mmio
from ovapipe.errors import CheckFailed, ConfigError
from ovapipe.files import read_input_text, write_text
from ovapipe.findings import ERROR
from ovapipe.hardware import (
    GPU_FIRMWARE,
    GPU_FIRMWARE_REASON,
    GPU_MIN_VMX,
    describe_vmx_need,
    parse_vmx,
    vmx_name,
)
from ovapipe.pci import parse_hex_pair
from ovapipe.yamldocs import (
    RoundTrip,
    YamlDocument,
    dump_new,
    join_documents,
    load_safe,
    split_documents,
)

GPU_OPERATOR_SCRIPT: Final = "gpu-operator-install.sh"
CUDA_TEST_POD: Final = "cuda-vector-add.yaml"
MMIO_GB_MAX: Final = 65536

_GPU_SPEC_RE: Final = re.compile(
    r"^(?P<id>(?:0[xX])?[0-9a-fA-F]{1,4}:(?:0[xX])?[0-9a-fA-F]{1,4})(?:[xX*](?P<count>\d+))?$"
)


@dataclass(frozen=True)
class PublishRecord:
    """The fields of ``output/NAME/publish-DC.json`` that cluster-template uses."""

    path: Path
    datacenter: str
    template: str
    inventory_path: str
    vmx: int
    firmware: str | None
    snapshot: str | None


def read_publish_record(path: Path) -> PublishRecord:
    text_of_record = read_input_text(path, f"--publish-record {path}")
    try:
        raw = load_json(text_of_record, f"--publish-record {path}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--publish-record {path}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--publish-record {path}: expected a JSON object from `invoke publish`")

    def text(key: str) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"--publish-record {path}: field {key!r} is missing or not a string "
                "(is this a publish-DC.json written by `invoke publish`?)"
            )
        return value

    inventory_path = text("inventory_path")
    if not inventory_path.startswith("/"):
        raise ConfigError(
            f"--publish-record {path}: inventory_path {inventory_path!r} is not an inventory "
            "path (expected /DATACENTER/vm/...)"
        )
    vmx_value = raw.get("vmx")
    try:
        vmx = parse_vmx(vmx_value if type(vmx_value) is int else text("vmx"))
    except ValueError as exc:
        raise ConfigError(f"--publish-record {path}: field 'vmx': {exc}") from None
    firmware = raw.get("firmware")
    return PublishRecord(
        path=path,
        datacenter=str(raw.get("datacenter") or ""),
        template=str(raw.get("template") or ""),
        inventory_path=inventory_path,
        vmx=vmx,
        firmware=firmware if isinstance(firmware, str) else None,
        snapshot=str(raw["snapshot"]) if raw.get("snapshot") else None,
    )


def parse_gpu_spec(text: str) -> GpuRequest:
    """'10de:20b5', '10DE:20B5x2', '0x10de:0x20b5x4' -> GpuRequest."""
    match = _GPU_SPEC_RE.match(text.strip())
    if not match:
        raise ConfigError(
            f"--gpu {text!r}: expected VENDOR:DEVICE[xCOUNT] in hex, e.g. 10de:1eb8 or "
            "10de:20b5x2 (`invoke pci-id NAME` finds the IDs)"
        )
    count = int(match.group("count") or 1)
    if count < 1:
        raise ConfigError(f"--gpu {text!r}: the count must be at least 1")
    return GpuRequest(parse_hex_pair(match.group("id")), count)


def parse_mmio_gb(value: str | int | None) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= MMIO_GB_MAX:
        raise ConfigError(
            f"--mmio-gb {value!r}: expected a whole number of GB from 1 to {MMIO_GB_MAX}"
        )
    return int(text)


def check_hardware_version(value: str) -> str:
    if not capv.HARDWARE_VERSION_RE.match(value):
        raise ConfigError(
            f"--hardware-version {value!r}: CAPV's webhook requires {capv.HARDWARE_VERSION_RULE}"
            " (e.g. vmx-17)"
        )
    return value


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


@dataclass
class _Changes:
    """What the flags ask to set in each chosen VSphereMachineTemplate."""

    template: str | None
    hardware_version: str
    pci_devices: list[dict[str, int]] | None
    mmio: MmioPlan | None
    template_without_snapshot: str | None = None  # the record's template, when it has none


def _machine_templates(
    documents: Sequence[YamlDocument], source: str
) -> tuple[dict[str, int], list[Any]]:
    names: dict[str, int] = {}
    loaded = []
    for index, document in enumerate(documents):
        data = load_safe(document, f"{source}: document {index + 1}")
        loaded.append(data)
        if isinstance(data, Mapping) and data.get("kind") == capv.KIND_MACHINE_TEMPLATE:
            metadata = data.get("metadata")
            name = metadata.get("name") if isinstance(metadata, Mapping) else None
            if isinstance(name, str):
                if name in names:
                    raise ConfigError(
                        f"{source}: documents {names[name] + 1} and {index + 1} are both "
                        f"{capv.KIND_MACHINE_TEMPLATE} {name!r}; which one to patch is ambiguous"
                    )
                names[name] = index
    return names, loaded


def _referenced(loaded: Sequence[Any], kind: str, path: Sequence[str]) -> list[str]:
    names = []
    for data in loaded:
        if not isinstance(data, Mapping) or data.get("kind") != kind:
            continue
        node = capv.mapping_at(data, path)
        if node is not None and node.get("kind") == capv.KIND_MACHINE_TEMPLATE:
            names.append(str(node.get("name")))
    return names


def choose_machines(machine: str, names: Mapping[str, int], loaded: Sequence[Any],
                    source: str) -> list[str]:
    available = ", ".join(sorted(names)) or "none"
    if not names:
        raise ConfigError(f"{source}: no {capv.KIND_MACHINE_TEMPLATE} documents")
    role = capv.MACHINE_ROLES.get(machine)
    if role is None:
        if machine not in names:
            raise ConfigError(
                f"{source}: no {capv.KIND_MACHINE_TEMPLATE} named {machine!r}; "
                f"available: {available} (or --machine worker / control-plane)"
            )
        return [machine]
    if role.template_name in names:
        return [role.template_name]
    referenced = _referenced(loaded, role.referrer_kind, role.referrer_path)
    chosen = sorted({name for name in referenced if name in names})
    if not chosen:
        raise ConfigError(
            f"{source}: no {machine} {capv.KIND_MACHINE_TEMPLATE}: expected one named "
            f"{role.template_name!r} or referenced by a {role.referrer_kind}"
            f"; available: {available} (pass --machine NAME)"
        )
    return chosen


def _insert_sorted(mapping: Any, key: str, value: Any) -> None:
    """Set ``key``; a new key goes where alphabetical order puts it (clusterctl sorts keys)."""
    if key in mapping:
        old = mapping[key]
        mapping[key] = _same_quotes(old, value)
        return
    position = len(mapping)
    for index, existing in enumerate(mapping):
        if str(existing) > key:
            position = index
            break
    mapping.insert(position, key, value)


def _same_quotes(old: Any, new: Any) -> Any:
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    if isinstance(new, str):
        if isinstance(old, SingleQuotedScalarString):
            return SingleQuotedScalarString(new)
        if isinstance(old, DoubleQuotedScalarString):
            return DoubleQuotedScalarString(new)
    return new


def _set_hardware_version(spec: Any, asked: str, notes: list[str], name: str) -> None:
    """Set hardwareVersion, but never lower one the file already has (GPUs need a minimum)."""
    current = spec.get(capv.F_HARDWARE_VERSION)
    if (
        isinstance(current, str)
        and capv.HARDWARE_VERSION_RE.match(current)
        and parse_vmx(current) > parse_vmx(asked)
    ):
        notes.append(f"{name}: kept {capv.F_HARDWARE_VERSION} {current} (newer than {asked})")
        return
    _insert_sorted(spec, capv.F_HARDWARE_VERSION, asked)


def _apply(
    spec: Any, changes: _Changes, name: str, notes: list[str], warnings: list[str]
) -> None:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if changes.template is not None:
        _insert_sorted(spec, capv.F_TEMPLATE, changes.template)
    _set_hardware_version(spec, changes.hardware_version, notes, name)
    if changes.template_without_snapshot and spec.get("cloneMode") == "linkedClone":
        warnings.append(
            f"{name}: template {changes.template_without_snapshot} has no snapshot; "
            "CAPV makes full clones instead of linked clones"
        )
    if changes.pci_devices is not None:
        devices = CommentedSeq()
        for entry in changes.pci_devices:
            item = CommentedMap()
            item[capv.PCI_DEVICE_ID] = entry[capv.PCI_DEVICE_ID]
            item[capv.PCI_VENDOR_ID] = entry[capv.PCI_VENDOR_ID]
            devices.append(item)
        _insert_sorted(spec, capv.F_PCI_DEVICES, devices)
    plan = changes.mmio
    if plan is None:
        return
    existing = spec.get(capv.F_CUSTOM_VMX_KEYS)
    ours = (capv.VMX_USE_64BIT_MMIO, capv.VMX_64BIT_MMIO_SIZE_GB)
    if plan.vmx_keys:
        keys = existing if isinstance(existing, Mapping) else CommentedMap()
        for key, value in plan.vmx_keys.items():
            _insert_sorted(keys, key, DoubleQuotedScalarString(value))
        if existing is None:
            _insert_sorted(spec, capv.F_CUSTOM_VMX_KEYS, keys)
    elif isinstance(existing, MutableMapping) and any(key in existing for key in ours):
        if plan.unknown:
            notes.append(f"{name}: kept its existing 64-bit MMIO keys (GPU not in the table)")
        else:
            for key in ours:
                existing.pop(key, None)
            if not existing:
                del spec[capv.F_CUSTOM_VMX_KEYS]
            notes.append(f"{name}: removed 64-bit MMIO keys the new GPUs do not need")


def _spec_of(data: Any, where: str) -> Any:
    spec = capv.mapping_at(data, capv.SPEC_PATH)
    if spec is None:
        raise ConfigError(f"{where}: has no {'.'.join(capv.SPEC_PATH)} mapping")
    return spec


def new_machine_template(
    name: str, changes: _Changes, notes: list[str], warnings: list[str]
) -> Any:
    """A VSphereMachineTemplate like CAPV's GPU guide, with ${...} for the site's fields."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import SingleQuotedScalarString as q

    device = CommentedMap(
        [("dhcp4", True), ("networkName", q("${VSPHERE_NETWORK}"))]
    )
    network = CommentedMap([("devices", CommentedSeq([device]))])
    spec = CommentedMap(
        [
            ("cloneMode", "linkedClone"),
            ("datacenter", q("${VSPHERE_DATACENTER}")),
            ("datastore", q("${VSPHERE_DATASTORE}")),
            ("diskGiB", 50),
            ("folder", q("${VSPHERE_FOLDER}")),
            (capv.F_MEMORY_MIB, capv.GPU_WORKER_MIN_MEMORY_MIB),
            ("network", network),
            (capv.F_NUM_CPUS, capv.GPU_WORKER_MIN_CPUS),
            ("os", "Linux"),
            ("resourcePool", q("${VSPHERE_RESOURCE_POOL}")),
            ("server", q("${VSPHERE_SERVER}")),
            ("storagePolicyName", q("${VSPHERE_STORAGE_POLICY}")),
            (capv.F_TEMPLATE, q("${VSPHERE_TEMPLATE}")),
            ("thumbprint", q("${VSPHERE_TLS_THUMBPRINT}")),
        ]
    )
    _apply(spec, changes, name, notes, warnings)
    return CommentedMap(
        [
            ("apiVersion", capv.DEFAULT_API_VERSION),
            ("kind", capv.KIND_MACHINE_TEMPLATE),
            ("metadata", CommentedMap([("name", name), ("namespace", q("${NAMESPACE}"))])),
            ("spec", CommentedMap([("template", CommentedMap([("spec", spec)]))])),
        ]
    )


def _changes(request: ClusterTemplateRequest, result_notes: list[str],
             warnings: list[str]) -> _Changes:
    hardware_version = check_hardware_version(request.hardware_version)
    mmio_gb = parse_mmio_gb(request.mmio_gb)
    gpus = [parse_gpu_spec(text) for text in request.gpus]
    gpu_count = sum(gpu.count for gpu in gpus)
    if gpu_count > capv.MAX_PASSTHROUGH_DEVICES_PER_VM:
        raise ConfigError(
            f"--gpu: {gpu_count} GPUs in one VM; vSphere allows at most "
            f"{capv.MAX_PASSTHROUGH_DEVICES_PER_VM} passthrough devices per VM"
        )
    if request.publish_record and request.template:
        raise ConfigError("give --publish-record or --template, not both")
    if mmio_gb is not None and not gpus:
        raise ConfigError("--mmio-gb needs --gpu: it sizes the MMIO window of the GPUs given")
    template = request.template
    without_snapshot = None
    if request.publish_record:
        record = read_publish_record(request.publish_record)
        template = record.inventory_path
        asked = parse_vmx(hardware_version)
        if record.vmx < asked:
            warnings.append(
                f"template {record.inventory_path} is vmx-{record.vmx}, below hardwareVersion "
                f"{hardware_version}: CAPV upgrades each clone, so every host must run what "
                f"{describe_vmx_need(asked)} asks"
            )
        if gpus and record.firmware and record.firmware != GPU_FIRMWARE:
            warnings.append(
                f"template {record.inventory_path} has {record.firmware} firmware: "
                f"{GPU_FIRMWARE_REASON}"
            )
        if not record.snapshot:
            without_snapshot = record.inventory_path
    if template is not None and not template.strip():
        raise ConfigError("--template is empty")
    plan = plan_mmio(gpus, mmio_gb) if gpus else None
    if plan is not None:
        result_notes.extend(plan.lines)
        if plan.unknown:
            warnings.append(
                "no 64-bit MMIO keys for " + ", ".join(p.hex for p in plan.unknown)
                + ": not in ovapipe's MMIO table (pass --mmio-gb N if the GPU needs N GB)"
            )
    return _Changes(
        template=template,
        hardware_version=hardware_version,
        pci_devices=capv.pci_device_entries(gpus) if gpus else None,
        mmio=plan,
        template_without_snapshot=without_snapshot,
    )


def _validate(documents: Mapping[str, Any], source: str, warnings: list[str],
              notes: list[str]) -> None:
    from ovapipe.validators.capv import substitution_note, validate_machine_template

    errors: list[str] = []
    for name, data in documents.items():
        check = validate_machine_template(data, f"{source}: {name}")
        for finding in check.report.findings:
            line = f"{name}: {finding.rule}: {finding.message}"
            (errors if finding.severity == ERROR else warnings).append(line)
        note = substitution_note(check.substitutions)
        if note:
            notes.append(f"{name}: {note}")
    if errors:
        raise CheckFailed(
            "the result does not pass CAPV's checks; nothing written:\n  " + "\n  ".join(errors)
        )


def run(request: ClusterTemplateRequest) -> ClusterTemplateResult:
    notes: list[str] = []
    warnings: list[str] = []
    changes = _changes(request, notes, warnings)
    if request.in_path is None:
        role = capv.MACHINE_ROLES.get(request.machine)
        name = role.template_name if role else request.machine
        data = new_machine_template(name, changes, notes, warnings)
        notes.append(
            f"{name}: new {capv.DEFAULT_API_VERSION} manifest (served by every CAPV release with "
            "pciDevices; deprecated in favour of v1beta2 by current CAPV)"
        )
        text = "---\n" + dump_new(data)
        _validate({name: load_safe(YamlDocument("", text), "new manifest")}, "new manifest",
                  warnings, notes)
        patched = [name]
    else:
        text, patched = _patch_file(request.in_path, request.machine, changes, warnings, notes)
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


def _patch_file(path: Path, machine: str, changes: _Changes, warnings: list[str],
                notes: list[str]) -> tuple[str, list[str]]:
    original = read_input_text(path, f"--in {path}")
    documents = split_documents(original)
    names, loaded = _machine_templates(documents, str(path))
    chosen = choose_machines(machine, names, loaded, str(path))
    patched: dict[str, Any] = {}
    for name in chosen:
        index = names[name]
        where = f"{path}: {capv.KIND_MACHINE_TEMPLATE} {name}"
        editor = RoundTrip(documents[index].body, where)
        if not editor.exact:
            warnings.append(
                f"{where}: ruamel.yaml cannot reproduce this document exactly; lines other "
                "than the changed fields may be re-formatted (check the diff)"
            )
        _apply(_spec_of(editor.data, where), changes, name, notes, warnings)
        documents[index].body = editor.dump()
        patched[name] = load_safe(documents[index], where)
    _validate(patched, str(path), warnings, notes)
    notes.append(f"patched {', '.join(chosen)}; other documents unchanged")
    return join_documents(documents), chosen


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
