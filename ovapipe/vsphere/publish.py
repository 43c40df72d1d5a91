"""invoke publish: a checked OVA becomes a vmx-17/EFI template with a 'root' snapshot.

Per datacenter a multistep run (ovapipe.steps): connect, preflight, import (CreateImportSpec,
ImportVApp, lease upload straight from the OVA's members), enforce firmware and record facts,
snapshot, mark as template, validate-template, swap (with --replace), handoff record. Each
step registers the cleanup of what it creates, so a failure or Ctrl-C leaves vCenter as it
was. Datacenters are published concurrently, at most ``concurrency`` at a time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from ovapipe.config import Connection
from ovapipe.errors import CheckFailed, ConfigError, Interrupted, OvapipeError, VSphereError
from ovapipe.files import sha256_file, write_json
from ovapipe.hardware import FIRMWARE_EFI, GPU_MIN_VMX
from ovapipe.ova.archive import Member
from ovapipe.ova.descriptor_read import descriptor_text
from ovapipe.ova.reader import OvaIndex, read_ova
from ovapipe.paths import OUTPUT_DIR
from ovapipe.progress import Progress
from ovapipe.steps import Run, Step, run_steps, sigterm_as_interrupt
from ovapipe.vsphere.placement import Placement, PlacementRequest, resolve_placement
from ovapipe.vsphere.preflight import (
    NameDecision,
    check_datastore,
    check_hosts,
    decide_name,
    raise_problems,
)

ProgressFactory = Callable[[str, int | None], Progress]


@dataclass(frozen=True)
class PublishOptions:
    ova: Path
    datacenters: tuple[str, ...]
    cluster: str | None = None
    resource_pool: str | None = None
    datastore: str | None = None
    folder: str | None = None
    network: str | None = None
    name: str | None = None
    replace: bool = False
    snapshot: bool = True
    concurrency: int = 2
    output_dir: Path = OUTPUT_DIR
    min_vmx: int = GPU_MIN_VMX
    firmware: str = FIRMWARE_EFI
    # Extra facts recorded on the template beside the OVA's build facts (e.g. nightly marks).
    facts: Mapping[str, str] = field(default_factory=dict)


@dataclass
class CheckedOva:
    """An OVA that passed validate-ova's rules (digests are checked during the upload)."""

    index: OvaIndex
    descriptor_text: str
    name: str
    sha256: str | None  # known before the upload only from a fresh NAME.ova.sha256 file
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def identity(self, progress: ProgressFactory) -> str:
        """The OVA's sha256, hashing the file now if no fresh .sha256 file gave it."""
        with self._lock:
            if self.sha256 is None:
                self.sha256 = hash_file(self.index.path, progress)
            return self.sha256


def hash_file(path: Path, progress: ProgressFactory) -> str:
    with progress(f"sha256 {path.name}", path.stat().st_size) as bar:
        return sha256_file(path, bar)


def sidecar_sha256(path: Path) -> str | None:
    """The digest in NAME.ova.sha256 (written by build-ova) when it is not older than the OVA."""
    sidecar = path.with_name(path.name + ".sha256")
    try:
        if sidecar.stat().st_mtime_ns < path.stat().st_mtime_ns:
            return None
        first = sidecar.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    if first and len(first[0]) == 64 and all(c in "0123456789abcdef" for c in first[0].lower()):
        return first[0].lower()
    return None


def check_ova(path: Path, *, min_vmx: int, firmware: str, name: str | None) -> CheckedOva:
    """validate-ova's rules without the full-content digests, which the upload verifies."""
    from ovapipe.validators.ova import validate_ova

    if not path.exists():  # validate_ova names what else is wrong (a directory, a pipe)
        raise ConfigError(f"{path}: no such OVA file")
    report = validate_ova(path, min_vmx=min_vmx, firmware=firmware, check_digests=False)
    if not report.ok:
        details = "\n".join(f"  - {f.rule}: {f.message}" for f in report.errors)
        raise CheckFailed(f"{path} fails validate-ova (run `invoke validate-ova --path "
                          f"{path}` for the full report):\n{details}")
    index = read_ova(path)
    with open(path, "rb") as handle:
        handle.seek(index.descriptor_member.offset)
        descriptor = handle.read(index.descriptor_member.size)
    expected = index.expected_digest(index.descriptor_member.name)
    if expected is not None:
        seen = hashlib.new(expected.hashlib_name, descriptor).hexdigest()
        if not expected.matches(seen):
            raise CheckFailed(f"{path}: {index.descriptor_member.name} does not match its "
                              f"{expected.algorithm} in the manifest; the OVA is corrupt")
    template_name = name or path.name.removesuffix(".ova")
    return CheckedOva(index, descriptor_text(descriptor), template_name, sidecar_sha256(path))


