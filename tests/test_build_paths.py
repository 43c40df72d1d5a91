"""build-ova with CAPV-style inventory settings: paths resolved once, translated for Packer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_build import (  # noqa: F401 (fixtures: the build's TMPDIR exists, then is removed)
    VM_GLOB,
    _remove_build_tmpdir,
    build_env,
    no_seed_leftovers,
    sets,
    vm_names,
)

from ovapipe.errors import ConfigError
from ovapipe.paths import REPO_ROOT
from ovapipe.vsphere import resolve as r
from ovapipe.vsphere.packer_inventory import packer_values

pytestmark = pytest.mark.simulator

ABSOLUTE = {
    "VSPHERE_DATACENTER": "/DC0",
    "VSPHERE_CLUSTER": "/DC0/host/DC0_C0",
    "VSPHERE_RESOURCE_POOL": "/DC0/host/DC0_C0/Resources/gpu",
    "VSPHERE_DATASTORE": "/DC0/datastore/LocalDS_0",
    "VSPHERE_NETWORK": "/DC0/network/VM Network",
    "VSPHERE_FOLDER": "/DC0/vm/images/nested",
}


def _inventory_with_folders(service: Any) -> r.Inventory:
    from pyVmomi import vim

    inventory = r.Inventory.read(service)
    dc = inventory.datacenter("DC0").obj
    dc.vmFolder.CreateFolder("images").CreateFolder("nested")
    dc.vmFolder.CreateFolder("vm")
    cluster = inventory.resolve(r.CLUSTER, "DC0_C0", inventory.datacenter("DC0").node).obj
    allocation = vim.ResourceAllocationInfo(reservation=0, expandableReservation=True,
                                            limit=-1, shares=vim.SharesInfo(level="normal"))
    cluster.resourcePool.CreateResourcePool(
        "gpu", vim.ResourceConfigSpec(cpuAllocation=allocation, memoryAllocation=allocation))
    return r.Inventory.read(service)


BASE = {"datacenter": "DC0", "cluster": "DC0_C0", "datastore": "LocalDS_0",
        "network": "VM Network", "folder": "", "resource_pool": ""}


@pytest.mark.parametrize(("given", "packer"), [
    ({"datacenter": "/DC0", "cluster": "/DC0/host/DC0_C0"}, {"datacenter": "DC0",
                                                             "cluster": "DC0_C0"}),
    ({"folder": "/DC0/vm/images/nested"}, {"folder": "images/nested"}),
    ({"folder": "vm/images"}, {"folder": "images"}),
    ({"folder": "/DC0/vm"}, {"folder": ""}),  # not /DC0/vm/vm
    ({"folder": "nest*"}, {"folder": "images/nested"}),
    ({"resource_pool": "*/Resources"}, {"resource_pool": ""}),  # within the cluster
    ({"resource_pool": "/DC0/host/DC0_C0/Resources/gpu"}, {"resource_pool": "gpu"}),
    ({"resource_pool": "host/DC0_C0/Resources"}, {"resource_pool": ""}),
    ({"datastore": "/DC0/datastore/LocalDS_0", "network": "/DC0/network/VM Network"},
     {"datastore": "LocalDS_0", "network": "VM Network"}),
    ({"host": "DC0_C0_H1"}, {"host": "DC0_C0/DC0_C0_H1"}),
])
def test_values_are_translated_for_vsphere_iso(sim_session: Any, given: dict[str, str],
                                               packer: dict[str, str]) -> None:
    inventory = _inventory_with_folders(sim_session)
    values, _ = packer_values(inventory, {**BASE, **given}, {})
    assert {k: values[k] for k in packer} == packer


@pytest.mark.parametrize(("given", "message"), [
    ({"folder": "vm"}, "folder 'vm' (folder (from environment)) is ambiguous"),
    ({"folder": "/DC0/host"}, "holds no VMs"),
    ({"resource_pool": "/DC0/host/DC0_H0/Resources"}, "not found in /DC0/host/DC0_C0"),
    ({"network": "DVS0"}, "is a distributed switch"),
    ({"cluster": "DC0_H0"}, "cluster 'DC0_H0' (cluster (from environment)) not found"),
])
def test_wrong_settings_are_refused_before_packer(sim_session: Any, given: dict[str, str],
                                                  message: str) -> None:
    inventory = _inventory_with_folders(sim_session)
    sources = dict.fromkeys(BASE | given, "environment")
    with pytest.raises(ConfigError) as refused:
        packer_values(inventory, {**BASE, **given}, sources)
    assert message in refused.value.message


@pytest.mark.packer
@pytest.mark.slow
def test_a_real_packer_build_with_absolute_paths(
    make_simulator: Callable[..., Any], efi_vmdk: Path, tmp_path: Path
) -> None:
    from ovapipe.vsphere.connect import session

    sim = make_simulator(installer_vm=VM_GLOB, installer_disk=efi_vmdk, installer_seconds=2)
    with session(sim.connection) as service:
        prepared = _inventory_with_folders(service)
        folders_before = sorted(prepared.path_of(n) for n in prepared.nodes.values()
                                if n.type == "Folder")
    name = "ovapipe-paths"
    before = vm_names(sim)
    result = subprocess.run(
        [sys.executable, "-m", "ovapipe", "build-ova", "--out", str(tmp_path / "out"),
         *sets(name)],
        cwd=REPO_ROOT, env={**build_env(sim), **ABSOLUTE}, capture_output=True, text=True,
        timeout=420, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "for Packer: folder '/DC0/vm/images/nested' -> 'images/nested'" in result.stderr
    assert "for Packer: resource_pool '/DC0/host/DC0_C0/Resources/gpu' -> 'gpu'" in result.stderr
    assert (tmp_path / "out" / name / f"{name}.ova").is_file()
    with session(sim.connection) as service:
        inventory = r.Inventory.read(service)
        folders_after = sorted(inventory.path_of(n) for n in inventory.nodes.values()
                               if n.type == "Folder")
    assert folders_after == folders_before  # Packer created no folder of its own
    assert vm_names(sim) == before
