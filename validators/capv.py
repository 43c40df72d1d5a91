"""Check a VSphereMachineTemplate against CAPV's CRD schema and webhook rules.

The schema is the one of the ``apiVersion`` the document declares, from the CRD copy in
``ovapipe/data/capv``. clusterctl templates carry ``${VARIABLE}`` placeholders: where the
schema wants an integer, number, boolean or enum value, a placeholder is replaced by a typed
sample (its ``${VAR:=default}`` when that fits, else the schema's minimum, 1, true or the first
enum value) before validation, and each substitution is reported. Unknown fields are errors,
as kubectl's strict field validation makes them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from ovapipe import capv
from ovapipe.errors import ConfigError
from ovapipe.findings import Report
from ovapipe.hardware import GPU_MIN_VMX, GPU_MIN_VMX_REASON, parse_vmx
from ovapipe.pci import PCI_ID_MAX

CRD_RESOURCE: Final = "data/capv/infrastructure.cluster.x-k8s.io_vspheremachinetemplates.yaml"
PLACEHOLDER_RE: Final = re.compile(
    r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?[=-](?P<default>[^}]*))?\}$"
)
# A placeholder anywhere in a string ("${CLUSTER_NAME}-worker"): clusterctl fills it in later,
# so rules about the string's form cannot judge it.
PLACEHOLDER_ANYWHERE_RE: Final = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[=-][^}]*)?\}")
FORM_RULES: Final = frozenset({"pattern", "format", "minLength", "maxLength"})
SchemaPath = tuple[str | int, ...]


def crd_text() -> str:
    return (resources.files("ovapipe") / CRD_RESOURCE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def schemas() -> dict[str, dict[str, Any]]:
    """apiVersion -> OpenAPI v3 schema (strict: unknown fields rejected)."""
    from ovapipe.bounded import load_yaml

    crd = load_yaml(crd_text(), CRD_RESOURCE)
    group = crd["spec"]["group"]
    return {
        f"{group}/{version['name']}": _strict(version["schema"]["openAPIV3Schema"])
        for version in crd["spec"]["versions"]
        if version.get("served")
    }


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@dataclass
class CapvCheck:
    report: Report
    substitutions: list[str] = field(default_factory=list)


def _sample(value: str, schema: Mapping[str, Any]) -> Any | None:
    """A typed stand-in for a placeholder, or None when the schema takes a string as is."""
    match = PLACEHOLDER_RE.match(value)
    if not match:
        return None
    default = match.group("default")
    kind = schema.get("type")
    if "enum" in schema:
        return default if default in schema["enum"] else schema["enum"][0]
    if kind == "integer":
        if default is not None and re.fullmatch(r"-?\d+", default.strip()):
            return int(default)
        return int(schema.get("minimum", 1))
    if kind == "number":
        try:
            return float(default) if default is not None else float(schema.get("minimum", 1))
        except ValueError:
            return float(schema.get("minimum", 1))
    if kind == "boolean":
        return default.strip().lower() != "false" if default is not None else True
    return None


def _substitute(
    value: Any, schema: Mapping[str, Any], path: str, notes: list[str]
) -> Any:
    if isinstance(value, str):
        sample = _sample(value, schema)
        if sample is None:
            return str(value)
        notes.append(f"{path}: {value} validated as {sample!r}")
        return sample
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = properties.get(key) or (extra if isinstance(extra, Mapping) else {})
            out[str(key)] = _substitute(item, sub, f"{path}.{key}" if path else str(key), notes)
        return out
    if isinstance(value, list):
        items = schema.get("items", {})
        return [_substitute(item, items, f"{path}[{i}]", notes) for i, item in enumerate(value)]
    return value


def _webhook_rules(spec: Mapping[str, Any], report: Report) -> None:
    version = spec.get(capv.F_HARDWARE_VERSION)
    if version is not None and not (
        isinstance(version, str) and capv.HARDWARE_VERSION_RE.match(version)
    ):
        report.error(
            "capv.hardware-version",
            f"{capv.F_HARDWARE_VERSION} {version!r} does not match CAPV's webhook pattern "
            f"{capv.HARDWARE_VERSION_RULE} (e.g. vmx-17)",
        )
    devices = spec.get(capv.F_PCI_DEVICES) or []
    for index, device in enumerate(devices if isinstance(devices, list) else []):
        where = f"{capv.F_PCI_DEVICES}[{index}]"
        if not isinstance(device, Mapping):
            continue  # the schema reports the type
        has_ids = [key for key in (capv.PCI_DEVICE_ID, capv.PCI_VENDOR_ID) if key in device]
        if capv.PCI_VGPU_PROFILE in device:
            if has_ids:
                report.error(
                    "capv.pci-device",
                    f"{where}: {capv.PCI_VGPU_PROFILE} must stand alone, without "
                    f"{' and '.join(has_ids)} (CAPV webhook)",
                )
        elif len(has_ids) != 2:
            report.error(
                "capv.pci-device",
                f"{where}: needs both {capv.PCI_DEVICE_ID} and {capv.PCI_VENDOR_ID}, or "
                f"{capv.PCI_VGPU_PROFILE} alone (CAPV webhook)",
            )
        for key in has_ids:
            value = device[key]
            if isinstance(value, int) and not 0 <= value <= PCI_ID_MAX:
                report.error(
                    "capv.pci-id-range",
                    f"{where}.{key}: {value} is not a PCI ID (0 to {PCI_ID_MAX} in decimal; "
                    "vSphere shows IDs above 0x7fff as negative numbers, CAPV wants them unsigned)",
                )


def _gpu_rules(spec: Mapping[str, Any], report: Report) -> None:
    if not spec.get(capv.F_PCI_DEVICES):
        return
    version = spec.get(capv.F_HARDWARE_VERSION)
    if (
        isinstance(version, str)
        and capv.HARDWARE_VERSION_RE.match(version)
        and parse_vmx(version) < GPU_MIN_VMX
    ):
        report.error(
            "capv.gpu-vmx", f"{capv.F_HARDWARE_VERSION} {version}: {GPU_MIN_VMX_REASON}"
        )
    cpus = spec.get(capv.F_NUM_CPUS)
    if isinstance(cpus, int) and cpus < capv.GPU_WORKER_MIN_CPUS:
        report.warning(
            "capv.gpu-sizing",
            f"{capv.F_NUM_CPUS} {cpus} looks too small for a GPU node: ovapipe suggests at "
            f"least {capv.GPU_WORKER_MIN_CPUS} ({capv.GPU_SIZING_SOURCE})",
        )
    memory = spec.get(capv.F_MEMORY_MIB)
    if isinstance(memory, int) and memory < capv.GPU_WORKER_MIN_MEMORY_MIB:
        report.warning(
            "capv.gpu-sizing",
            f"{capv.F_MEMORY_MIB} {memory} looks too small for a GPU node: ovapipe suggests at "
            f"least {capv.GPU_WORKER_MIN_MEMORY_MIB} ({capv.GPU_SIZING_SOURCE})",
        )


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _under(path: SchemaPath, prefixes: Sequence[SchemaPath]) -> bool:
    return any(tuple(path[: len(prefix)]) == prefix for prefix in prefixes)


def validate_machine_template(
    document: Mapping[str, Any], where: str, owned: Sequence[SchemaPath] | None = None,
    strict: Sequence[SchemaPath] | None = None,
) -> CapvCheck:
    """Schema of the declared apiVersion + CAPV webhook rules + GPU rules for one document.

    ``owned``: the paths the caller wrote; schema errors elsewhere were in its input and are
    warnings (capv.schema-input). None: the whole document is the caller's. ``${VAR}``
    placeholders are opaque to pattern, format and length rules except under ``strict``
    (default: ``owned``).
    """
    from jsonschema import Draft7Validator

    report = Report(path=where)
    check = CapvCheck(report)
    if document.get("kind") != capv.KIND_MACHINE_TEMPLATE:
        raise ConfigError(f"{where}: not a {capv.KIND_MACHINE_TEMPLATE}")
    api_version = document.get("apiVersion")
    schema = schemas().get(str(api_version))
    if schema is None:
        report.error(
            "capv.api-version",
            f"apiVersion {api_version!r}: CAPV's CRD serves {', '.join(sorted(schemas()))}",
        )
        return check
    typed = _substitute(document, schema, "", check.substitutions)
    validator = Draft7Validator(schema)
    for error in sorted(validator.iter_errors(typed), key=lambda e: str(list(e.absolute_path))):
        path = tuple(error.absolute_path)
        ours = owned is None or _under(path, owned)
        if (
            not _under(path, (owned or ()) if strict is None else strict)
            and error.validator in FORM_RULES
            and isinstance(error.instance, str)
            and PLACEHOLDER_ANYWHERE_RE.search(error.instance)
        ):
            continue
        message = f"{_path(path)}: {error.message} ({api_version} CRD schema)"
        if ours:
            report.error("capv.schema", message)
        else:
            report.warning("capv.schema-input", f"{message}; in the input already, left as it is")
    # As written: sizing advice never judges a placeholder's sample.
    spec = capv.mapping_at(document, capv.SPEC_PATH) or {}
    _webhook_rules(spec, report)
    _gpu_rules(spec, report)
    return check


def substitution_note(substitutions: list[str]) -> str:
    return (
        "placeholders in typed fields were validated with samples: " + "; ".join(substitutions)
        if substitutions else ""
    )
