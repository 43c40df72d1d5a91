"""The steps of one datacenter's publish, in order, each registering the undo of what it made.

connect; preflight (placement, hosts, datastore); recover (dead runs' leftovers); name (what
the template name means); import (under a temporary name, marked in-progress from birth);
enforce (firmware, record); snapshot; template; validate-template; swap (the temporary name
becomes the name; with --replace the old template is retired first); retire-old (delete it
unless a VM depends on it); record. Every undo holds the reference of what its step created
and acts only while that object still carries this run's marker (owned.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any, Final, cast

from ovapipe.errors import CheckFailed, VSphereError
from ovapipe.faults import checkpoint
from ovapipe.hardware import FIRMWARE_EFI
from ovapipe.ova.archive import Member
from ovapipe.progress import Progress
from ovapipe.steps import Run, Step
from ovapipe.vsphere.ownership import RunMarker, strip_marker, with_marker
from ovapipe.vsphere.placement import PlacementRequest, resolve_placement
from ovapipe.vsphere.preflight import check_datastore, check_hosts, decide_name, raise_problems
from ovapipe.vsphere.publish.ova import disks_needed
from ovapipe.vsphere.publish.owned import delete_owned, owned_by, reread
from ovapipe.vsphere.publish.records import PublishRecord, write_record
from ovapipe.vsphere.publish.state import DatacenterRun

UPLOAD_POINTS: Final = (10, 50, 95)  # percent: fault points publish.upload@N


def step_connect(state: DatacenterRun, run: Run) -> None:
    from ovapipe.vsphere.connect import session

    login = contextlib.ExitStack()
    state.service = login.enter_context(session(state.connection))
    run.always(f"log out of {state.connection.server}", login.close)


def step_place(state: DatacenterRun, run: Run) -> None:
    options, descriptor = state.options, state.ova.index.descriptor
    request = PlacementRequest(state.datacenter, options.cluster, options.resource_pool,
                               options.datastore, options.folder, options.network)
    placement = resolve_placement(state.service, request, descriptor.networks)
    state.placement = placement
    vmx = descriptor.vmx or options.min_vmx
    problems = check_hosts(placement, vmx)
    problems += check_datastore(placement, disks_needed(state.ova.index))
    raise_problems(state.datacenter, problems)


def step_recover(state: DatacenterRun, run: Run) -> None:
    from ovapipe.vsphere.publish.recovery import recover

    assert state.placement is not None
    for line in recover(state.service, state.placement.datacenter.obj, state.name,
                        own_run=state.marker.id):
        state.removed.append(line)
        run.say(f"{state.datacenter}: {line}")


VM_NAME_LIMIT: Final = 80  # vCenter's limit on a VM's name


def step_preflight(state: DatacenterRun, run: Run) -> None:
    assert state.placement is not None
    options = state.options
    longest = max(state.import_name, state.retired_name, key=len)
    if len(longest) > VM_NAME_LIMIT:
        raise_problems(state.datacenter, [
            f"the name '{state.name}' is too long: publish imports under '{longest}' "
            f"({len(longest)} characters) and vCenter allows {VM_NAME_LIMIT}; choose a name of "
            f"at most {VM_NAME_LIMIT - (len(longest) - len(state.name))} characters"])
    sha = ((lambda: state.ova.content_sha256(state.progress)) if options.replace
           else (lambda: state.ova.identity(state.progress)))
    decision, problems = decide_name(state.service, state.placement, state.name,
                                     replace=options.replace, ova_sha256=sha,
                                     snapshot=options.snapshot,
                                     pipeline_id=options.pipeline_id)
    raise_problems(state.datacenter, problems)
    state.decision = decision
    if decision.mode == "unchanged":
        assert decision.existing is not None
        state.vm = decision.existing.obj
        run.say(f"{state.datacenter}: template {state.name} already holds this OVA "
                f"(sha256 {state.ova.sha256}); nothing to upload")
    elif decision.why == "complete":
        run.say(f"{state.datacenter}: template {state.name} holds this OVA but lacks the "
                "'root' snapshot: rebuilding it and swapping it in")


def _file_items(state: DatacenterRun, spec_result: Any) -> list[tuple[Any, Member]]:
    index = state.ova.index
    items: list[tuple[Any, Member]] = []
    for item in spec_result.fileItem or []:
        member = index.member(item.path)
        if member is None:
            raise CheckFailed(f"vCenter asks for '{item.path}', which the OVA does not contain")
        items.append((item, member))
    return sorted(items, key=lambda pair: pair[1].offset)


def _marked_by_run(state: DatacenterRun) -> list[Any]:
    """This run's in-progress VMs in the datacenter, found by the run id in their marker."""
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    assert state.placement is not None
    found = retrieve(state.service, vim.VirtualMachine, ["config.annotation"],
                     state.placement.datacenter.obj)
    return [vm.obj for vm in found
            if (m := RunMarker.parse(vm.get("config.annotation"))) is not None
            and m.id == state.marker.id and m.target == state.name]


