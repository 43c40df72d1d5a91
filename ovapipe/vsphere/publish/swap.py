"""The verified import takes the template name; with --replace the old template retires first.

vCenter names are unique per folder, so two VMs cannot swap names in one call: the name is
free for exactly the interval between two Rename_Task calls (old -> retired name, new ->
name). Around that window every state is recoverable from the markers alone:

- the old template is marked ``retired`` by this run before it is renamed, and keeps its
  record, so it can always be put back;
- the new VM is marked ``in-progress`` until it holds the name; removing that marker is the
  commit point;
- an undo acts only while the new VM is still in-progress (not committed): then the new VM
  goes back to its temporary name and the old template back to the name, unmarked. After the
  commit nothing is undone: the new template is complete under the name.

A run killed anywhere in between is finished or rolled back by the next run (recovery.py).
"""

from __future__ import annotations

from typing import Any

from ovapipe.errors import CheckFailed, VSphereError
from ovapipe.faults import checkpoint
from ovapipe.steps import Run
from ovapipe.vsphere.ownership import RunMarker, strip_marker, with_marker
from ovapipe.vsphere.publish.owned import delete_owned, owned_by, reread
from ovapipe.vsphere.publish.state import DatacenterRun


def _set_annotation(vm: Any, text: str, description: str) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.template import reconfigure

    reconfigure(vm, vim.vm.ConfigSpec(annotation=text), description)


def put_in_place(state: DatacenterRun, run: Run) -> None:
    from ovapipe.vsphere.template import rename

    service, name, run_id = state.service, state.name, state.marker.id
    new = state.vm

    def committed() -> bool:
        return owned_by(service, new, run_id, "in-progress") is None

    if state.decision.mode == "replace":
        assert state.decision.existing is not None
        old = state.decision.existing.obj
        now = reread(service, old)
        if now is None or now.name != name or RunMarker.parse(now.get("config.annotation")):
            raise CheckFailed(f"template {name} changed while this run imported its "
                              "replacement (another publish?): publish again")
        checkpoint("publish.swap.retire")
        _set_annotation(old, with_marker(now.get("config.annotation"),
                                         state.marker.as_state("retired")),
                        f"marking {name} as retired by this run")
        state.retired = old

        def unretire() -> None:
            found = owned_by(service, old, run_id, "retired")
            if found is not None and not committed():
                _set_annotation(old, strip_marker(found.get("config.annotation")),
                                f"restoring the record of {name}")

        run.on_failure(f"restore {name}'s record (unmark retired)", unretire)
        rename(old, name, state.retired_name)

        def rename_back() -> None:
            found = owned_by(service, old, run_id, "retired")
            if found is not None and found.name != name and not committed():
                rename(old, found.name, name)

        run.on_failure(f"rename {state.retired_name} back to {name}", rename_back)
        checkpoint("publish.swap.renamed-old")
    try:
        rename(new, state.import_name, name)
    except VSphereError as exc:
        if state.decision.mode == "replace":
            raise
        _lost_race(state, run, exc)
        return

    def tmp_name_back() -> None:
        if not committed():
            rename(new, name, state.import_name)

    run.on_failure(f"rename {name} back to {state.import_name}", tmp_name_back)
    checkpoint("publish.swap.renamed-new")
    from ovapipe.vsphere.publish.steps import finalize

    finalize(state, new)  # the commit point
    checkpoint("publish.swap.completed")


def _lost_race(state: DatacenterRun, run: Run, error: VSphereError) -> None:
    """Another publish put a template under the name while this one imported."""
    from ovapipe.vsphere.template import record_of, vms_named

    assert state.placement is not None
    holders = [vm for vm in vms_named(state.service, state.name, state.placement.datacenter.obj)
               if vm.obj._moId != state.vm._moId]
    if not holders:
        raise error  # the rename failed for another reason than the name being taken
    record = record_of(holders[0]) if len(holders) == 1 else None
    if record is None or not holders[0].get("config.template") \
            or record.ova_sha256 != state.ova.sha256:
        raise CheckFailed(f"the name {state.name} was taken while this run imported "
                          f"({error}): another publish put a different template there; "
                          "publish again (with --replace to swap it)")
    run.say(f"{state.datacenter}: another publish put this same OVA in place as {state.name} "
            "meanwhile; keeping that one and deleting this run's copy")
    mine = state.vm
    state.vm = holders[0].obj
    run.say(f"{state.datacenter}: "
            f"{delete_owned(state.service, mine, state.marker.id, state.placement.datacenter.obj)}")
