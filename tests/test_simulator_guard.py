"""The simulator refuses what vCenter refuses (simulator/ext/ovapipe_guard.go).

Bad names get InvalidName instead of a panic and a nameless VM; datastore paths never leave
the datastore folder, whatever the name; a panic in a handler is a fault, not a dropped
connection.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ovapipe.vsphere import resolve as r
from ovapipe.vsphere.inventory import retrieve

pytestmark = pytest.mark.simulator

HOSTILE_NAMES = ["a/b", "x" * 81, "x" * 300, "..", ".", "../../../../../x", ""]


@pytest.fixture
def site(sim_session: Any) -> Iterator[tuple[Any, Any, Any, Path]]:
    inventory = r.Inventory.read(sim_session)
    dc = inventory.datacenter("DC0").obj
    pool = inventory.resolve(r.RESOURCE_POOL, "DC0_C0/Resources", inventory.datacenter(
        "DC0").node).obj
    datastore = inventory.only(r.DATASTORE, inventory.datacenter("DC0").node, flag="").obj
    url = Path(datastore.info.url)
    yield sim_session, dc, pool, url


def outside(url: Path) -> set[Path]:
    """What the simulator's own temporary folder holds beside the datastore folder."""
    return {p for p in url.parent.rglob("*") if not p.is_relative_to(url)}


def landed(url: Path, relative: str) -> dict[Path, bool]:
    """Where a datastore-relative path (or a VM folder named so) would land outside the
    datastore folder, and whether something is there now."""
    spots: dict[Path, bool] = {}
    for rel in (relative, f"{relative}/{Path(relative).name}.vmx"):
        spot = Path(os.path.normpath(url / rel))  # an absolute rel replaces url
        if not spot.is_relative_to(url) and not url.is_relative_to(spot):
            spots[spot] = spot.exists()
    return spots


def vm_names(service: Any) -> list[str]:
    from pyVmomi import vim

    return sorted(str(vm.get("name")) for vm in retrieve(service, vim.VirtualMachine, ["name"]))


def vm_spec(vim: Any, name: str, path: str = "[LocalDS_0]") -> Any:
    return vim.vm.ConfigSpec(name=name, guestId="otherGuest64",
                             files=vim.vm.FileInfo(vmPathName=path))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_create_vm_refuses_a_bad_name(site: tuple[Any, Any, Any, Path], name: str) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.tasks import wait_for_task

    service, dc, pool, url = site
    beside, before, spots = outside(url), vm_names(service), landed(url, name)
    with pytest.raises(vim.fault.InvalidName):
        wait_for_task(dc.vmFolder.CreateVM_Task(config=vm_spec(vim, name), pool=pool), "create")
    assert vm_names(service) == before  # no VM, nameless or not
    assert outside(url) == beside
    assert landed(url, name) == spots


@pytest.mark.parametrize("path", ["[LocalDS_0] ../escape/x.vmx", "[LocalDS_0] /etc/x.vmx",
                                  "[LocalDS_0] a/../../x.vmx"])
def test_datastore_paths_never_leave_the_datastore_folder(
    site: tuple[Any, Any, Any, Path], path: str
) -> None:
    from pyVmomi import vim

    service, dc, pool, url = site
    relative = path.removeprefix("[LocalDS_0] ")
    beside, spots = outside(url), landed(url, relative)
    with pytest.raises(vim.fault.InvalidDatastorePath):
        dc.vmFolder.CreateVM_Task(config=vm_spec(vim, "ok", path), pool=pool)
    file_manager = service.RetrieveContent().fileManager
    with pytest.raises(vim.fault.InvalidDatastorePath):
        file_manager.MakeDirectory(name=path.removesuffix("/x.vmx"), datacenter=dc,
                                   createParentDirectories=True)
    assert outside(url) == beside
    assert landed(url, relative) == spots


def test_import_and_rename_refuse_bad_names(site: tuple[Any, Any, Any, Path],
                                            efi_ova: Path) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.tasks import wait_for_task

    service, dc, pool, url = site
    with tarfile.open(efi_ova) as archive:
        ovf = next(m for m in archive.getmembers() if m.name.endswith(".ovf"))
        extracted = archive.extractfile(ovf)
        assert extracted is not None
        descriptor = extracted.read().decode()
    manager = service.RetrieveContent().ovfManager
    datastore = retrieve(service, vim.Datastore, ["name"], dc)[0].obj
    beside, before = outside(url), vm_names(service)
    for name in ("a/b", "x" * 300, "../../../../../x"):
        spots = landed(url, name)
        params = vim.OvfManager.CreateImportSpecParams(entityName=name)
        result = manager.CreateImportSpec(ovfDescriptor=descriptor, resourcePool=pool,
                                          datastore=datastore, cisp=params)
        with pytest.raises(vim.fault.InvalidName):
            pool.ImportVApp(spec=result.importSpec, folder=dc.vmFolder)
        assert landed(url, name) == spots
    assert vm_names(service) == before
    assert outside(url) == beside
    vm = retrieve(service, vim.VirtualMachine, ["name"], dc)[0].obj
    with pytest.raises(vim.fault.InvalidName):
        wait_for_task(vm.Rename_Task("a/b"), "rename")
    with pytest.raises(vim.fault.InvalidName):
        dc.vmFolder.CreateFolder("x" * 81)


def test_a_panicking_handler_answers_a_fault(site: tuple[Any, Any, Any, Path]) -> None:
    from pyVmomi import vim, vmodl

    service, dc, _, _ = site
    vm = retrieve(service, vim.VirtualMachine, ["name"], dc)[0].obj
    # A lazy read of an unset property panics Debian's PropertyCollector.Fetch.
    with pytest.raises(vmodl.fault.SystemError, match="simulator panic"):
        _ = vm.snapshot
    assert service.RetrieveContent().about.apiType == "VirtualCenter"  # still connected