class InFlightImports:
    """The VMs this publish run is importing, shared by its datacenters.

    A datacenter's name check sees its siblings' half-imported VMs under the same name; those
    are this run's own (a sibling whose import fails deletes its VM), so the check skips
    exactly them. An import is announced before ImportVApp creates the VM, so a check waits
    out the moment between the VM's creation and its reference being known.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._starting = 0
        self._morefs: set[str] = set()

    @contextlib.contextmanager
    def importing(self) -> Iterator[Callable[[set[str]], None]]:
        with self._changed:
            self._starting += 1

        def created(morefs: set[str]) -> None:
            with self._changed:
                self._morefs |= morefs

        try:
            yield created
        finally:
            with self._changed:
                self._starting -= 1
                self._changed.notify_all()

    def ours(self, timeout: float = 120) -> set[str]:
        with self._changed:
            self._changed.wait_for(lambda: self._starting == 0, timeout=timeout)
            return set(self._morefs)


@dataclass
class DatacenterRun:
    """The state one datacenter's steps share."""

    datacenter: str
    options: PublishOptions
    connection: Connection
    ova: CheckedOva
    progress: ProgressFactory
    cancelled: threading.Event
    in_flight: InFlightImports = field(default_factory=InFlightImports)
    service: Any = None
    placement: Placement | None = None
    decision: NameDecision = field(default_factory=lambda: NameDecision("create"))
    import_name: str = ""
    parked_name: str = ""
    vm: Any = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.ova.name

    def check_cancel(self) -> None:
        if self.cancelled.is_set():
            raise KeyboardInterrupt


# ---- steps ---------------------------------------------------------------------------------

def step_connect(state: DatacenterRun, run: Run) -> None:
    from ovapipe.vsphere.connect import session

    login = contextlib.ExitStack()
    state.service = login.enter_context(session(state.connection))
    run.always(f"log out of {state.connection.server}", login.close)


def disks_needed(index: OvaIndex) -> int:
    total = 0
    for disk, member in index.disks():
        total += disk.populated_size or (member.size if member else 0) or 0
    nvram = index.nvram_member
    return total + (nvram.size if nvram else 0)


def step_preflight(state: DatacenterRun, run: Run) -> None:
    options, descriptor = state.options, state.ova.index.descriptor
    request = PlacementRequest(state.datacenter, options.cluster, options.resource_pool,
                               options.datastore, options.folder, options.network)
    placement = resolve_placement(state.service, request, descriptor.networks)
    state.placement = placement
    vmx = descriptor.vmx or options.min_vmx
    problems = check_hosts(placement, vmx)
    problems += check_datastore(placement, disks_needed(state.ova.index))
    decision, name_problems = decide_name(
        state.service, placement, state.name, replace=options.replace,
        ova_sha256=lambda: state.ova.identity(state.progress), ours=state.in_flight.ours,
    )
    raise_problems(state.datacenter, problems + name_problems)
    state.decision = decision
    if decision.mode == "replace":
        from ovapipe.vsphere.template import vms_named

        sha = state.ova.identity(state.progress)
        state.import_name = f"{state.name}.ovapipe-new-{sha[:12]}"
        if vms_named(state.service, state.import_name):
            raise_problems(state.datacenter, [
                f"a VM named '{state.import_name}' is left from an interrupted --replace: "
                "delete it, then publish again"])
    else:
        state.import_name = state.name
    if decision.mode == "unchanged":
        assert decision.existing is not None
        state.vm = decision.existing.obj
        run.say(f"{state.datacenter}: template {state.name} already holds this OVA "
                f"(sha256 {state.ova.sha256}); nothing to upload")


def _file_items(state: DatacenterRun, spec_result: Any) -> list[tuple[Any, Member]]:
    index = state.ova.index
    items: list[tuple[Any, Member]] = []
    for item in spec_result.fileItem or []:
        member = index.member(item.path)
        if member is None:
            raise CheckFailed(f"vCenter asks for '{item.path}', which the OVA does not contain")
        items.append((item, member))
    return sorted(items, key=lambda pair: pair[1].offset)


