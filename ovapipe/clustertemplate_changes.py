"""cluster-template's flags and publish record, turned into the Changes record the patch applies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ovapipe import capv
from ovapipe.bounded import load_json
from ovapipe.capv import GpuRequest, MmioPlan, plan_mmio
from ovapipe.errors import ConfigError
from ovapipe.files import read_input_text
from ovapipe.hardware import GPU_FIRMWARE, GPU_FIRMWARE_REASON, describe_vmx_need, parse_vmx
from ovapipe.pci import database, decimal_reading, parse_hex_pair

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
    except ValueError as exc:  # json.JSONDecodeError
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
class Changes:
    """What the flags ask to set in each chosen VSphereMachineTemplate."""

    template: str | None
    hardware_version: str
    pci_devices: list[dict[str, int]] | None
    mmio: MmioPlan | None
    template_without_snapshot: str | None = None  # the record's template, when it has none


@dataclass(frozen=True)
class ChangeFlags:
    publish_record: Path | None
    template: str | None
    gpus: Sequence[str]
    hardware_version: str
    mmio_gb: str | int | None


def changes_from(flags: ChangeFlags, notes: list[str], warnings: list[str]) -> Changes:
    hardware_version = check_hardware_version(flags.hardware_version)
    mmio_gb = parse_mmio_gb(flags.mmio_gb)
    gpus = [parse_gpu_spec(text) for text in flags.gpus]
    for text, gpu in zip(flags.gpus, gpus, strict=True):
        match = _GPU_SPEC_RE.match(text.strip())
        if match and gpu.pci_id not in capv.MMIO_GB_BY_DEVICE:
            warning = decimal_reading(match.group("id"), gpu.pci_id, database())
            if warning:
                warnings.append(f"--gpu {warning}")
    gpu_count = sum(gpu.count for gpu in gpus)
    if gpu_count > capv.MAX_PASSTHROUGH_DEVICES_PER_VM:
        raise ConfigError(
            f"--gpu: {gpu_count} GPUs in one VM; vSphere allows at most "
            f"{capv.MAX_PASSTHROUGH_DEVICES_PER_VM} passthrough devices per VM"
        )
    if flags.publish_record and flags.template:
        raise ConfigError("give --publish-record or --template, not both")
    if mmio_gb is not None and not gpus:
        raise ConfigError("--mmio-gb needs --gpu: it sizes the MMIO window of the GPUs given")
    template = flags.template
    without_snapshot = None
    if flags.publish_record:
        record = read_publish_record(flags.publish_record)
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
        notes.extend(plan.lines)
        if plan.unknown:
            warnings.append(
                "no 64-bit MMIO keys for " + ", ".join(p.hex for p in plan.unknown)
                + ": not in ovapipe's MMIO table (pass --mmio-gb N if the GPU needs N GB)"
            )
    return Changes(
        template=template,
        hardware_version=hardware_version,
        pci_devices=capv.pci_device_entries(gpus) if gpus else None,
        mmio=plan,
        template_without_snapshot=without_snapshot,
    )
