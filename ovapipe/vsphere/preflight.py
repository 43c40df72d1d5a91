"""Checks before any byte moves: hosts, datastore space, and what the template name means.

All problems found are reported together as one CheckFailed, each naming the object and the
fix. The name decision (create, unchanged, replace) is data for the publish steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ovapipe.errors import CheckFailed
from ovapipe.progress import human_bytes
from ovapipe.vsphere.hostcheck import host_problems
from ovapipe.vsphere.inventory import Found, retrieve
from ovapipe.vsphere.placement import Placement
from ovapipe.vsphere.template import (
    SNAPSHOT_NAME,
    inventory_path,
    record_of,
    snapshot_names,
    vms_named,
)

Mode = Literal["create", "unchanged", "replace"]


@dataclass(frozen=True)
class NameDecision:
    mode: Mode
    existing: Found | None = None  # the template being kept (unchanged) or replaced
    # "complete": the same OVA, but the template lacks the requested 'root' snapshot
    why: str = ""


def check_hosts(placement: Placement, vmx: int) -> list[str]:
    return [
        p.message
        for p in host_problems(
            placement.compute.name, placement.compute.get("environmentBrowser"),
            placement.hosts, vmx,
        )
    ]


def check_datastore(placement: Placement, needed: int) -> list[str]:
    datastore = placement.datastore
    if not datastore.get("summary.accessible", True):
        return [f"datastore {datastore.name} is not accessible: pick another with --datastore"]
    free = int(datastore.get("summary.freeSpace") or 0)
    if free < needed:
        return [
            f"datastore {datastore.name} has {human_bytes(free)} free, the OVA's disks need "
            f"{human_bytes(needed)}: free space there or pass --datastore with another one"
        ]
    return []


def decide_name(
    service: Any,
    placement: Placement,
    name: str,
    *,
    replace: bool,
    ova_sha256: Callable[[], str],
    snapshot: bool = True,
    pipeline_id: str | None = None,
) -> tuple[NameDecision, list[str]]:
    """What to do with ``name``; problems when it cannot be used.

    CAPV finds templates by name, so a name must mean one template (CAPV#4128). The only
    other VMs allowed to share it are templates ovapipe published in other datacenters (the
    same image published to several datacenters). Imports run under temporary names, so a
    half-imported VM never holds the name. ``ova_sha256`` is called only when a template of
    that name already exists in the target datacenter (with ``replace`` it hashes the file).
    """
    from pyVmomi import vim

    from ovapipe.vsphere.ownership import RunMarker, liveness

    everywhere = vms_named(service, name)
    # Names only: the properties of these VMs were just read for ``everywhere``.
    in_datacenter = retrieve(service, vim.VirtualMachine, ["name"], placement.datacenter.obj)
    here_ids = {vm.obj._moId for vm in in_datacenter if vm.name == name}
    here = [vm for vm in everywhere if vm.obj._moId in here_ids]
    elsewhere = [vm for vm in everywhere if vm.obj._moId not in here_ids]
    problems: list[str] = []
    for vm in elsewhere:
        if not (vm.get("config.template") and record_of(vm)):
            problems.append(
                f"the name '{name}' is already used by {inventory_path(service, vm.obj)}, "
                "which ovapipe did not publish: template names must be unique in the vCenter "
                "(CAPV resolves them by name, CAPV#4128); choose another --name"
            )
    if len(here) > 1:
        paths = ", ".join(inventory_path(service, vm.obj) for vm in here)
        problems.append(
            f"{len(here)} VMs are named '{name}' in datacenter {placement.datacenter_name} "
            f"({paths}): CAPV cannot tell them apart (CAPV#4128); remove the extra ones or "
            "choose another --name"
        )
    if problems or not here:
        return NameDecision("create"), problems
    existing = here[0]
    record = record_of(existing)
    where = inventory_path(service, existing.obj)
    if not existing.get("config.template"):
        return NameDecision("create"), [
            f"{where} is a VM, not a template: ovapipe does not replace VMs; choose another "
            "--name or remove the VM"
        ]
    marker = RunMarker.parse(existing.get("config.annotation"))
    if marker is not None:
        alive = liveness(marker)
        return NameDecision("create"), [
            f"{where} is still being finished by another publish, {marker.describe()}: "
            f"{alive.why}; wait for it to end, then publish again"
        ]
    if record is not None and record.ova_sha256 == ova_sha256():
        if snapshot and SNAPSHOT_NAME not in snapshot_names(existing):
            # A template cannot take a snapshot; rebuild it and swap it in, as --replace does.
            return NameDecision("replace", existing, "complete"), []
        return NameDecision("unchanged", existing), []
    if replace and record is None:
        return NameDecision("create"), [
            f"template {where} was not published by ovapipe (it carries no ovapipe record): "
            "--replace swaps only templates ovapipe made; choose another --name"
        ]
    theirs = record.facts.get("pipeline_id") if record else None
    if replace and theirs and pipeline_id and theirs != pipeline_id:
        return NameDecision("create"), [
            f"template {where} belongs to pipeline '{theirs}', not this site's "
            f"'{pipeline_id}' (invoke.yaml ovapipe.pipeline_id): --replace swaps only this "
            "site's templates; choose another --name"
        ]
    if replace:
        return NameDecision("replace", existing), []
    origin = (f"published from OVA sha256 {record.ova_sha256[:12]}…" if record
              else "not published by ovapipe")
    return NameDecision("create"), [
        f"template {where} already exists ({origin}) and this OVA differs: pass --replace to "
        "swap it (the old one stays until the new one passes validate-template), or choose "
        "another --name"
    ]


def raise_problems(datacenter: str, problems: list[str]) -> None:
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise CheckFailed(f"preflight refused datacenter {datacenter}:\n{lines}")