def _delete_imported(state: DatacenterRun, known: set[str]) -> Callable[[], None]:
    def delete() -> None:
        from ovapipe.vsphere.template import destroy, vms_named

        assert state.placement is not None
        targets = [state.vm] if state.vm is not None else []
        for vm in vms_named(state.service, state.import_name, state.placement.datacenter.obj):
            if vm.obj._moId not in known and vm.obj not in targets:
                targets.append(vm.obj)
        for vm in targets:
            destroy(vm, state.import_name)

    return delete


def step_import(state: DatacenterRun, run: Run) -> None:
    if state.decision.mode == "unchanged":
        return
    from pyVmomi import vim

    from ovapipe.vsphere.lease import hold_lease
    from ovapipe.vsphere.ovapass import OvaPass
    from ovapipe.vsphere.tasks import fault_message
    from ovapipe.vsphere.template import vms_named

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

    known = {vm.obj._moId for vm in vms_named(state.service, state.import_name,
                                              placement.datacenter.obj)}
    run.on_failure(f"delete {state.import_name} in {state.datacenter}",
                   _delete_imported(state, known))
    state.check_cancel()
    with state.in_flight.importing() as created:
        lease = placement.pool.ImportVApp(spec=result.importSpec, folder=placement.folder)
        created({vm.obj._moId for vm in vms_named(state.service, state.import_name,
                                                  placement.datacenter.obj)} - known)
    index = state.ova.index
    uploads = [(member, index.expected_digest(member.name)) for _, member in items]
    total = sum(member.size for member in (m for _, m in items))
    whole = state.ova.sha256 is None
    with state.progress(f"{state.datacenter}: upload {index.path.name}", total) as progress, \
            OvaPass(index.path, index.size, uploads, whole_file_sha256=whole) as one_pass, \
            hold_lease(state.service, lease, state.connection, progress,
                       check=state.check_cancel) as held:
        state.vm = held.info.entity
        for number, (item, _member) in enumerate(items):
            held.upload(held.target(item.deviceId), one_pass.stream(number),
                        create=bool(item.create))
        digest = one_pass.finish()
    if digest is not None:
        state.ova.sha256 = state.ova.sha256 or digest
    run.say(f"{state.datacenter}: uploaded {len(items)} file(s) into {state.import_name}")


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
    facts.update(state.options.facts)
    spec.annotation = TemplateRecord(sha, state.ova.index.path.name, facts).annotation()
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
    """--replace: rename the old template away and the new one in (undone on failure)."""
    if state.decision.mode != "replace":
        return
    from ovapipe.vsphere.template import rename

    old = state.decision.existing
    assert old is not None
    state.parked_name = f"{state.name}.ovapipe-old-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    parked = state.parked_name
    rename(old.obj, state.name, parked)
    run.on_failure(f"rename {parked} back to {state.name}",
                   lambda: rename(old.obj, parked, state.name))
    new_name = state.import_name
    rename(state.vm, new_name, state.name)
    run.on_failure(f"rename {state.name} back to {new_name}",
                   lambda: rename(state.vm, state.name, new_name))
    state.import_name = state.name


def step_retire(state: DatacenterRun, run: Run) -> None:
    """--replace, last: delete the old template once the new one is in place and recorded."""
    if state.decision.mode != "replace":
        return
    from ovapipe.vsphere.template import destroy

    assert state.decision.existing is not None
    destroy(state.decision.existing.obj, state.parked_name)
    run.say(f"{state.datacenter}: replaced template {state.name} (the old one is deleted)")


def step_record(state: DatacenterRun, run: Run) -> None:
    from ovapipe.vsphere.template import (
        SNAPSHOT_NAME,
        inventory_path,
        read_vm,
        record_of,
        snapshot_names,
    )

    vm = read_vm(state.service, state.vm)
    record = record_of(vm)
    snapshots = snapshot_names(vm)
    state.record = {
        "datacenter": state.datacenter,
        "template": vm.name,
        "inventory_path": inventory_path(state.service, state.vm),
        "moref": state.vm._moId,
        "instance_uuid": vm.get("config.instanceUuid"),
        "vmx": vm.get("config.version"),
        "firmware": vm.get("config.firmware"),
        "secure_boot": bool(vm.get("config.bootOptions.efiSecureBootEnabled", False)),
        "snapshot": SNAPSHOT_NAME if SNAPSHOT_NAME in snapshots else next(iter(snapshots), None),
        "ova_sha256": record.ova_sha256 if record else state.ova.sha256,
    }
    write_json(record_path(state.options.output_dir, state.name, state.datacenter), state.record)


