"""Where a published VM goes: datacenter, compute resource and pool, datastore, folder, network.

Every name is looked up in bulk (ovapipe.vsphere.inventory) inside its datacenter; a missing
name is a ConfigError that lists what is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ovapipe.errors import ConfigError
from ovapipe.vsphere.hostcheck import HOST_PROPERTIES
from ovapipe.vsphere.inventory import Found, by_name, retrieve

COMPUTE_PROPERTIES: Final = ("name", "host", "environmentBrowser", "resourcePool")
DATASTORE_PROPERTIES: Final = ("name", "summary.freeSpace", "summary.accessible")


@dataclass(frozen=True)
class PlacementRequest:
    """Names given on the command line (or defaults); None = choose when unambiguous."""

    datacenter: str
    cluster: str | None = None
    resource_pool: str | None = None
    datastore: str | None = None
    folder: str | None = None
    network: str | None = None


@dataclass
class Placement:
    datacenter: Found
    compute: Found
    pool: Any
    hosts: list[Found]
    datastore: Found
    folder: Any
    network: Found | None

    @property
    def datacenter_name(self) -> str:
        return self.datacenter.name


def _only(items: list[Found], kind: str, flag: str, where: str) -> Found:
    if len(items) == 1:
        return items[0]
    names = ", ".join(sorted(i.name for i in items)) or "none"
    raise ConfigError(f"no {kind} given and {where} has {len(items)}: {names}; pass {flag}")


def resolve_compute(
    service: Any, datacenter: Found, request: PlacementRequest
) -> tuple[Found, Any]:
    """The compute resource (cluster or standalone host) and the resource pool to import into.

    Every cluster and host has a root pool called 'Resources', so with --cluster a pool name
    is looked up in that cluster only.
    """
    from pyVmomi import vim

    where = f"datacenter {datacenter.name}"
    computes = retrieve(service, vim.ComputeResource, COMPUTE_PROPERTIES, datacenter.obj)
    compute = None
    if request.cluster:
        compute = by_name(computes, "cluster", request.cluster, where)
    if not request.resource_pool:
        compute = compute or _only(computes, "cluster", "--cluster NAME (or --resource-pool)",
                                   where)
        return compute, compute.get("resourcePool")
    if compute is not None:
        pools = retrieve(service, vim.ResourcePool, ["name"], compute.obj)
        pool = by_name(pools, "resource pool", request.resource_pool, f"cluster {compute.name}")
        return compute, pool.obj
    pools = retrieve(service, vim.ResourcePool, ["name", "owner"], datacenter.obj)
    names = {c.obj: c.name for c in computes}
    owners = sorted(names.get(p.get("owner"), "?") for p in pools
                    if p.name == request.resource_pool)
    if len(set(owners)) > 1:
        raise ConfigError(
            f"resource pool '{request.resource_pool}' exists in {', '.join(owners)} of {where}: "
            "pass --cluster NAME too"
        )
    pool = by_name(pools, "resource pool", request.resource_pool, where)
    owner = next((c for c in computes if c.obj == pool.get("owner")), None)
    if owner is None:
        raise ConfigError(f"resource pool '{pool.name}' has no compute resource in {where}")
    return owner, pool.obj


def resolve_placement(
    service: Any, request: PlacementRequest, ovf_networks: Sequence[str]
) -> Placement:
    from pyVmomi import vim

    datacenters = retrieve(service, vim.Datacenter, ["name", "vmFolder"])
    datacenter = by_name(datacenters, "datacenter", request.datacenter)
    where = f"datacenter {datacenter.name}"
    compute, pool = resolve_compute(service, datacenter, request)
    hosts = retrieve(service, vim.HostSystem, HOST_PROPERTIES, compute.obj)

    datastores = retrieve(service, vim.Datastore, DATASTORE_PROPERTIES, datacenter.obj)
    if request.datastore:
        datastore = by_name(datastores, "datastore", request.datastore, where)
    else:
        datastore = _only(datastores, "datastore", "--datastore NAME", where)

    folder = datacenter.get("vmFolder")
    if request.folder:
        folders = [
            f for f in retrieve(service, vim.Folder, ["name", "childType"], datacenter.obj)
            if "VirtualMachine" in (f.get("childType") or [])
        ]
        folder = by_name(folders, "VM folder", request.folder, where).obj

    network: Found | None = None
    if ovf_networks:
        networks = retrieve(service, vim.Network, ["name"], datacenter.obj)
        if request.network:
            network = by_name(networks, "network", request.network, where)
        else:
            same = [n for n in networks if n.name in ovf_networks]
            if len(same) != 1:
                names = ", ".join(sorted(n.name for n in networks)) or "none"
                raise ConfigError(
                    f"no network given for the OVA's network "
                    f"{', '.join(repr(n) for n in ovf_networks)}; {where} has: {names}; "
                    "pass --network NAME"
                )
            network = same[0]
    return Placement(datacenter, compute, pool, hosts, datastore, folder, network)
