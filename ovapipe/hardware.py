"""The one vmx <-> ESXi table and the firmware rules for GPU node images."""

from __future__ import annotations

import re
from typing import Final

# Virtual hardware version -> the ESXi release that introduced it (VMware KB 1003746, "ESXi/ESX
# hosts and compatible virtual machine hardware versions", and the vSphere "virtual machine
# compatibility" tables; vmx-22 came with ESX 9.0). Versions missing here (1-3, 5, 6, 12, 16)
# were created only by Workstation/Fusion/Server, never by an ESXi host.
VMX_MIN_ESXI: Final[dict[int, str]] = {
    4: "3.5",
    7: "4.0",
    8: "5.0",
    9: "5.1",
    10: "5.5",
    11: "6.0",
    13: "6.5",
    14: "6.7",
    15: "6.7U2",
    17: "7.0",
    18: "7.0U1",
    19: "7.0U2",
    20: "8.0",
    21: "8.0U2",
    22: "9.0",
}
# Every version an ESXi release creates, oldest first (vars' schema enum, --min-vmx).
ESXI_VMX_VERSIONS: Final = tuple(sorted(VMX_MIN_ESXI))

# Dynamic DirectPath I/O (CAPV's pciDevices) needs vmx-17, i.e. ESXi/vSphere 7.0.
GPU_MIN_VMX: Final = 17
GPU_MIN_VMX_REASON: Final = (
    "GPU passthrough with Dynamic DirectPath I/O needs virtual hardware vmx-17 or newer "
    "(ESXi/vSphere 7.0+)"
)

FIRMWARE_EFI: Final = "efi"
FIRMWARE_BIOS: Final = "bios"
FIRMWARES: Final = (FIRMWARE_EFI, FIRMWARE_BIOS)
GPU_FIRMWARE: Final = FIRMWARE_EFI
GPU_FIRMWARE_REASON: Final = (
    "GPUs with large BARs need 64-bit MMIO, which needs EFI firmware"
)

_VMX_RE = re.compile(r"^vmx-(\d{1,2})$")
_ESXI_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:\s*U(\d+))?$", re.IGNORECASE)


def parse_vmx(value: str | int) -> int:
    """'vmx-17', '17' or 17 -> 17; ValueError on anything else."""
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        match = _VMX_RE.match(text)
        if match:
            number = int(match.group(1))
        elif text.isdigit():
            number = int(text)
        else:
            raise ValueError(f"not a hardware version: {value!r} (expected vmx-NN)")
    if not 1 <= number <= 99:
        raise ValueError(f"hardware version out of range: {value!r}")
    return number


def parse_esxi_vmx(value: str | int) -> int:
    """parse_vmx, but only a version some ESXi release creates (usage input: vars, --min-vmx)."""
    number = parse_vmx(value)
    if number not in VMX_MIN_ESXI:
        raise ValueError(
            f"vmx-{number} is not a hardware version any ESXi release creates "
            f"(ESXi creates {', '.join(vmx_name(v) for v in ESXI_VMX_VERSIONS)})"
        )
    return number


def vmx_name(number: int) -> str:
    return f"vmx-{number}"


def esxi_key(version: str) -> tuple[int, int, int]:
    """Order ESXi versions: '7.0' < '7.0U1' == '7.0.1' < '7.0.3' < '8.0'.

    vSphere's update releases map onto the patch number of the API version
    (7.0U1 = 7.0.1, 7.0U2 = 7.0.2, 8.0U2 = 8.0.2), which is how hosts report them.
    """
    match = _ESXI_RE.match(version.strip())
    if not match:
        raise ValueError(f"not an ESXi version: {version!r}")
    major, minor, patch, update = match.groups()
    return int(major), int(minor), int(update or patch or 0)


def min_esxi_for(vmx: int) -> str | None:
    """The ESXi release a vmx version needs, or None when the table does not know it."""
    newer = [v for v in VMX_MIN_ESXI if v >= vmx]
    return VMX_MIN_ESXI[min(newer)] if newer else None


def esxi_supports(esxi_version: str, vmx: int) -> bool:
    needed = min_esxi_for(vmx)
    if needed is None:
        return vmx < min(VMX_MIN_ESXI)
    return esxi_key(esxi_version) >= esxi_key(needed)


def max_vmx_for(esxi_version: str) -> int:
    """The newest vmx version in the table that an ESXi release can create."""
    key = esxi_key(esxi_version)
    supported = [vmx for vmx, esxi in VMX_MIN_ESXI.items() if esxi_key(esxi) <= key]
    return max(supported) if supported else min(VMX_MIN_ESXI) - 1


def describe_vmx_need(vmx: int) -> str:
    needed = min_esxi_for(vmx)
    return f"vmx-{vmx} needs ESXi {needed} or newer" if needed else f"vmx-{vmx}"
