"""Issue 11: publish, --replace and the simulator never destroy what is not theirs.

Each test is one measured defect: a failed --replace that deleted both templates, a failed
publish that deleted another process's template of the same name, a stale .sha256 sidecar,
a --no-snapshot template that could never be completed, clones that shared the template's
disk, and concurrent publishes of one name.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ovapipe.errors import StepFailed
from ovapipe.progress import Progress
from ovapipe.steps import Run
from ovapipe.vsphere.connect import session
from ovapipe.vsphere.publish import PublishOptions, publish

pytestmark = [pytest.mark.simulator, pytest.mark.slow]

NAME = "ubuntu-2004-efi-test"
ROOT = Path(__file__).resolve().parent.parent


def quiet(_label: str, total: int | None) -> Progress:
    return Progress("test", total, io.StringIO(), tty=False)


def options(ova: Path, out: Path, **changes: Any) -> PublishOptions:
    base = PublishOptions(ova=ova, datacenters=("DC0",), cluster="DC0_C0", datastore="LocalDS_0",
                          network="VM Network", output_dir=out, name=NAME)
    return replace(base, **changes)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def named(sim: Any, name: str = NAME) -> list[dict[str, Any]]:
    from ovapipe.vsphere.template import vms_named

    with session(sim.connection) as si:
        return [{**vm.props, "moref": vm.obj._moId} for vm in vms_named(si, name)]


def all_vms(sim: Any) -> set[tuple[str, str]]:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    with session(sim.connection) as si:
        return {(vm.obj._moId, vm.name) for vm in retrieve(si, vim.VirtualMachine, ["name"])}


def invoke(sim: Any, *args: str, out: Path, fault: str | None = None,
           wait: bool = True) -> Any:
    env = {**os.environ, **sim.env, "INVOKE_OVAPIPE_OUTPUT": str(out)}
    env.pop("OVAPIPE_FAULT", None)
    if fault:
        env["OVAPIPE_FAULT"] = fault
    command = [sys.executable, "-m", "invoke", "publish", "--datacenter", "DC0", "--cluster",
               "DC0_C0", "--datastore", "LocalDS_0", "--network", "VM Network", "--name", NAME,
               *args]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True,
                          timeout=300)


@pytest.fixture(scope="module")
def other_ova(tmp_path_factory: pytest.TempPathFactory, efi_vmdk: Any, build_facts: Any) -> Path:
    from ovapipe.ova import assemble_ova

    rebuilt = replace(build_facts, build_timestamp=build_facts.build_timestamp + 86400,
                      image_version=build_facts.image_version + "-2")
    return Path(assemble_ova(tmp_path_factory.mktemp("other"), NAME, [efi_vmdk], rebuilt).path)


# ---- --replace ---------------------------------------------------------------------------

def test_a_replace_whose_record_cannot_be_written_keeps_a_template(
    simulator: Any, efi_ova: Path, other_ova: Path, tmp_path: Path
) -> None:
    """Measured: exit 2 and no template left (the import's undo deleted the old one by name)."""
    out = tmp_path / "out"
    assert invoke(simulator, "--ova", str(efi_ova), out=out).returncode == 0
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = invoke(simulator, "--ova", str(other_ova), "--replace", out=blocker / "out")
    assert result.returncode == 2, result.stderr
    [template] = named(simulator)
    assert template["config.template"] is True
    assert f"ovapipe.ova_sha256: {sha(other_ova)}" in template["config.annotation"]
    assert "ovapipe.state" not in template["config.annotation"]
    # The next run writes the record the failed one could not.
    again = invoke(simulator, "--ova", str(other_ova), "--replace", out=out)
    assert again.returncode == 0, again.stderr
    assert "already holds this OVA" in again.stderr
    assert [vm["moref"] for vm in named(simulator)] == [template["moref"]]


# ---- another process's template ------------------------------------------------------------

def _foreign_template(si: Any, folder_name: str, annotation: str) -> Any:
    """A finished template called NAME in another folder, as another process leaves it."""
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import datacenter, retrieve
    from ovapipe.vsphere.tasks import wait_for_task

    dc = datacenter(si, "DC0")
    [cluster] = retrieve(si, vim.ClusterComputeResource, ["resourcePool"], dc.obj)
    vm_folder = next(f.obj for f in retrieve(si, vim.Folder, ["name"], dc.obj) if f.name == "vm")
    folder = vm_folder.CreateFolder(folder_name)
    spec = vim.vm.ConfigSpec(name=NAME, annotation=annotation,
                             files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"))
    vm = wait_for_task(folder.CreateVM_Task(config=spec, pool=cluster.get("resourcePool")),
                       "create VM")
    vm.MarkAsTemplate()
    return vm


def test_a_failed_publish_never_deletes_a_template_it_did_not_create(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """Measured: cleanup destroyed every VM of that name it had not seen before."""
    foreign: list[str] = []

    class OtherProcessFinishesThenWeFail(Progress):
        def advance(self, count: int) -> None:
            super().advance(count)
            if not foreign:
                with session(simulator.connection) as si:
                    vm = _foreign_template(
                        si, "teamB", f"Published by ovapipe\novapipe.ova_sha256: {'a' * 64}\n")
                    foreign.append(vm._moId)
                raise OSError("disk full")

    with pytest.raises(StepFailed):
        publish(options(efi_ova, tmp_path), simulator.connection, log=io.StringIO(),
                progress=lambda label, total: OtherProcessFinishesThenWeFail(
                    label, total, io.StringIO(), tty=False))
    assert [vm["moref"] for vm in named(simulator)] == foreign


def test_no_cleanup_looks_anything_up_by_name() -> None:
    from ovapipe.vsphere.template import vms_named

    run = Run(log=io.StringIO())
    run.on_failure("delete by name", lambda: vms_named(object(), NAME))
    [problem] = run.unwind(failed=True)
    assert "a cleanup looked up VMs by the name" in problem


def test_every_cleanup_deletes_only_what_its_own_run_created(
    simulator: Any, efi_ova: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ovapipe.vsphere.template as template_module

    before = all_vms(simulator)
    deleted: list[str] = []
    real_destroy = template_module.destroy

    def spying(vm: Any, name: str) -> None:
        deleted.append(vm._moId)
        real_destroy(vm, name)

    monkeypatch.setattr(template_module, "destroy", spying)

    class FailAfterUpload(Progress):
        def close(self) -> None:
            super().close()
            if self.done and self.done == self.total:
                raise OSError("disk full")

    with pytest.raises(StepFailed):
        publish(options(efi_ova, tmp_path), simulator.connection, log=io.StringIO(),
                progress=lambda label, total: FailAfterUpload(label, total, io.StringIO(),
                                                              tty=False))
    assert deleted and not set(deleted) & {moref for moref, _ in before}
    assert all_vms(simulator) == before


# ---- content, not timestamps -------------------------------------------------------------

def test_an_ova_replaced_under_an_old_mtime_is_not_taken_for_the_old_one(
    simulator: Any, efi_ova: Path, other_ova: Path, tmp_path: Path
) -> None:
    """Measured: `cp -p` of another OVA under an older mtime -> "already holds this OVA"."""
    work = tmp_path / "work"
    work.mkdir()
    ova = work / efi_ova.name
    shutil.copyfile(efi_ova, ova)
    (work / f"{ova.name}.sha256").write_text(f"{sha(efi_ova)}  {ova.name}\n")
    out = tmp_path / "out"
    assert invoke(simulator, "--ova", str(ova), out=out).returncode == 0
    old_mtime = ova.stat().st_mtime_ns - 10**10
    shutil.copyfile(other_ova, ova)
    os.utime(ova, ns=(old_mtime, old_mtime))  # older than the sidecar, as cp -p leaves it
    refused = invoke(simulator, "--ova", str(ova), out=out)
    assert refused.returncode == 1, refused.stderr
    assert "this OVA differs: pass --replace" in refused.stderr
    replaced = invoke(simulator, "--ova", str(ova), "--replace", out=out)
    assert replaced.returncode == 0, replaced.stderr
    [template] = named(simulator)
    assert f"ovapipe.ova_sha256: {sha(other_ova)}" in template["config.annotation"]


# ---- completing a template ---------------------------------------------------------------

def test_a_template_without_its_root_snapshot_gets_it_on_the_next_publish(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """Measured: re-publish failed "root snapshot missing" forever."""
    from ovapipe.vsphere.inventory import Found
    from ovapipe.vsphere.template import snapshot_names

    publish(options(efi_ova, tmp_path, snapshot=False), simulator.connection,
            log=io.StringIO(), progress=quiet)
    [record] = publish(options(efi_ova, tmp_path), simulator.connection, log=io.StringIO(),
                       progress=quiet)
    assert record.snapshot == "root"
    [template] = named(simulator)
    assert snapshot_names(Found(None, template)) == ["root"]
    assert not [name for _, name in all_vms(simulator) if ".op-" in name]


# ---- the simulator's clones --------------------------------------------------------------

def _clone(si: Any, template: Any, name: str, linked: bool) -> Any:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import properties
    from ovapipe.vsphere.tasks import wait_for_task

    props = properties(si, template, ["parent", "snapshot"])
    pool = next(p for p in si.content.viewManager.CreateContainerView(
        si.content.rootFolder, [vim.ResourcePool], True).view)
    location = vim.vm.RelocateSpec(pool=pool)
    spec = vim.vm.CloneSpec(location=location, powerOn=False, template=False)
    if linked:
        location.diskMoveType = "createNewChildDiskBacking"
        spec.snapshot = props["snapshot"].currentSnapshot
    return wait_for_task(template.CloneVM_Task(folder=props["parent"], name=name, spec=spec),
                         "clone")


def _disk_files(si: Any, vm: Any) -> list[str]:
    from ovapipe.vsphere.dependents import disk_files
    from ovapipe.vsphere.inventory import Found, properties

    return sorted(disk_files(Found(vm, properties(si, vm, ["config.hardware.device"]))))


def _local(sim: Any, si: Any, datastore_path: str) -> Path:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    ds_name, _, rest = datastore_path.partition("] ")
    url = next(d.get("info.url") for d in retrieve(si, vim.Datastore, ["name", "info.url"])
               if d.name == ds_name.lstrip("["))
    return Path(url) / rest


def test_a_full_clone_keeps_its_disk_when_the_template_is_deleted(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    from ovapipe.vsphere.dependents import dependents
    from ovapipe.vsphere.template import destroy

    [record] = publish(options(efi_ova, tmp_path), simulator.connection, log=io.StringIO(),
                       progress=quiet)
    with session(simulator.connection) as si:
        from pyVmomi import vim

        template = vim.VirtualMachine(record.moref, si._stub)
        template_disks = _disk_files(si, template)
        clone = _clone(si, template, "worker-0", linked=False)
        clone_disks = _disk_files(si, clone)
        assert _disk_files(si, template) == template_disks
        assert not set(clone_disks) & set(template_disks)
        assert dependents(si, template) == []
        destroy(template, NAME)
        assert _disk_files(si, clone) == clone_disks
        assert all(_local(simulator, si, f).is_file() for f in clone_disks)


def test_a_linked_clone_reads_the_template_disk_and_is_its_dependent(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    from ovapipe.vsphere.dependents import dependents

    [record] = publish(options(efi_ova, tmp_path), simulator.connection, log=io.StringIO(),
                       progress=quiet)
    with session(simulator.connection) as si:
        from pyVmomi import vim

        template = vim.VirtualMachine(record.moref, si._stub)
        template_disks = _disk_files(si, template)
        clone = _clone(si, template, "worker-linked", linked=True)
        assert set(template_disks) < set(_disk_files(si, clone))
        assert _disk_files(si, template) == template_disks
        assert dependents(si, template) == ["worker-linked"]


# ---- concurrent publishes of one name ----------------------------------------------------

def _held_imports(sim: Any) -> int:
    return sum(1 for _, name in all_vms(sim) if ".op-tmp-" in name)


@pytest.mark.parametrize("same", [True, False], ids=["identical", "different"])
def test_concurrent_publishes_of_one_name_leave_exactly_one_template(
    simulator: Any, efi_ova: Path, other_ova: Path, tmp_path: Path, same: bool
) -> None:
    """Three publishes held just before their swap (all imported), then let go together."""
    release = tmp_path / "go"
    ovas = [efi_ova] * 3 if same else [efi_ova, other_ova, efi_ova]
    processes = [invoke(simulator, "--ova", str(ova), out=tmp_path / f"out{i}",
                        fault=f"publish.swap.before=wait:{release}", wait=False)
                 for i, ova in enumerate(ovas)]
    try:
        deadline = time.monotonic() + 120
        while _held_imports(simulator) < len(processes) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            time.sleep(0.1)  # polling the inventory for the event, not standing in for it
        assert _held_imports(simulator) == len(processes)
        release.touch()
        results = [p.communicate(timeout=300) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    codes = [p.returncode for p in processes]
    [template] = named(simulator)
    assert template["config.template"] is True
    assert "ovapipe.state" not in template["config.annotation"]
    assert not [name for _, name in all_vms(simulator) if ".op-" in name]
    winner_sha = template["config.annotation"].split("ovapipe.ova_sha256: ")[1][:64]
    for ova, code, (_out, err) in zip(ovas, codes, results, strict=True):
        assert "Traceback" not in err
        if sha(ova) == winner_sha:
            assert code == 0, err
        else:
            assert code == 1, err
            assert "another publish put a different template there" in err
    # Every process that succeeded hands off the template that is there.
    import json

    for i, code in enumerate(codes):
        if code == 0:
            [record] = [json.loads(p.read_text()) for p in (tmp_path / f"out{i}").rglob("*.json")]
            assert record["moref"] == template["moref"]


def test_a_live_runs_import_is_left_alone_and_both_end_well(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """A publish held mid-upload is alive: a second publish of the name says so, leaves its
    half-imported VM alone and publishes; the first then adopts the finished template."""
    release = tmp_path / "go"
    held = invoke(simulator, "--ova", str(efi_ova), out=tmp_path / "a",
                  fault=f"publish.upload@50=wait:{release}", wait=False)
    try:
        deadline = time.monotonic() + 120
        while not _held_imports(simulator) and time.monotonic() < deadline:
            assert held.poll() is None, held.communicate()
            time.sleep(0.1)  # polling the inventory for the event, not standing in for it
        second = invoke(simulator, "--ova", str(efi_ova), out=tmp_path / "b")
        assert second.returncode == 0, second.stderr
        assert "left alone: " in second.stderr and "may still be running" in second.stderr
        assert _held_imports(simulator) == 1
        release.touch()
        _out, err = held.communicate(timeout=300)
    finally:
        if held.poll() is None:
            held.kill()
            held.communicate()
    assert held.returncode == 0, err
    assert "another publish put this same OVA in place" in err
    [template] = named(simulator)
    assert "ovapipe.state" not in template["config.annotation"]
    assert not [name for _, name in all_vms(simulator) if ".op-" in name]


def test_replace_never_swaps_a_template_ovapipe_did_not_publish(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    with session(simulator.connection) as si:
        foreign = _foreign_template(si, "teamB", "built by hand\n")
    before = all_vms(simulator)
    result = invoke(simulator, "--ova", str(efi_ova), "--replace", out=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "was not published by ovapipe" in result.stderr
    assert all_vms(simulator) == before
    assert [vm["moref"] for vm in named(simulator)] == [foreign._moId]


def test_a_name_too_long_for_the_temporary_names_is_refused_before_anything_moves(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    before = all_vms(simulator)
    with pytest.raises(StepFailed, match=r"the name 'x{70}' is too long: .* vCenter allows 80; "
                                         r"choose a name of at most 64 characters"):
        publish(options(efi_ova, tmp_path, name="x" * 70), simulator.connection,
                log=io.StringIO(), progress=quiet)
    assert all_vms(simulator) == before
