"""Where a published VM goes: datacenter, compute resource and pool, datastore, folder, network.

Every argument is an inventory path as govc reads it (ovapipe.vsphere.resolve), looked up in
one bulk read of the inventory; none or several matches is a ConfigError listing full paths.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ovapipe.errors import ConfigError
from ovapipe.vsphere.hostcheck import HOST_PROPERTIES
from ovapipe.vsphere.inventory import Found
from ovapipe.vsphere.resolve import (
    ATTACHABLE_NETWORKS,
    COMPUTE,
    DATASTORE,
    FOLDER,
    NETWORK,
    RESOURCE_POOL,
    Inventory,
    Node,
    Resolved,
    unescape,
)

COMPUTE_PROPERTIES: Final = ("name", "host", "environmentBrowser", "resourcePool")
DATASTORE_PROPERTIES: Final = ("name", "summary.freeSpace", "summary.accessible")


@dataclass(frozen=True)
class PlacementRequest:
    """Paths given on the command line (or defaults); None = choose when unambiguous."""

    datacenter: str | None
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


def _found(service: Any, resolved: Resolved, paths: Sequence[str]) -> Found:
    from ovapipe.vsphere.inventory import properties

    return Found(resolved.obj, {"name": resolved.name, **properties(service, resolved.obj,
                                                                    paths)})


def resolve_compute(
    inventory: Inventory, datacenter: Node, request: PlacementRequest
) -> tuple[Resolved, Resolved]:
    """The compute resource (cluster or standalone host) and the resource pool to import into.

    With --cluster, --resource-pool is looked for inside that cluster only (so the cluster's
    root pool is just 'Resources'); without it, the pool names its compute resource.
    """
    compute = None
    if request.cluster:
        compute = inventory.resolve(COMPUTE, request.cluster, datacenter, source="--cluster")
    if not request.resource_pool:
        if compute is None:
            compute = inventory.only(COMPUTE, datacenter,
                                     flag="--cluster PATH (or --resource-pool PATH)")
        pool_ref = compute.node.props.get("resourcePool")
        if pool_ref is None:
            raise ConfigError(f"{compute.path} has no resource pool")
        root_pool = inventory.nodes[pool_ref._moId]
        return compute, Resolved(root_pool, inventory.path_of(root_pool))
    pool = inventory.resolve(RESOURCE_POOL, request.resource_pool, datacenter,
                             source="--resource-pool",
                             within=compute.node if compute is not None else None)
    owner = inventory.owner_compute(pool.node)
    if owner is None:
        raise ConfigError(f"resource pool {pool.path} has no cluster or host above it")
    return Resolved(owner, inventory.path_of(owner)), pool


def default_network(inventory: Inventory, datacenter: Node, ovf_networks: Sequence[str]
                    ) -> tuple[Resolved, str]:
    """The network for the OVA's NIC when none was given, and why it was chosen.

    The one the OVA names if the datacenter has it, else the datacenter's only network.
    """
    networks = [n for n in inventory.all_of(NETWORK, datacenter)
                if n.type in ATTACHABLE_NETWORKS]
    named = [n for n in networks if n.name in ovf_networks or unescape(n.name) in ovf_networks]
    wanted = ", ".join(repr(n) for n in ovf_networks)
    if len(named) == 1:
        chosen = Resolved(named[0], inventory.path_of(named[0]))
        return chosen, f"network {chosen.path}: the OVA's network {wanted}"
    if not named and len(networks) == 1:
        chosen = Resolved(networks[0], inventory.path_of(networks[0]))
        return chosen, (f"network {chosen.path}: the only network in datacenter "
                        f"{inventory.path_of(datacenter)} (the OVA names {wanted}); "
                        "pass --network to choose another")
    listed = ", ".join(inventory.path_of(n) for n in (named or networks)) or "none"
    several = "several networks are called" if named else "no network is called"
    raise ConfigError(
        f"no --network given (nor VSPHERE_NETWORK / invoke.yaml ovapipe.network), {several} "
        f"{wanted} in datacenter {inventory.path_of(datacenter)} and it has "
        f"{len(networks)}: {listed}; pass --network PATH"
    )


def resolve_placement(
    service: Any, request: PlacementRequest, ovf_networks: Sequence[str],
    *, say: Callable[[str], object] | None = None,
) -> Placement:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    inventory = Inventory.read(service)
    dc = inventory.datacenter(request.datacenter)
    compute, pool = resolve_compute(inventory, dc.node, request)
    hosts = retrieve(service, vim.HostSystem, HOST_PROPERTIES, compute.obj)

    if request.datastore:
        datastore = inventory.resolve(DATASTORE, request.datastore, dc.node,
                                      source="--datastore")
    else:
        datastore = inventory.only(DATASTORE, dc.node, flag="--datastore PATH")

    folder = dc.node.props.get("vmFolder")
    if request.folder:
        chosen = inventory.resolve(FOLDER, request.folder, dc.node, source="--folder")
        if "VirtualMachine" not in (chosen.node.props.get("childType") or []):
            raise ConfigError(f"--folder {request.folder!r} is {chosen.path}, which holds no "
                              f"VMs; give a folder below {inventory.path_of(dc.node)}/vm")
        folder = chosen.obj

    network: Found | None = None
    if ovf_networks:
        if request.network:
            chosen = inventory.resolve(NETWORK, request.network, dc.node, source="--network")
            if chosen.node.type not in ATTACHABLE_NETWORKS:
                raise ConfigError(f"--network {request.network!r} is {chosen.path}, a "
                                  "distributed switch; give one of its port groups")
        else:
            chosen, why = default_network(inventory, dc.node, ovf_networks)
            (say or _stderr)(f"{inventory.path_of(dc.node)}: {why}")
        network = _found(service, chosen, [])
    return Placement(
        _found(service, dc, ["vmFolder"]),
        _found(service, compute, COMPUTE_PROPERTIES),
        pool.obj, hosts,
        _found(service, datastore, DATASTORE_PROPERTIES),
        folder, network,
    )


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)
