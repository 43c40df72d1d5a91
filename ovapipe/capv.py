"""Cluster API Provider vSphere (CAPV): its field names and the GPU facts ovapipe applies to them.

One place for: the VSphereMachineTemplate kind, API versions and field names, the webhook's
hardwareVersion pattern, the pciDevices entry shapes, the 64-bit MMIO table for large-BAR GPUs
and the sizing advice for GPU workers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ovapipe.pci import (
    PciId,
    PciName,
    database,
    decimal_reading,
    looks_like_hex_pair,
    parse_hex_pair,
    resolve,
)

API_GROUP: Final = "infrastructure.cluster.x-k8s.io"
API_V1BETA1: Final = f"{API_GROUP}/v1beta1"
# New manifests use v1beta1: every CAPV release with pciDevices (v1.3+) serves it, and the
# current one (CRD copy in ovapipe/data/capv) still does, next to v1beta2 (its storage version).
DEFAULT_API_VERSION: Final = API_V1BETA1
KIND_MACHINE_TEMPLATE: Final = "VSphereMachineTemplate"

# Paths inside a VSphereMachineTemplate: spec.template.spec.<field>
SPEC_PATH: Final = ("spec", "template", "spec")
F_TEMPLATE: Final = "template"
F_PCI_DEVICES: Final = "pciDevices"
F_HARDWARE_VERSION: Final = "hardwareVersion"
F_CUSTOM_VMX_KEYS: Final = "customVMXKeys"
F_NUM_CPUS: Final = "numCPUs"
F_MEMORY_MIB: Final = "memoryMiB"
PCI_DEVICE_ID: Final = "deviceId"
PCI_VENDOR_ID: Final = "vendorId"
PCI_VGPU_PROFILE: Final = "vGPUProfile"

MACHINE_WORKER: Final = "worker"
MACHINE_CONTROL_PLANE: Final = "control-plane"


def mapping_at(node: Any, path: Sequence[str]) -> Any:
    """The mapping at ``path`` in nested mappings (e.g. SPEC_PATH), or None."""
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


@dataclass(frozen=True)
class MachineRole:
    """Which VSphereMachineTemplate ``--machine worker`` or ``control-plane`` means."""

    template_name: str  # as clusterctl's default flavor names it, after the cluster
    referrer_kind: str  # the object that references the template, if it has another name
    referrer_kinds: frozenset[str]  # every kind whose references give a machine this role
    class_section: str  # where in a ClusterClass's spec the role's references sit


MACHINE_ROLES: Final[Mapping[str, MachineRole]] = {
    MACHINE_WORKER: MachineRole(
        "${CLUSTER_NAME}-worker", "MachineDeployment",
        frozenset({"MachineDeployment", "MachineSet", "MachinePool"}), "workers",
    ),
    MACHINE_CONTROL_PLANE: MachineRole(
        "${CLUSTER_NAME}", "KubeadmControlPlane",
        frozenset({"KubeadmControlPlane", "KubeadmControlPlaneTemplate"}), "controlPlane",
    ),
}
KIND_CLUSTER_CLASS: Final = "ClusterClass"
# A worker split off a template the control plane shares: NAME + this suffix.
GPU_WORKER_SUFFIX: Final = "-gpu-worker"


def role_of_reference(kind: object, path: Sequence[str | int]) -> str | None:
    """The role a reference to a VSphereMachineTemplate gives it, from where it sits.

    MachineDeployment ``spec.template.spec.infrastructureRef``; KubeadmControlPlane
    ``spec.machineTemplate.infrastructureRef`` (v1beta1) or ``...machineTemplate.spec...``
    (v1beta2); ClusterClass ``spec.controlPlane.machineInfrastructure`` and
    ``spec.workers.machineDeployments[]`` (``ref`` in v1beta1, ``templateRef`` in v1beta2).
    """
    for name, role in MACHINE_ROLES.items():
        if kind in role.referrer_kinds:
            return name
        if kind == KIND_CLUSTER_CLASS and len(path) > 1 and path[1] == role.class_section:
            return name
    return None


# CAPV webhook (internal/webhooks/vspheremachinetemplate.go), not in the CRD schema.
HARDWARE_VERSION_RULE: Final = "^vmx-[1-9][0-9]?$"
HARDWARE_VERSION_RE: Final = re.compile(HARDWARE_VERSION_RULE)

# VMX keys for GPUs whose BARs do not fit the default MMIO window (EFI firmware only).
VMX_USE_64BIT_MMIO: Final = "pciPassthru.use64bitMMIO"
VMX_64BIT_MMIO_SIZE_GB: Final = "pciPassthru.64bitMMIOSizeGB"

# The most passthrough devices one VM can have: 128 on ESXi 8.0 U2 (vmx-21); 16 on ESXi 7.x
# (Broadcom KB 309986, "Configuring VMDirectPath I/O passthrough devices").
MAX_PASSTHROUGH_DEVICES_PER_VM: Final = 128

# CAPV's GPU guide (docs/gpu-pci.md) asks for bigger GPU nodes than the default flavor
# (2 vCPUs, 8192 MiB) because the gpu-operator's driver container builds and loads the NVIDIA
# driver on the node; it gives no numbers. These floors are ovapipe's: twice the default.
GPU_WORKER_MIN_CPUS: Final = 4
GPU_WORKER_MIN_MEMORY_MIB: Final = 16384
GPU_SIZING_SOURCE: Final = (
    "CAPV docs/gpu-pci.md: the gpu-operator needs additional CPU and memory to install the "
    "driver on the VM"
)

MMIO_SOURCE: Final = (
    "per-GPU sizes: NVIDIA's published 64-bit MMIO guidance for GPU passthrough on vSphere as "
    "recorded in ovapipe issue 6 (H100 256, H200 512, A100 80GB 256, A100 40GB 128, "
    "A40/L40/L20 128, L4/A30/A10/V100 64 GB; the VM's total rounded up to a power of two); "
    "use64bitMMIO/64bitMMIOSizeGB and 'not needed for the T4': VMware's 'How to Enable Nvidia "
    "V100 GPU in Passthrough mode on vSphere' (2018) and F. Denneman's 'vSphere ML Accelerator "
    "Spectrum Deep Dive - ESXi Host BIOS, VM, and vCenter Settings' (2023); device IDs: pci.ids "
    "2023.04.10 (Debian pci.ids), and newer pci.ids names for 10de:2321 (H100 NVL), 2335 "
    "(H200 SXM), 233b (H200 NVL), 26ba (L20)"
)


@dataclass(frozen=True)
class MmioNeed:
    model: str
    gb: int  # 0: known to need no 64-bit MMIO window


NVIDIA: Final = 0x10DE
_H100 = MmioNeed("H100", 256)
_H200 = MmioNeed("H200", 512)
_A100_80 = MmioNeed("A100 80GB", 256)
_A100_40 = MmioNeed("A100 40GB", 128)
_V100 = MmioNeed("V100", 64)

# 64-bit MMIO per GPU, keyed by PCI ID. Source: MMIO_SOURCE.
MMIO_GB_BY_DEVICE: Final[Mapping[PciId, MmioNeed]] = {
    PciId(NVIDIA, 0x1EB8): MmioNeed("Tesla T4", 0),
    PciId(NVIDIA, 0x2330): _H100,  # H100 SXM5 80GB
    PciId(NVIDIA, 0x2331): _H100,  # H100 PCIe
    PciId(NVIDIA, 0x2321): _H100,  # H100 NVL
    PciId(NVIDIA, 0x2336): _H100,
    PciId(NVIDIA, 0x2339): _H100,
    PciId(NVIDIA, 0x2335): _H200,  # H200 SXM 141GB
    PciId(NVIDIA, 0x233B): _H200,  # H200 NVL
    PciId(NVIDIA, 0x20B2): _A100_80,  # A100 SXM4 80GB
    PciId(NVIDIA, 0x20B5): _A100_80,  # A100 PCIe 80GB
    PciId(NVIDIA, 0x20B0): _A100_40,  # A100 SXM4 40GB
    PciId(NVIDIA, 0x20B1): _A100_40,  # A100 PCIe 40GB
    PciId(NVIDIA, 0x20F1): _A100_40,  # A100 PCIe 40GB
    PciId(NVIDIA, 0x2235): MmioNeed("A40", 128),
    PciId(NVIDIA, 0x26B5): MmioNeed("L40", 128),
    PciId(NVIDIA, 0x26BA): MmioNeed("L20", 128),
    PciId(NVIDIA, 0x27B8): MmioNeed("L4", 64),
    PciId(NVIDIA, 0x20B7): MmioNeed("A30", 64),
    PciId(NVIDIA, 0x2236): MmioNeed("A10", 64),
    **{PciId(NVIDIA, device): _V100 for device in (
        0x1DB1, 0x1DB2, 0x1DB3, 0x1DB4, 0x1DB5, 0x1DB6, 0x1DB7, 0x1DB8, 0x1DF5, 0x1DF6,
    )},
}


@dataclass(frozen=True)
class GpuRequest:
    """``--gpu 10de:20b5x2``: a device and how many of it one VM gets."""

    pci_id: PciId
    count: int = 1


@dataclass
class MmioPlan:
    """The 64-bit MMIO window one VM needs for its GPUs, with the reasoning for the output."""

    size_gb: int | None
    lines: list[str] = field(default_factory=list)
    unknown: list[PciId] = field(default_factory=list)

    @property
    def vmx_keys(self) -> dict[str, str]:
        if not self.size_gb:
            return {}
        return {VMX_USE_64BIT_MMIO: "TRUE", VMX_64BIT_MMIO_SIZE_GB: str(self.size_gb)}


def next_power_of_two(value: int) -> int:
    if value <= 1:
        return 1
    return 1 << (value - 1).bit_length()


def plan_mmio(gpus: Sequence[GpuRequest], mmio_gb_for_unknown: int | None = None) -> MmioPlan:
    """Sum the per-GPU MMIO need and round it up to a power of two.

    A GPU not in the table adds ``mmio_gb_for_unknown`` GB each when given, else nothing,
    and the plan says so.
    """
    total = 0
    plan = MmioPlan(size_gb=None)
    for gpu in gpus:
        need = MMIO_GB_BY_DEVICE.get(gpu.pci_id)
        if need is None:
            if mmio_gb_for_unknown is None:
                plan.unknown.append(gpu.pci_id)
                plan.lines.append(
                    f"{gpu.pci_id.hex} x{gpu.count}: not in ovapipe's MMIO table; no 64-bit "
                    "MMIO added for it (pass --mmio-gb N if its BARs need N GB)"
                )
                continue
            per_gpu = mmio_gb_for_unknown
            plan.lines.append(f"{gpu.pci_id.hex} x{gpu.count}: {per_gpu} GB each (--mmio-gb)")
        else:
            per_gpu = need.gb
            plan.lines.append(
                f"{gpu.pci_id.hex} ({need.model}) x{gpu.count}: "
                + (f"{per_gpu} GB each" if per_gpu else "no 64-bit MMIO needed")
            )
        total += per_gpu * gpu.count
    if total:
        plan.size_gb = next_power_of_two(total)
        plan.lines.append(
            f"64-bit MMIO: {total} GB in total -> {plan.size_gb} GB "
            f"({VMX_USE_64BIT_MMIO}, {VMX_64BIT_MMIO_SIZE_GB})"
        )
    return plan


def pci_device_entry(pci_id: PciId) -> dict[str, int]:
    """CAPV's pciDevices entry for one device: decimal integers."""
    return {PCI_DEVICE_ID: pci_id.device, PCI_VENDOR_ID: pci_id.vendor}


