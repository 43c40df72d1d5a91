"""The next run finishes or removes what dead runs left of a template name.

Only VMs that carry a run marker for this name are looked at (never an unmarked VM); a live
run's are left alone with a message. For a dead run:

1. an in-progress VM that already holds the name passed validate-template before its rename
   (swap.py renames only then): it is finished (its marker removed);
2. a template it retired is deleted when a complete template holds the name again (unless a VM
   depends on its disks: then it stays retired, said), otherwise it is put back: renamed to
   the name and unmarked;
3. its other in-progress VMs (imports under temporary names) are deleted with their
   datastore folders. A dead run's open import lease ends with its session on vCenter (and
   is not visible to other sessions); deleting the VM releases what it held.
"""

from __future__ import annotations

from typing import Any

from ovapipe.errors import VSphereError
from ovapipe.vsphere.inventory import Found, retrieve
from ovapipe.vsphere.ownership import RunMarker, liveness, strip_marker
from ovapipe.vsphere.publish.owned import delete_owned, owned_by

_PROPERTIES = ["name", "config.annotation", "config.template", "config.files.vmPathName"]


def _marked(service: Any, datacenter: Any, name: str) -> list[tuple[Found, RunMarker]]:
    from pyVmomi import vim

    found = []
    for vm in retrieve(service, vim.VirtualMachine, _PROPERTIES, datacenter):
        marker = RunMarker.parse(vm.get("config.annotation"))
        if marker is not None and marker.target == name:
            found.append((vm, marker))
    return found


def _complete_holder(service: Any, datacenter: Any, name: str) -> Found | None:
    from pyVmomi import vim

    for vm in retrieve(service, vim.VirtualMachine, _PROPERTIES, datacenter):
        if vm.name == name and vm.get("config.template") \
                and RunMarker.parse(vm.get("config.annotation")) is None:
            return vm
    return None


def recover(service: Any, datacenter: Any, name: str, *, own_run: str) -> list[str]:
    """Finish or remove dead runs' leftovers for ``name``; one line per thing done or left."""
    lines: list[str] = []
    dead: dict[str, list[tuple[Found, RunMarker]]] = {}
    for vm, marker in _marked(service, datacenter, name):
        if marker.id == own_run:
            continue
        alive = liveness(marker)
        if alive.alive:
            lines.append(f"left alone: {vm.name} is {marker.state} work of {marker.describe()}, "
                         f"which may still be running ({alive.why})")
        else:
            dead.setdefault(marker.id, []).append((vm, marker))
    for run_id, items in dead.items():
        why = f"left by dead {items[0][1].describe()}"
        try:
            _recover_run(service, datacenter, name, run_id, items, why, lines)
        except VSphereError as exc:
            lines.append(f"could not finish cleaning up what was {why} ({exc}); "
                         "the next run tries again")
    return lines


def _recover_run(service: Any, datacenter: Any, name: str, run_id: str,
                 items: list[tuple[Found, RunMarker]], why: str, lines: list[str]) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.dependents import dependents
    from ovapipe.vsphere.template import reconfigure, rename

    for vm, marker in items:
        if marker.state == "in-progress" and vm.name == name and vm.get("config.template"):
            found = owned_by(service, vm.obj, run_id, "in-progress")
            if found is not None:
                reconfigure(vm.obj, vim.vm.ConfigSpec(
                    annotation=strip_marker(found.get("config.annotation"))),
                    f"completing {name}")
                lines.append(f"finished template {name} {why} (it had passed "
                             "validate-template)")
    for vm, marker in items:
        if marker.state != "retired":
            continue
        holder = _complete_holder(service, datacenter, name)
        if holder is not None and holder.obj._moId != vm.obj._moId:
            users = dependents(service, vm.obj)
            if users:
                lines.append(f"kept retired template {vm.name} {why}: "
                             f"{', '.join(users)} use its disks")
                continue
            lines.append(delete_owned(service, vm.obj, run_id, datacenter, "retired")
                         + f": the retired old template {why}")
            continue
        found = owned_by(service, vm.obj, run_id, "retired")
        if found is None:
            continue
        if found.name != name:
            rename(vm.obj, found.name, name)
        reconfigure(vm.obj, vim.vm.ConfigSpec(
            annotation=strip_marker(found.get("config.annotation"))),
            f"restoring {name}")
        lines.append(f"restored the old template {name} {why} (its replacement was "
                     "not finished)")
    for vm, marker in items:
        if marker.state == "in-progress" and not (vm.name == name
                                                  and vm.get("config.template")):
            lines.append(delete_owned(service, vm.obj, run_id, datacenter)
                         + f": an unfinished import {why}")