def record_path(output_dir: Path, name: str, datacenter: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in datacenter)
    return output_dir / name / f"publish-{safe}.json"


STEPS: Final = [
    Step("connect", step_connect),
    Step("preflight", step_preflight),
    Step("import", step_import),
    Step("enforce", step_enforce),
    Step("snapshot", step_snapshot),
    Step("template", step_mark_template),
    Step("validate-template", step_validate),
    Step("swap", step_swap),
    Step("record", step_record),
    Step("retire", step_retire),
]


# ---- running ---------------------------------------------------------------------------------

def default_progress(log: TextIO) -> ProgressFactory:
    return lambda label, total: Progress(label, total, log)


def _cancellable(step: Step[DatacenterRun]) -> Step[DatacenterRun]:
    """Another datacenter's Ctrl-C stops this one at its next step (or its next block)."""

    def run(state: DatacenterRun, steps_run: Run) -> None:
        state.check_cancel()
        step.run(state, steps_run)

    return Step(step.name, run)


def publish_datacenter(state: DatacenterRun, log: TextIO) -> dict[str, Any]:
    run_steps([_cancellable(step) for step in STEPS], state, run=Run(log=log))
    return state.record


def publish(
    options: PublishOptions,
    connection: Connection,
    *,
    log: TextIO | None = None,
    progress: ProgressFactory | None = None,
) -> list[dict[str, Any]]:
    """Publish to every datacenter; the handoff records in the order the datacenters were given.

    Raises the failure of a datacenter (after every datacenter has finished or cleaned up);
    datacenters that succeeded keep their template and record.
    """
    log = log or sys.stderr
    progress = progress or default_progress(log)
    if not options.datacenters:
        raise ConfigError("no datacenter given: pass --datacenter NAME (repeatable)")
    if len(set(options.datacenters)) != len(options.datacenters):
        raise ConfigError("a datacenter is given twice")
    if options.concurrency < 1:
        raise ConfigError(f"publish_concurrency must be at least 1, not {options.concurrency}")
    ova = check_ova(options.ova, min_vmx=options.min_vmx, firmware=options.firmware,
                    name=options.name)
    cancelled = threading.Event()
    in_flight = InFlightImports()
    states = [DatacenterRun(dc, options, connection, ova, progress, cancelled, in_flight)
              for dc in options.datacenters]
    if len(states) == 1:
        return [publish_datacenter(states[0], log)]
    with sigterm_as_interrupt():
        return _publish_concurrently(states, options.concurrency, cancelled, log)


def _publish_concurrently(states: list[DatacenterRun], bound: int,
                          cancelled: threading.Event, log: TextIO) -> list[dict[str, Any]]:
    workers = min(bound, len(states))
    failures: dict[str, BaseException] = {}
    records: dict[str, dict[str, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="publish") as pool:
        futures = {pool.submit(publish_datacenter, s, log): s.datacenter for s in states}
        pending = set(futures)
        interrupted = False
        while pending:
            try:
                done, pending = concurrent.futures.wait(pending, timeout=0.2)
            except KeyboardInterrupt:
                interrupted = True
                cancelled.set()
                print("interrupt: stopping every datacenter and cleaning up...", file=log)
                continue
            for future in done:
                datacenter = futures[future]
                try:
                    records[datacenter] = future.result()
                except BaseException as exc:
                    failures[datacenter] = exc
    if interrupted:
        raise Interrupted("interrupted; cleanups ran in every datacenter")
    if failures:
        published = [s.datacenter for s in states if s.datacenter in records]
        lines = [f"{dc}: {exc}" for dc, exc in failures.items()]
        summary = (f"published to {', '.join(published)}; " if published else "") + \
            f"failed in {len(failures)} datacenter(s):\n" + "\n".join(lines)
        first = next(iter(failures.values()))
        error = OvapipeError(summary)
        error.exit_code = first.exit_code if isinstance(first, OvapipeError) else 1
        raise error
    return [records[s.datacenter] for s in states]