def pci_device_entries(gpus: Sequence[GpuRequest]) -> list[dict[str, int]]:
    """One pciDevices entry per GPU (a count of 2 gives two identical entries)."""
    return [pci_device_entry(gpu.pci_id) for gpu in gpus for _ in range(gpu.count)]


def pci_devices_snippet(pci_id: PciId, indent: str = "") -> str:
    """The YAML lines for one pciDevices entry, as CAPV's GPU guide shows them."""
    return (
        f"{indent}{F_PCI_DEVICES}:\n"
        f"{indent}- {PCI_DEVICE_ID}: {pci_id.device}\n"
        f"{indent}  {PCI_VENDOR_ID}: {pci_id.vendor}\n"
    )


def pci_id_warnings(value: str) -> list[str]:
    """What ``invoke pci-id VALUE`` should warn about (a decimal pair read as hex)."""
    if not looks_like_hex_pair(value):
        return []
    as_hex = parse_hex_pair(value)
    if as_hex in MMIO_GB_BY_DEVICE:
        return []
    warning = decimal_reading(value, as_hex, database())
    return [warning] if warning else []


def describe_pci_id(value: str) -> str:
    """``invoke pci-id``: decimal and hex IDs, the name, the pciDevices snippet, MMIO need."""
    found = resolve(value)
    pci_id = found.pci_id if isinstance(found, PciName) else found
    if isinstance(found, PciName):
        name = found.label
    else:
        name = "(name unknown: not in pci.ids)" if database().path else (
            "(name unknown: no pci.ids found)"
        )
    need = MMIO_GB_BY_DEVICE.get(pci_id)
    if need is None:
        mmio = "not in ovapipe's MMIO table (cluster-template adds no MMIO keys without --mmio-gb)"
    elif need.gb:
        mmio = f"{need.gb} GB 64-bit MMIO per GPU ({need.model})"
    else:
        mmio = f"no 64-bit MMIO needed ({need.model})"
    return (
        f"{name}\n"
        f"{PCI_VENDOR_ID}: {pci_id.vendor}  (0x{pci_id.vendor:04x})\n"
        f"{PCI_DEVICE_ID}: {pci_id.device}  (0x{pci_id.device:04x})\n"
        f"MMIO: {mmio}\n"
        f"\n{pci_devices_snippet(pci_id)}"
    ).rstrip("\n")
