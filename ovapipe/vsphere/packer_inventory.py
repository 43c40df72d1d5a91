"""Inventory settings as vsphere-iso reads them, from the paths users write.

Users give ``datacenter``, ``cluster``, ``host``, ``resource_pool``, ``datastore``, ``network``
and ``folder`` the way govc and CAPV read them (ovapipe.vsphere.resolve: absolute paths,
relative paths, names, globs). Packer's vsphere-iso reads some of them differently: ``folder``
is a path below the datacenter's VM folder, created when missing (so ``vm`` makes
``/DC0/vm/vm``), and ``resource_pool`` is a path below the cluster's (or host's) root pool.
Each value is therefore resolved once, against vCenter, and handed to Packer in the form it
expects: the path relative to the datacenter folder of its kind.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ovapipe.errors import ConfigError
from ovapipe.varfiles import ResolvedVars
from ovapipe.vsphere.resolve import (
    ATTACHABLE_NETWORKS,
    CLUSTER,
    DATASTORE,
    FOLDER,
    HOST,
    NETWORK,
    RESOURCE_POOL,
    Inventory,
    Node,
)


def _below(path: str, prefix: str) -> str:
    """``path`` relative to ``prefix`` ('' for ``prefix`` itself)."""
    if path == prefix:
        return ""
    if not path.startswith(prefix + "/"):
        raise ConfigError(f"{path} is not below {prefix}")
    return path[len(prefix) + 1:]


def packer_values(inventory: Inventory, values: dict[str, Any], sources: dict[str, str]
                  ) -> tuple[dict[str, Any], list[str]]:
    """The values vsphere-iso gets, and one line per value that changed."""
    out = dict(values)

    def source(key: str) -> str:
        return f"{key} (from {sources.get(key, 'defaults')})"

    dc = inventory.datacenter(str(values["datacenter"]), source=source("datacenter"))
    dc_path = dc.path
    out["datacenter"] = dc_path.lstrip("/")
    host_folder = f"{dc_path}/host"
    cluster = inventory.resolve(CLUSTER, str(values["cluster"]), dc.node,
                                source=source("cluster"))
    out["cluster"] = _below(cluster.path, host_folder)
    compute: Node = cluster.node
    if values.get("host"):
        host = inventory.resolve(HOST, str(values["host"]), dc.node, source=source("host"),
                                 within=cluster.node)
        out["host"] = _below(host.path, host_folder)
    if values.get("resource_pool"):
        pool = inventory.resolve(RESOURCE_POOL, str(values["resource_pool"]), dc.node,
                                 source=source("resource_pool"), within=compute)
        out["resource_pool"] = _below(pool.path, f"{cluster.path}/Resources")
    datastore = inventory.resolve(DATASTORE, str(values["datastore"]), dc.node,
                                  source=source("datastore"))
    out["datastore"] = _below(datastore.path, f"{dc_path}/datastore")
    network = inventory.resolve(NETWORK, str(values["network"]), dc.node,
                                source=source("network"))
    if network.node.type not in ATTACHABLE_NETWORKS:
        raise ConfigError(f"{source('network')}: {network.path} is a distributed switch; "
                          "give one of its port groups")
    out["network"] = _below(network.path, f"{dc_path}/network")
    if values.get("folder"):
        folder = inventory.resolve(FOLDER, str(values["folder"]), dc.node,
                                   source=source("folder"))
        if "VirtualMachine" not in (folder.node.props.get("childType") or []):
            raise ConfigError(f"{source('folder')}: {folder.path} holds no VMs; give a folder "
                              f"below {dc_path}/vm")
        out["folder"] = _below(folder.path, f"{dc_path}/vm")
    changes = [f"{key} {values[key]!r} -> {out[key]!r}" for key in out
               if key in values and out[key] != values[key]]
    return out, changes


def for_packer(service: Any, resolved: ResolvedVars) -> tuple[ResolvedVars, list[str]]:
    """``resolved`` with its inventory values in vsphere-iso's form (see packer_values)."""
    values, changes = packer_values(Inventory.read(service), dict(resolved.values),
                                    dict(resolved.sources))
    return dataclasses.replace(resolved, values=values), changes
