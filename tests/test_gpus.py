"""`invoke gpus`: joining passthrough info with PCI devices, signed IDs, summary, simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ovapipe.paths import REPO_ROOT
from ovapipe.pci import PciId
from ovapipe.vsphere.gpus import GpuInventory, HostGpus, host_devices, short_name


@dataclass
class FakePassthru:
    id: str
    passthruCapable: bool
    passthruEnabled: bool
    passthruActive: bool


@dataclass
class FakePciDevice:
    id: str
    vendorId: int
    deviceId: int
    classId: int = 0x0302
    vendorName: str = ""
    deviceName: str = ""


T4 = FakePciDevice("0000:3b:00.0", 4318, 7864, vendorName="NVIDIA Corporation",
                   deviceName="TU104GL [Tesla T4]")
INTEL = FakePciDevice("0000:5e:00.0", -32634, 0xA780 - 0x10000)  # 8086:a780 as vSphere sends it
NIC = FakePciDevice("0000:00:1f.6", -32634, 0x15B8, classId=0x0200)


def passthru(device: FakePciDevice, capable: bool = True, enabled: bool = True) -> FakePassthru:
    return FakePassthru(device.id, capable, enabled, enabled)


def test_join_converts_signed_ids_and_keeps_capable_devices_only() -> None:
    devices = host_devices(
        [passthru(T4), passthru(INTEL, enabled=False), passthru(NIC, capable=False)],
        [NIC, INTEL, T4],
        dynamic={PciId(0x10DE, 0x1EB8)},
    )
    assert [(d.vendor_hex, d.device_hex, d.vendorId, d.deviceId) for d in devices] == [
        ("10de", "1eb8", 4318, 7864),
        ("8086", "a780", 32902, 42880),
    ]
    t4, intel = devices
    assert t4.name == "NVIDIA Corporation TU104GL [Tesla T4]" and t4.name_source == "vsphere"
    assert t4.enabled and t4.active and t4.dynamic_passthrough is True
    assert not intel.enabled and intel.dynamic_passthrough is False


def test_name_falls_back_to_pci_ids() -> None:
    anonymous = FakePciDevice("0000:3b:00.0", 4318, 0x20B5, deviceName="Device 20b5")
    (device,) = host_devices([passthru(anonymous)], [anonymous], dynamic=None)
    assert device.name_source == "pci.ids" and "A100 PCIe 80GB" in device.name
    assert device.dynamic_passthrough is None


def test_summary_groups_identical_devices() -> None:
    hosts = []
    for index, enabled in enumerate((True, True, False)):
        host = HostGpus(f"H{index}", "C0", "7.0.3", "connected")
        host.devices = host_devices([passthru(T4, enabled=enabled)], [T4], dynamic=set())
        hosts.append(host)
    inventory = GpuInventory("DC0", None, hosts)
    (group,) = inventory.summary
    assert group.render() == (
        "Tesla T4 (10de:1eb8 \u2192 vendorId 4318, deviceId 7864): 3 hosts, 2 enabled"
    )
    assert inventory.as_dict()["summary"][0]["vendorId"] == 4318


def test_old_hosts_are_flagged() -> None:
    old = HostGpus("H0", "C0", "6.7.0", "connected")
    new = HostGpus("H1", "C0", "7.0.0", "connected")
    assert not old.supports_gpu_vmx and new.supports_gpu_vmx
    text = GpuInventory("DC0", None, [old, new]).render()
    assert "1 host(s) cannot run vmx-17" in text and "H0" in text.splitlines()[-1]


def test_short_name() -> None:
    assert short_name("NVIDIA Corporation TU104GL [Tesla T4]") == "Tesla T4"
    assert short_name("Intel Corporation Device 0bd5") == "Intel Corporation Device 0bd5"


# --------------------------------------------------------------------------- simulator

def _invoke_gpus(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "gpus", *args], cwd=REPO_ROOT,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.simulator
def test_gpus_json_against_simulator(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(gpus=["DC0_C0_H1=8086:a780"])
    result = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    hosts = {host["name"]: host for host in data["hosts"]}
    assert set(hosts) == {"DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"}
    for host in hosts.values():
        assert host["supports_gpu_vmx"] is True
        t4 = [d for d in host["devices"] if d["device_hex"] == "1eb8"]
        assert len(t4) == 1
        assert (t4[0]["vendorId"], t4[0]["deviceId"]) == (4318, 7864)
        assert t4[0]["enabled"] and t4[0]["dynamic_passthrough"] is True
    intel = [d for d in hosts["DC0_C0_H1"]["devices"] if d["vendor_hex"] == "8086"]
    assert len(intel) == 1
    assert (intel[0]["vendorId"], intel[0]["deviceId"]) == (32902, 42880)  # 0x8086, 0xa780
    assert intel[0]["dynamic_passthrough"] is True
    summary = {group["pci_id"]: group for group in data["summary"]}
    assert summary["10de:1eb8"]["text"] == (
        "Tesla T4 (10de:1eb8 \u2192 vendorId 4318, deviceId 7864): 3 hosts, 3 enabled, "
        "3 offered to Dynamic DirectPath I/O"
    )
    assert summary["8086:a780"]["text"].startswith(
        "UHD Graphics 770 (8086:a780 \u2192 vendorId 32902, deviceId 42880): 1 host, 1 enabled"
    )


@pytest.mark.simulator
def test_gpus_flags_esxi_67_hosts(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(esx_version="6.7.0")
    result = _invoke_gpus(sim.env, "--datacenter", "DC0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ESXi 6.7.0 cannot run vmx-17") == 4
    assert "4 host(s) cannot run vmx-17" in result.stdout
    as_json = json.loads(_invoke_gpus(sim.env, "--datacenter", "DC0", "--json").stdout)
    assert all(host["supports_gpu_vmx"] is False for host in as_json["hosts"])
    assert as_json["gpu_min_vmx"] == "vmx-17"


@pytest.mark.simulator
def test_gpus_bad_names(simulator: Any) -> None:
    cluster = _invoke_gpus(simulator.env, "--datacenter", "DC0", "--cluster", "C9")
    assert cluster.returncode == 2
    assert "cluster 'C9' not found in datacenter DC0; available: DC0_C0" in cluster.stderr
    datacenter = _invoke_gpus(simulator.env, "--datacenter", "DC9")
    assert datacenter.returncode == 2 and "available: DC0" in datacenter.stderr
    assert "Traceback" not in cluster.stderr + datacenter.stderr


def test_gpus_without_connection_settings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSPHERE_")}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "gpus", "--datacenter", "DC0"], cwd=REPO_ROOT,
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "VSPHERE_SERVER" in result.stderr


def test_query_config_target_failure_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyVmomi import vim, vmodl

    from ovapipe.vsphere import gpus
    from ovapipe.vsphere.inventory import Found

    class Browser:
        def QueryConfigTarget(self, host: Any) -> Any:
            raise vmodl.fault.MethodNotFound(msg="does not implement: QueryConfigTarget")

    cluster = vim.ClusterComputeResource("domain-c1")
    host = Found(vim.HostSystem("host-1"), {
        "name": "esx-1", "parent": cluster, "config.product.version": "7.0.3",
        "config.pciPassthruInfo": [passthru(T4)], "hardware.pciDevice": [T4],
    })

    def retrieve(service: Any, vimtype: Any, paths: Any, root: Any = None) -> list[Found]:
        if vimtype is vim.HostSystem:
            return [host]
        return [Found(cluster, {"name": "C1", "environmentBrowser": Browser()})]

    monkeypatch.setattr(gpus.inventory, "datacenter", lambda service, name: Found(None, {}))
    monkeypatch.setattr(gpus.inventory, "retrieve", retrieve)
    found = gpus.list_gpus(object(), "DC1")
    (entry,) = found.hosts
    assert entry.compute_resource == "C1"
    assert entry.devices[0].dynamic_passthrough is None
    assert any("QueryConfigTarget failed" in note for note in entry.notes)
    assert "Dynamic DirectPath I/O availability unknown" in found.render()
