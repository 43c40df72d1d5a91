"""Patch: set ovapipe's fields in the chosen VSphereMachineTemplates, keeping every other byte.

Only ``template``, ``pciDevices``, ``hardwareVersion`` and the 64-bit MMIO ``customVMXKeys``
change; a template the control plane shares is copied instead (``Target.split_to``) and the
worker references are pointed at the copy. Each changed template comes back as a Patched
record: its data and the paths ovapipe wrote, which the check judges strictly.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from ovapipe import capv
from ovapipe.clustertemplate_changes import Changes
from ovapipe.clustertemplate_find import Path, Reference, Target, TemplateFile
from ovapipe.errors import ConfigError
from ovapipe.hardware import parse_vmx
from ovapipe.yamldocs import RoundTrip, YamlDocument, join_documents, load_safe

WRITTEN_FIELDS = (
    capv.F_TEMPLATE, capv.F_HARDWARE_VERSION, capv.F_PCI_DEVICES, capv.F_CUSTOM_VMX_KEYS,
)
OWNED_PATHS: tuple[Path, ...] = tuple((*capv.SPEC_PATH, f) for f in WRITTEN_FIELDS)


@dataclass(frozen=True)
class Patched:
    """A VSphereMachineTemplate as ovapipe left it, and the paths that are ovapipe's."""

    name: str
    data: Any
    owned: tuple[Path, ...] | None  # None: the whole document is ovapipe's (a new manifest)


@dataclass(frozen=True)
class PatchedFile:
    text: str
    patched: list[Patched]


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


def apply_changes(
    spec: Any, changes: Changes, name: str, notes: list[str], warnings: list[str]
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
    name: str, changes: Changes, notes: list[str], warnings: list[str]
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
    apply_changes(spec, changes, name, notes, warnings)
    return CommentedMap(
        [
            ("apiVersion", capv.DEFAULT_API_VERSION),
            ("kind", capv.KIND_MACHINE_TEMPLATE),
            ("metadata", CommentedMap([("name", name), ("namespace", q("${NAMESPACE}"))])),
            ("spec", CommentedMap([("template", CommentedMap([("spec", spec)]))])),
        ]
    )


def _editor(found: TemplateFile, index: int, where: str, warnings: list[str]) -> RoundTrip:
    editor = RoundTrip(found.documents[index].body, where)
    if not editor.exact:
        warnings.append(
            f"{where}: ruamel.yaml cannot reproduce this document exactly; lines other "
            "than the changed fields may be re-formatted (check the diff)"
        )
    return editor


def _node_at(data: Any, path: Path) -> Any:
    for key in path:
        data = data[key]
    return data


def _labels(references: Sequence[Reference]) -> str:
    return ", ".join(sorted({r.label for r in references}))


def patch_file(found: TemplateFile, targets: list[Target], changes: Changes,
               notes: list[str], warnings: list[str]) -> PatchedFile:
    documents = list(found.documents)
    patched: list[Patched] = []
    inserted: dict[int, list[YamlDocument]] = {}
    repointed: dict[int, RoundTrip] = {}
    for target in targets:
        index = found.templates[target.name]
        where = f"{found.source}: {capv.KIND_MACHINE_TEMPLATE} {target.name}"
        editor = _editor(found, index, where, warnings)
        name = target.split_to or target.name
        if target.split_to is not None:
            metadata = editor.data["metadata"]
            metadata["name"] = _same_quotes(metadata["name"], target.split_to)
        apply_changes(_spec_of(editor.data, where), changes, name, notes, warnings)
        body = editor.dump()
        owned = OWNED_PATHS
        if target.split_to is None:
            documents[index] = YamlDocument(documents[index].separator, body)
        else:
            inserted.setdefault(index, []).append(YamlDocument("---\n", body))
            owned = (*OWNED_PATHS, ("metadata", "name"))
            for reference in target.repoint:
                ref_editor = repointed.get(reference.document) or _editor(
                    found, reference.document, f"{found.source}: {reference.label}", warnings
                )
                repointed[reference.document] = ref_editor
                node = _node_at(ref_editor.data, reference.path)
                node["name"] = _same_quotes(node["name"], target.split_to)
            notes.append(
                f"{target.name} is shared by {_labels(found.referrers(target.name))}: wrote a "
                f"separate GPU worker template {target.split_to} and pointed "
                f"{_labels(target.repoint)} at it; {target.name} itself (the control plane's) "
                "is unchanged"
            )
        patched.append(Patched(name, load_safe(YamlDocument("", body), where), owned))
        if target.shared_with:
            warnings.append(
                f"{target.name} is shared by {_labels(target.shared_with)}: every one of "
                "those machines gets these GPUs"
            )
    for index, editor in repointed.items():
        documents[index] = YamlDocument(documents[index].separator, editor.dump())
    ordered: list[YamlDocument] = []
    for index, document in enumerate(documents):
        ordered.append(document)
        for extra in inserted.get(index, []):
            if not ordered[-1].body.endswith("\n"):
                ordered[-1] = YamlDocument(ordered[-1].separator, ordered[-1].body + "\n")
            ordered.append(extra)
    changed = [t.name for t in targets if t.split_to is None]
    added = [t.split_to for t in targets if t.split_to is not None]
    summary = []
    if changed:
        summary.append(f"patched {', '.join(changed)}")
    if added:
        summary.append(f"added {', '.join(added)}")
    if repointed:
        summary.append("repointed " + _labels([r for t in targets for r in t.repoint]))
    notes.append("; ".join(summary) + "; other documents unchanged")
    return PatchedFile(join_documents(ordered), patched)