def _delete_import(state: DatacenterRun, run: Run) -> None:
    """The import's undo: the VM it created, by reference (or, if ImportVApp was cut off
    before it answered, by this run's id in the marker the VM was born with)."""
    assert state.placement is not None
    targets = [state.vm] if state.vm is not None else _marked_by_run(state)
    datacenter = state.placement.datacenter.obj
    for vm in targets:
        done = delete_owned(state.service, vm, state.marker.id, datacenter)
        run.say(f"cleanup: {state.datacenter}: {done}")


class _UploadPoints:
    """Progress that also passes the fault points publish.upload@10/50/95."""

    def __init__(self, inner: Progress) -> None:
        self._inner = inner
        self._next = list(UPLOAD_POINTS)

    def advance(self, count: int) -> None:
        self._inner.advance(count)
        total = self._inner.total
        while self._next and total and self._inner.done * 100 >= self._next[0] * total:
            checkpoint(f"publish.upload@{self._next.pop(0)}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def step_import(state: DatacenterRun, run: Run) -> None:
    if state.decision.mode == "unchanged":
        return
    from pyVmomi import vim

    from ovapipe.vsphere.lease import hold_lease
    from ovapipe.vsphere.ovapass import OvaPass
    from ovapipe.vsphere.tasks import fault_message

    placement = state.placement
    assert placement is not None
    content = state.service.RetrieveContent()
    mapping = []
    if placement.network is not None:
        mapping = [vim.OvfManager.NetworkMapping(name=n, network=placement.network.obj)
                   for n in state.ova.index.descriptor.networks]
    params = vim.OvfManager.CreateImportSpecParams(
        entityName=state.import_name, diskProvisioning="thin", networkMapping=mapping)
    try:
        result = content.ovfManager.CreateImportSpec(
            ovfDescriptor=state.ova.descriptor_text, resourcePool=placement.pool,
            datastore=placement.datastore.obj, cisp=params)
    except Exception as exc:
        raise VSphereError(f"CreateImportSpec failed: {fault_message(exc)}") from None
    if result.error:
        messages = "; ".join(fault_message(e) for e in result.error)
        raise CheckFailed(f"vCenter cannot import {state.ova.index.path.name}: {messages}")
    for warning in result.warning or []:
        run.say(f"warning: {state.datacenter}: vCenter: {fault_message(warning)}")
    items = _file_items(state, result)
    # Marked from birth: ImportVApp creates the VM with this annotation.
    result.importSpec.configSpec.annotation = with_marker(
        f"ovapipe is importing {state.ova.index.path.name} as {state.name}\n", state.marker)

    run.on_failure(f"delete {state.import_name} in {state.datacenter}",
                   lambda: _delete_import(state, run))
    state.check_cancel()
    lease = placement.pool.ImportVApp(spec=result.importSpec, folder=placement.folder)
    checkpoint("publish.import.created")
    index = state.ova.index
    uploads = [(member, index.expected_digest(member.name)) for _, member in items]
    total = sum(member.size for member in (m for _, m in items))
    whole = state.ova.sha256 is None
    with state.progress(f"{state.datacenter}: upload {index.path.name}", total) as progress, \
            OvaPass(index.path, index.size, uploads, whole_file_sha256=whole) as one_pass, \
            hold_lease(state.service, lease, state.connection,
                       cast(Progress, _UploadPoints(progress)), check=state.check_cancel) as held:
        state.vm = held.info.entity
        for number, (item, _member) in enumerate(items):
            held.upload(held.target(item.deviceId), one_pass.stream(number),
                        create=bool(item.create))
        digest = one_pass.finish()
    if digest is not None:
        state.ova.learned(digest)
    run.say(f"{state.datacenter}: uploaded {len(items)} file(s) into {state.import_name}")


def step_deploy(state: DatacenterRun, run: Run) -> None:
    """--library: the library item deployed under the temporary name, marked from birth
    (the deployment spec's annotation), instead of an import of the OVA's bytes."""
    if state.decision.mode == "unchanged":
        return
    from pyVmomi import vim

    from ovapipe.vsphere.library.content import DeployTarget, deploy_item
    from ovapipe.vsphere.library.rest import rest_session

    placement, source = state.placement, state.source
    assert placement is not None and source is not None
    networks: tuple[tuple[str, str], ...] = ()
    if placement.network is not None:
        networks = tuple((n, placement.network.obj._moId)
                         for n in state.ova.index.descriptor.networks)
    target = DeployTarget(resource_pool_id=placement.pool._moId,
                          folder_id=placement.folder._moId,
                          datastore_id=placement.datastore.obj._moId, networks=networks)
    annotation = with_marker(f"ovapipe is deploying library item {source.item_name} of "
                             f"{source.library_name} as {state.name}\n", state.marker)
    run.on_failure(f"delete {state.import_name} in {state.datacenter}",
                   lambda: _delete_import(state, run))
    state.check_cancel()
    with rest_session(state.connection) as api:
        vm_id = deploy_item(api, source.item_id, state.import_name, annotation, target)
    checkpoint("publish.import.created")
    state.vm = vim.VirtualMachine(vm_id, state.service._stub)
    run.say(f"{state.datacenter}: deployed library item {source.item_name} as "
            f"{state.import_name}")


def step_enforce(state: DatacenterRun, run: Run) -> None:
    if state.decision.mode == "unchanged":
        return
    from pyVmomi import vim

    from ovapipe.vsphere.template import TemplateRecord, read_vm, reconfigure

    descriptor = state.ova.index.descriptor
    vm = read_vm(state.service, state.vm)
    firmware = descriptor.firmware or state.options.firmware
    secure_boot = bool(descriptor.secure_boot)
    spec = vim.vm.ConfigSpec()
    changes = []
    if vm.get("config.firmware") != firmware:
        spec.firmware = firmware
        changes.append(f"firmware {vm.get('config.firmware')} -> {firmware}")
    current_secure = bool(vm.get("config.bootOptions.efiSecureBootEnabled", False))
    if firmware == FIRMWARE_EFI and current_secure != secure_boot:
        spec.bootOptions = vim.vm.BootOptions(efiSecureBootEnabled=secure_boot)
        changes.append(f"secure boot {current_secure} -> {secure_boot}")
    sha = state.ova.identity(state.progress)
    facts = {f"build.{k}": v for k, v in descriptor.product.items()}
    facts["published"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if state.options.pipeline_id:
        facts["pipeline_id"] = state.options.pipeline_id
    facts.update(state.options.facts)
    record = TemplateRecord(sha, state.ova.index.path.name, facts)
    spec.annotation = with_marker(record.annotation(), state.marker)
    reconfigure(state.vm, spec, f"reconfiguring {state.import_name}")
    if changes:
        run.say(f"{state.datacenter}: the imported VM differs from the OVA "
                f"({'; '.join(changes)}): reconfigured to match the OVA (vCenter can drop "
                "the firmware on import, image-builder#619)")


def step_snapshot(state: DatacenterRun, run: Run) -> None:
    if state.decision.mode == "unchanged" or not state.options.snapshot:
        return
    from ovapipe.vsphere.template import take_root_snapshot

    take_root_snapshot(state.vm, state.import_name)


def step_mark_template(state: DatacenterRun, run: Run) -> None:
    if state.decision.mode == "unchanged":
        return
    from ovapipe.vsphere.template import mark_as_template

    mark_as_template(state.vm, state.import_name)


def step_validate(state: DatacenterRun, run: Run) -> None:
    from ovapipe.validators.template import check_template
    from ovapipe.vsphere.hostcheck import host_problems
    from ovapipe.vsphere.template import SNAPSHOT_NAME, inventory_path, read_vm, snapshot_names

    placement = state.placement
    assert placement is not None
    vm = read_vm(state.service, state.vm)
    descriptor = state.ova.index.descriptor
    vmx = descriptor.vmx or state.options.min_vmx
    problems = host_problems(placement.compute.name, placement.compute.get("environmentBrowser"),
                             placement.hosts, vmx)
    report = check_template(vm, inventory_path(state.service, state.vm), problems,
                            min_vmx=state.options.min_vmx, firmware=state.options.firmware)
    if not vm.get("config.template"):
        report.error("template.flag", "the published VM is not marked as a template")
    if state.options.snapshot and SNAPSHOT_NAME not in snapshot_names(vm):
        report.error("template.snapshot", f"the '{SNAPSHOT_NAME}' snapshot is missing")
    for finding in report.findings:
        if finding.severity == "warning" and finding.rule not in ("template.snapshot",):
            run.say(f"warning: {state.datacenter}: {finding.rule}: {finding.message}")
    if not report.ok:
        details = "\n".join(f"  - {f.rule}: {f.message}" for f in report.errors)
        raise CheckFailed(f"the template in {state.datacenter} fails validate-template:\n"
                          f"{details}")


def step_swap(state: DatacenterRun, run: Run) -> None:
    """The verified import takes the name; with --replace the old template is retired first."""
    if state.decision.mode == "unchanged":
        return
    from ovapipe.vsphere.publish.swap import put_in_place

    put_in_place(state, run)


def step_retire(state: DatacenterRun, run: Run) -> None:
    """--replace: delete the retired old template, unless a VM depends on its disks."""
    if state.retired is None:
        return
    from ovapipe.vsphere.dependents import dependents
    from ovapipe.vsphere.template import destroy

    old = owned_by(state.service, state.retired, state.marker.id, "retired")
    if old is None:
        return
    users = dependents(state.service, state.retired)
    if users:
        run.say(f"{state.datacenter}: replaced template {state.name}; the old one stays as "
                f"{old.name} (retired) because {', '.join(users)} use its disks")
        return
    destroy(state.retired, old.name)
    run.say(f"{state.datacenter}: replaced template {state.name} (the old one is deleted)")


def step_record(state: DatacenterRun, run: Run) -> None:
    from ovapipe.vsphere.template import SNAPSHOT_NAME, inventory_path, record_of, snapshot_names

    vm = reread(state.service, state.vm)
    if vm is None:
        raise VSphereError(f"template {state.name} in {state.datacenter} vanished before its "
                           "record was written")
    record = record_of(vm)
    snapshots = snapshot_names(vm)
    state.record = PublishRecord(
        datacenter=state.datacenter,
        template=vm.name,
        inventory_path=inventory_path(state.service, state.vm),
        moref=state.vm._moId,
        instance_uuid=vm.get("config.instanceUuid"),
        vmx=vm.get("config.version"),
        firmware=vm.get("config.firmware"),
        secure_boot=bool(vm.get("config.bootOptions.efiSecureBootEnabled", False)),
        snapshot=SNAPSHOT_NAME if SNAPSHOT_NAME in snapshots else next(iter(snapshots), None),
        ova_sha256=record.ova_sha256 if record else state.ova.sha256,
        provenance=state.ova.provenance,
        library_id=state.source.library_id if state.source else None,
        library_item_id=state.source.item_id if state.source else None,
    )
    write_record(state.options.output_dir, state.name, state.record)


def finalize(state: DatacenterRun, vm: Any) -> None:
    """Remove this run's in-progress marker: the template under the name is complete."""
    from pyVmomi import vim

    from ovapipe.vsphere.template import reconfigure

    found = owned_by(state.service, vm, state.marker.id, "in-progress")
    if found is None:
        return
    spec = vim.vm.ConfigSpec(annotation=strip_marker(found.get("config.annotation")))
    reconfigure(vm, spec, f"completing {state.name}")


STEPS: Final = [
    Step("connect", step_connect),
    Step("preflight", step_place),
    Step("recover", step_recover),
    Step("name", step_preflight),
    Step("import", step_import),
    Step("enforce", step_enforce),
    Step("snapshot", step_snapshot),
    Step("template", step_mark_template),
    Step("validate-template", step_validate),
    Step("swap", step_swap),
    Step("retire-old", step_retire),
    Step("record", step_record),
]

# --library: the same steps, the item deployed in place of the OVA's import.
LIBRARY_STEPS: Final = [Step("deploy", step_deploy) if step.name == "import" else step
                        for step in STEPS]
