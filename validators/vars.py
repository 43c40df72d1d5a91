"""Checks of merged Packer variables: template keys, JSON Schema, GPU hardware rules.

Every message names the key, the layer its value came from and what was expected.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ovapipe import hardware
from ovapipe.findings import Report
from ovapipe.varfiles import ENV_LAYER, ENV_NAME_OF

if TYPE_CHECKING:
    from ovapipe.template import Template
    from ovapipe.varfiles import Layer


def _json(value: Any) -> str:
    return json.dumps(value)


def _range(schema: Mapping[str, Any], noun: str) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"{noun} from {low} to {high}"
    if low is not None:
        return f"{noun} >= {low}"
    if high is not None:
        return f"{noun} <= {high}"
    return noun


def describe(schema: Mapping[str, Any]) -> str:
    """What a schema property accepts, in words."""
    kind = schema.get("type")
    if "enum" in schema:
        text = " or ".join(_json(option) for option in schema["enum"])
    elif kind == "integer":
        text = _range(schema, "an integer")
    elif kind == "number":
        text = _range(schema, "a number")
    elif kind == "boolean":
        text = "true or false"
    elif kind == "array":
        text = "a list of strings"
    elif schema.get("minLength", 0) > 0:
        text = "a non-empty string"
    else:
        text = "a string"
    if "description" in schema:
        text += f" ({schema['description']})"
    elif "pattern" in schema:
        text += f" matching {schema['pattern']}"
    return text


def _env_hint(key: str) -> str:
    name = ENV_NAME_OF.get(key)
    return f" or env {name}" if name else ""


def validate_vars(
    layers: Sequence[Layer],
    values: Mapping[str, Any],
    sources: Mapping[str, str],
    *,
    template: Template,
    schema: Mapping[str, Any],
    profile: str,
    gpu: bool,
    complete: bool = True,
) -> Report:
    """All problems of the merged ``values``; ``complete=False`` (a layer failed to load)
    skips the missing-value check, whose value may sit in the broken layer."""
    from jsonschema import Draft202012Validator

    report = Report(path="packer variables")
    declared = template.variables

    for layer in layers:
        for key in layer.values:
            if key in declared:
                continue
            close = difflib.get_close_matches(key, declared, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            report.error(
                "vars.unknown-key",
                f"{layer.name}: unknown key '{key}' (not a variable of packer/{template.name})"
                f"{hint}",
            )
        for key in layer.values:
            if key in template.secrets and layer.name != ENV_LAYER:
                report.error(
                    "vars.secret-in-file",
                    f"{layer.name}: '{key}' is a secret and is never read from files or "
                    f"--set: set {ENV_NAME_OF.get(key) or key} in the environment",
                )

    known = {k: v for k, v in values.items() if k in declared}
    missing = sorted(
        name for name, var in declared.items() if not var.has_default and name not in known
    )
    if complete:
        for key in missing:
            where = f"a var file, --set {key}=...{_env_hint(key)}"
            if key in template.secrets:
                where = f"the environment ({ENV_NAME_OF.get(key) or key})"
            report.error(
                "vars.missing",
                f"{key}: no value in any layer and no default in packer/{template.name}; "
                f"set it in {where}",
            )

    properties = schema.get("properties", {})
    reported: set[str] = set(missing)
    schema_errors = Draft202012Validator(schema).iter_errors(known)
    for error in sorted(schema_errors, key=lambda e: [str(p) for p in e.path]):
        if error.validator in ("required", "additionalProperties") or not error.path:
            continue
        key = str(error.path[0])
        if key in reported:
            continue
        reported.add(key)
        report.error(
            "vars.schema",
            f"{key} (from {sources[key]}): got {_json(known[key])}; "
            f"expected {describe(properties.get(key, {}))}",
        )

    if gpu:
        vmx = known.get("vmx_version")
        if isinstance(vmx, int) and "vmx_version" not in reported and vmx < hardware.GPU_MIN_VMX:
            report.error(
                "vars.gpu-vmx",
                f"vmx_version (from {sources['vmx_version']}): got {vmx}; GPU profile "
                f"{profile} needs {hardware.GPU_MIN_VMX} or newer: {hardware.GPU_MIN_VMX_REASON}",
            )
        firmware = known.get("firmware")
        if firmware in hardware.FIRMWARES and firmware != hardware.GPU_FIRMWARE:
            report.error(
                "vars.gpu-firmware",
                f"firmware (from {sources['firmware']}): got {_json(firmware)}; GPU profile "
                f"{profile} needs {_json(hardware.GPU_FIRMWARE)}: {hardware.GPU_FIRMWARE_REASON}",
            )

    iso_url, iso_paths = known.get("iso_url", ""), known.get("iso_paths", [])
    if complete and not iso_url and not iso_paths:
        report.error(
            "vars.iso",
            "iso_url and iso_paths are both empty; expected iso_url (with iso_checksum) or "
            "iso_paths on a datastore",
        )
    if iso_url and not known.get("iso_checksum"):
        report.error(
            "vars.iso",
            f"iso_checksum (from {sources.get('iso_checksum', 'defaults')}): empty while "
            f"iso_url (from {sources['iso_url']}) is set; expected TYPE:HEX or file:URL",
        )
    return report
