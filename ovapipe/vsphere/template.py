"""Templates in vCenter: what ovapipe records on them, finding them by name, changing them.

The record lives in the VM's annotation (a plain "Notes" field every vSphere edition has and
that survives MarkAsTemplate): one ``ovapipe.KEY: value`` line per fact, after a readable
first line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ovapipe.errors import VSphereError
from ovapipe.vsphere.inventory import Found, retrieve
from ovapipe.vsphere.tasks import fault_message, wait_for_task

RECORD_PREFIX: Final = "ovapipe."
SNAPSHOT_NAME: Final = "root"
VM_PROPERTIES: Final = (
    "name",
    "config.template",
    "config.annotation",
    "config.version",
    "config.firmware",
    "config.bootOptions.efiSecureBootEnabled",
    "config.instanceUuid",
    "config.guestId",
    "snapshot",
    "runtime.host",
    "runtime.powerState",
    "config.files.vmPathName",
)


@dataclass(frozen=True)
class TemplateRecord:
    """Facts ovapipe writes on a template it published."""

    ova_sha256: str
    ova_name: str
    facts: Mapping[str, str]

    def annotation(self) -> str:
        lines = [f"Published by ovapipe from {self.ova_name}",
                 f"{RECORD_PREFIX}ova_sha256: {self.ova_sha256}",
                 f"{RECORD_PREFIX}ova: {self.ova_name}"]
        lines += [f"{RECORD_PREFIX}{key}: {value}" for key, value in self.facts.items()]
        return "\n".join(lines) + "\n"

    @staticmethod
    def parse(annotation: str | None) -> TemplateRecord | None:
        values: dict[str, str] = {}
        for line in (annotation or "").splitlines():
            if line.startswith(RECORD_PREFIX) and ": " in line:
                key, value = line[len(RECORD_PREFIX):].split(": ", 1)
                if key == "state" or key.startswith("run."):  # the run marker (ownership.py)
                    continue
                values[key.strip()] = value.strip()
        sha = values.pop("ova_sha256", "")
        if len(sha) != 64:
            return None
        return TemplateRecord(sha, values.pop("ova", ""), values)


def record_of(vm: Found) -> TemplateRecord | None:
    return TemplateRecord.parse(vm.get("config.annotation"))


def vms_named(service: Any, name: str, root: Any = None) -> list[Found]:
    """Every VM or template called ``name`` under ``root`` (default: the whole vCenter).

    Names of all VMs are read in one call; the full properties only for the matches. For
    finding, never for deleting: it refuses to run inside a cleanup (ovapipe.steps).
    """
    from pyVmomi import vim

    from ovapipe.steps import in_cleanup

    if in_cleanup():
        raise RuntimeError(f"a cleanup looked up VMs by the name '{name}': cleanups must act "
                           "on the reference of what their own step created")

    return [read_vm(service, vm.obj)
            for vm in retrieve(service, vim.VirtualMachine, ["name"], root) if vm.name == name]


def read_vm(service: Any, vm: Any) -> Found:
    from ovapipe.vsphere.inventory import properties

    return Found(vm, properties(service, vm, VM_PROPERTIES))


def snapshot_names(vm: Found) -> list[str]:
    names: list[str] = []
    info = vm.get("snapshot")
    pending = list(getattr(info, "rootSnapshotList", None) or [])
    while pending:
        node = pending.pop(0)
        names.append(node.name)
        pending.extend(node.childSnapshotList or [])
    return names


def inventory_path(service: Any, obj: Any) -> str:
    """/DC0/vm/folder/name, from the parent chain read in bulk one level at a time."""
    from ovapipe.vsphere.inventory import properties

    parts: list[str] = []
    current = obj
    root = service.RetrieveContent().rootFolder
    while current is not None and current != root:
        props = properties(service, current, ["name", "parent"])
        parts.append(str(props.get("name", current._moId)))
        current = props.get("parent")
    return "/" + "/".join(reversed(parts))


def reconfigure(vm: Any, spec: Any, description: str) -> None:
    wait_for_task(vm.ReconfigVM_Task(spec=spec), description)


def take_root_snapshot(vm: Any, name: str) -> None:
    wait_for_task(
        vm.CreateSnapshot_Task(
            name=SNAPSHOT_NAME,
            description="base for CAPV linked clones (ovapipe)",
            memory=False,
            quiesce=False,
        ),
        f"snapshot '{SNAPSHOT_NAME}' of {name}",
    )


def mark_as_template(vm: Any, name: str) -> None:
    try:
        vm.MarkAsTemplate()
    except Exception as exc:
        raise VSphereError(f"marking {name} as a template failed: {fault_message(exc)}") from None


def rename(vm: Any, old: str, new: str) -> None:
    wait_for_task(vm.Rename_Task(newName=new), f"renaming {old} to {new}")


def destroy(vm: Any, name: str) -> None:
    """Delete a VM or template and its files; one that is already gone is fine."""
    from pyVmomi import vmodl

    try:
        task = vm.Destroy_Task()
    except vmodl.fault.ManagedObjectNotFound:
        return
    try:
        wait_for_task(task, f"deleting {name}")
    except VSphereError as exc:
        if "has already been deleted" in str(exc) or "not found" in str(exc).lower():
            return
        raise
