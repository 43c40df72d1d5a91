"""Warn when the GPUs a machine template asks for are not active on any host of its cluster.

A VM with a ``pciDevices`` entry only powers on where that device is passthrough-active, so
a cluster whose hosts have the GPU disabled, or enabled but not yet rebooted, would create
machines that never start. ``nightly`` and ``cluster-template --cluster`` call this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ovapipe.pci import PciId
from ovapipe.vsphere.gpu_records import GpuInventory


def inactive_gpu_warnings(inventory: GpuInventory | None, wanted: Iterable[PciId]) -> list[str]:
    """One warning per wanted GPU model that no host of ``inventory`` has active (none: not
    read, e.g. a resumed run)."""
    if inventory is None:
        return []
    scope = f"cluster {inventory.cluster}" if inventory.cluster else (
        f"datacenter {inventory.datacenter}")
    warnings = []
    for pci_id in dict.fromkeys(wanted):
        found = [(host.name, d) for host in inventory.hosts for d in host.capable
                 if d.pci_id == pci_id]
        if any(device.active for _, device in found):
            continue
        entry = f"vendorId {pci_id.vendor}, deviceId {pci_id.device}"
        pending = [name for name, device in found if device.enabled]
        if pending:
            why = ("enabled but not active until the host reboots (maintenance mode, then "
                   "reboot): " + ", ".join(pending))
        elif found:
            why = (f"passthrough is off on every host; `invoke gpus --enable --device "
                   f"{pci_id.hex} --datacenter {inventory.datacenter}"
                   + (f" --cluster {inventory.cluster}" if inventory.cluster else "") + "`")
        else:
            why = "no host has it as a passthrough-capable device"
        warnings.append(
            f"GPU {pci_id.hex} ({entry}) is not active on any host of {scope}: {why}; "
            "machines asking for it will not power on"
        )
    return warnings


def cluster_gpu_warnings(datacenter: str, cluster: str, gpu_specs: Sequence[str],
                         *, insecure: bool = False) -> list[str]:
    """``inactive_gpu_warnings`` for `cluster-template --gpu` specs, read from vCenter."""
    from ovapipe.clustertemplate import parse_gpu_spec
    from ovapipe.config import connection_from_env
    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.gpus import list_gpus

    wanted = [parse_gpu_spec(spec).pci_id for spec in gpu_specs]
    if not wanted:
        return []
    with session(connection_from_env(insecure=insecure)) as service:
        return inactive_gpu_warnings(list_gpus(service, datacenter, cluster), wanted)
