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
    assert ("cluster 'C9' (--cluster) not found in datacenter /DC0; available: /DC0/host/DC0_C0"
            in cluster.stderr)
    datacenter = _invoke_gpus(simulator.env, "--datacenter", "DC9")
    assert datacenter.returncode == 2 and "available: /DC0" in datacenter.stderr
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


# --------------------------------------------------------------------------- enable / disable
# Cluster DC0_C0 of three hosts: H0's T4 already enabled and active, H1's and H2's off; H1
# also has a passthrough-capable NIC (never a GPU, never touched), H2 an A100 the host reports
# as not capable.
THREE_HOSTS = dict(
    default_gpu=False,
    gpus=[
        "DC0_C0_H0=10de:1eb8", "DC0_C0_H1=10de:1eb8:disabled", "DC0_C0_H2=10de:1eb8:disabled",
        "DC0_C0_H1=8086:1572:disabled:0200", "DC0_C0_H2=10de:20b5:incapable",
    ],
)
T4_HEX = "10de:1eb8"


def _passthru_states(sim: Any) -> dict[str, dict[str, tuple[bool, bool]]]:
    """host -> capable PCI address -> (enabled, active), read from each host's own
    HostPciPassthruSystem (not the path `invoke gpus` reads)."""
    from pyVmomi import vim

    from ovapipe.vsphere import inventory
    from ovapipe.vsphere.connect import session

    with session(sim.connection) as service:
        hosts = inventory.retrieve(service, vim.HostSystem,
                                   ["name", "configManager.pciPassthruSystem"])
        states = {}
        for host in hosts:
            system = host.get("configManager.pciPassthruSystem")
            info = inventory.properties(service, system, ["pciPassthruInfo"])
            states[host.name] = {
                p.id: (p.passthruEnabled, p.passthruActive)
                for p in info.get("pciPassthruInfo") or [] if p.passthruCapable
            }
        return states


def _offered(sim: Any, host_name: str) -> set[str]:
    """PCI addresses QueryConfigTarget offers to VMs on the host (pciPassthrough)."""
    from pyVmomi import vim

    from ovapipe.vsphere import inventory
    from ovapipe.vsphere.connect import session

    with session(sim.connection) as service:
        (host,) = [h for h in inventory.retrieve(service, vim.HostSystem, ["name", "parent"])
                   if h.name == host_name]
        browser = inventory.properties(service, host.get("parent"), ["environmentBrowser"])
        target = browser["environmentBrowser"].QueryConfigTarget(host=host.obj)
        return {info.pciDevice.id for info in target.pciPassthrough or []}


def _reboot(sim: Any, host_name: str, *, maintenance: bool = True) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere import inventory
    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.tasks import wait_for_task

    with session(sim.connection) as service:
        (host,) = [h for h in inventory.retrieve(service, vim.HostSystem, ["name"])
                   if h.name == host_name]
        if maintenance:
            wait_for_task(host.obj.EnterMaintenanceMode_Task(timeout=0), "maintenance mode")
        wait_for_task(host.obj.RebootHost_Task(force=False), f"reboot {host_name}")


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


@pytest.mark.simulator
def test_enable_on_three_hosts_one_already_enabled(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(**THREE_HOSTS)
    before = _passthru_states(sim)
    assert before["DC0_C0_H0"]["0000:3b:00.0"] == (True, True)

    plan = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0", "--enable",
                        "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    planned = {h["name"]: h for h in _json(plan)["hosts"]}
    assert [d["address"] for d in planned["DC0_C0_H0"]["unchanged"]] == ["0000:3b:00.0"]
    assert planned["DC0_C0_H0"]["switch"] == []
    for name in ("DC0_C0_H1", "DC0_C0_H2"):
        assert [d["pci_id"] for d in planned[name]["switch"]] == [T4_HEX]
    assert _json(plan)["reboot_needed"] == ["DC0_C0_H1", "DC0_C0_H2"]
    assert _passthru_states(sim) == before, "a dry run changed the hosts"

    text = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0", "--enable")
    assert text.returncode == 0, text.stderr
    assert "DC0_C0_H0 (not in maintenance mode):\n  already enabled: 0000:3b:00.0" in text.stdout
    assert "DC0_C0_H1 (not in maintenance mode):\n  enabled 0000:3b:00.0" in text.stdout
    assert "reboot needed for the change to take effect: DC0_C0_H1, DC0_C0_H2" in text.stdout
    assert ("not in maintenance mode (enter it before rebooting): DC0_C0_H1, DC0_C0_H2"
            in text.stdout)
    # No host can pass the A100 through: not worth a line (like every server's BMC display).
    assert "A100" not in text.stdout

    after = _passthru_states(sim)
    assert after["DC0_C0_H0"]["0000:3b:00.0"] == (True, True)
    for name in ("DC0_C0_H1", "DC0_C0_H2"):
        assert after[name]["0000:3b:00.0"] == (True, False)  # enabled, active after a reboot
    assert after["DC0_C0_H1"]["0000:5e:00.0"] == (False, False), "a NIC was switched"
    assert "0000:5e:00.0" not in after["DC0_C0_H2"]  # not capable: stays out of the way

    again = _json(_invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0",
                               "--enable", "--json"))
    assert all(h["switch"] == [] for h in again["hosts"]), "a second run changed something"


@pytest.mark.simulator
def test_reboot_needed_until_the_host_reboots(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(**THREE_HOSTS)
    enable = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0",
                          "--host", "DC0_C0_H1", "--enable", "--device", "Tesla T4")
    assert enable.returncode == 0, enable.stderr
    assert _offered(sim, "DC0_C0_H1") == set(), "offered to VMs before the host rebooted"

    listing = _json(_invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0",
                                 "--json"))
    hosts = {h["name"]: h for h in listing["hosts"]}
    (t4,) = [d for d in hosts["DC0_C0_H1"]["devices"] if d["device_hex"] == "1eb8"]
    assert (t4["capable"], t4["enabled"], t4["active"], t4["needs_reboot"]) == (
        True, True, False, True)
    assert (t4["vendorId"], t4["deviceId"], t4["is_gpu"]) == (4318, 7864, True)
    assert t4["dynamic_passthrough"] is False
    assert hosts["DC0_C0_H1"]["needs_reboot"] is True
    assert hosts["DC0_C0_H1"]["in_maintenance_mode"] is False
    assert hosts["DC0_C0_H0"]["needs_reboot"] is False
    (a100,) = [d for d in hosts["DC0_C0_H2"]["devices"] if d["device_hex"] == "20b5"]
    assert (a100["capable"], a100["enabled"], a100["active"]) == (False, False, False)
    (nic,) = [d for d in hosts["DC0_C0_H1"]["devices"] if d["device_hex"] == "1572"]
    assert nic["capable"] and not nic["is_gpu"]
    assert "20b5" not in {group["pci_id"][5:] for group in listing["summary"]}
    text = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0").stdout
    assert "[enabled, needs reboot]" in text
    assert "GA100 [A100 PCIe 80GB]  [GPU, not passthrough-capable]" in text
    assert "1 host(s) need a reboot before passthrough changes take effect: DC0_C0_H1" in text

    from ovapipe.errors import VSphereError

    with pytest.raises(VSphereError, match="InvalidState"):
        _reboot(sim, "DC0_C0_H1", maintenance=False)  # as vCenter: maintenance mode first
    _reboot(sim, "DC0_C0_H1")
    assert _passthru_states(sim)["DC0_C0_H1"]["0000:3b:00.0"] == (True, True)
    assert _offered(sim, "DC0_C0_H1") == {"0000:3b:00.0"}
    rebooted = _json(_invoke_gpus(sim.env, "--datacenter", "DC0", "--host", "DC0_C0_H1",
                                  "--json"))
    (host,) = rebooted["hosts"]
    assert host["needs_reboot"] is False and host["in_maintenance_mode"] is True
    (t4,) = [d for d in host["devices"] if d["device_hex"] == "1eb8"]
    assert t4["active"] and t4["dynamic_passthrough"] is True


@pytest.mark.simulator
def test_disable(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(**THREE_HOSTS)
    result = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0", "--disable",
                          "--device", T4_HEX, "--json")
    assert result.returncode == 0, result.stderr
    change = _json(result)
    hosts = {h["name"]: h for h in change["hosts"]}
    assert hosts["DC0_C0_H0"]["outcome"] == "changed"
    assert [h for h in hosts if hosts[h]["switch"]] == ["DC0_C0_H0"]
    # Active until the host boots without it: still offered, so it needs a reboot.
    assert change["reboot_needed"] == ["DC0_C0_H0"]
    assert _passthru_states(sim)["DC0_C0_H0"]["0000:3b:00.0"] == (False, True)
    assert _offered(sim, "DC0_C0_H0") == {"0000:3b:00.0"}
    _reboot(sim, "DC0_C0_H0")
    assert _passthru_states(sim)["DC0_C0_H0"]["0000:3b:00.0"] == (False, False)
    assert _offered(sim, "DC0_C0_H0") == set()


@pytest.mark.simulator
def test_a_host_that_refuses_leaves_no_host_changed(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(**THREE_HOSTS, refuse_passthru="DC0_C0_H2")
    before = _passthru_states(sim)
    result = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0", "--enable")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "DC0_C0_H1 (not in maintenance mode):\n  enabled, then rolled back" in result.stdout
    assert "failed to enable 0000:3b:00.0" in result.stdout
    assert "DC0_C0_H2 refused the passthrough change" in result.stdout
    assert "the change failed on DC0_C0_H2; rolled back: DC0_C0_H1" in result.stdout
    assert "reboot needed" not in result.stdout
    assert _passthru_states(sim) == before


@pytest.mark.simulator
def test_an_incapable_device_blocks_every_host(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(**{**THREE_HOSTS, "gpus": [*THREE_HOSTS["gpus"], "DC0_C0_H0=10de:20b5"]})
    before = _passthru_states(sim)
    result = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0", "--disable",
                          "--device", "10de:20b5")
    assert result.returncode == 1, result.stderr
    assert ("! cannot change: 0000:5e:00.0 NVIDIA Corporation GA100 [A100 PCIe 80GB] "
            "(10de:20b5): the host reports it as not passthrough-capable") in result.stdout
    assert "nothing changed: 1 host(s) cannot take the change: DC0_C0_H2" in result.stdout
    assert _passthru_states(sim) == before
    # Without --device the incapable A100 is left alone, and said so as H0's can be switched.
    every_gpu = _invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0",
                             "--disable", "--dry-run")
    assert every_gpu.returncode == 0, every_gpu.stderr
    h2 = every_gpu.stdout.split("DC0_C0_H2 (")[1]
    assert ("left alone: 0000:5e:00.0 NVIDIA Corporation GA100 [A100 PCIe 80GB] (10de:20b5): "
            "the host reports it as not passthrough-capable") in h2
    assert "would disable 0000:5e:00.0" in every_gpu.stdout  # H0's A100, found at the same bus


@pytest.mark.simulator
def test_enable_usage_errors(simulator: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _invoke_gpus(simulator.env, "--datacenter", "DC0", *args)

    for args, message in (
        (("--enable", "--disable"), "--enable and --disable exclude each other"),
        (("--device", T4_HEX), "--device and --dry-run need --enable or --disable"),
        (("--enable", "--host", "nope*"), "--host 'nope*' matches no host in datacenter DC0"),
        (("--enable", "--device", "10de:20b5"), "no GPU matching '10de:20b5' on the hosts"),
        (("--enable", "--device", "zz:1"), "zz"),
    ):
        result = run(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr



@pytest.mark.simulator
def test_sigterm_after_the_first_host_rolls_it_back(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(**THREE_HOSTS)
    before = _passthru_states(sim)
    result = _invoke_gpus({**sim.env, "OVAPIPE_FAULT": "gpus.after-host=term"},
                          "--datacenter", "DC0", "--cluster", "DC0_C0", "--enable")
    assert result.returncode == 130, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "interrupted" in result.stderr
    assert _passthru_states(sim) == before


@pytest.mark.simulator
def test_a_killed_run_is_finished_by_the_next(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(**THREE_HOSTS)
    killed = _invoke_gpus({**sim.env, "OVAPIPE_FAULT": "gpus.after-host=kill"},
                          "--datacenter", "DC0", "--cluster", "DC0_C0", "--enable")
    assert killed.returncode == -9
    half = _passthru_states(sim)
    assert half["DC0_C0_H1"]["0000:3b:00.0"] == (True, False)  # a real crash: no roll-back
    assert half["DC0_C0_H2"]["0000:3b:00.0"] == (False, False)
    again = _json(_invoke_gpus(sim.env, "--datacenter", "DC0", "--cluster", "DC0_C0",
                               "--enable", "--json"))
    hosts = {h["name"]: h for h in again["hosts"]}
    assert [d["address"] for d in hosts["DC0_C0_H1"]["unchanged"]] == ["0000:3b:00.0"]
    assert hosts["DC0_C0_H2"]["outcome"] == "changed"
    assert again["reboot_needed"] == ["DC0_C0_H1", "DC0_C0_H2"]


def test_interrupt_mid_way_rolls_back_changed_hosts() -> None:
    from ovapipe.vsphere.passthru import (
        CHANGED,
        PLANNED,
        ROLLED_BACK,
        HostChange,
        PassthruChange,
        apply_passthru,
    )

    (t4,) = host_devices([FakePassthru(T4.id, True, False, False)], [T4], None)
    calls: list[tuple[str, bool]] = []

    class System:
        def __init__(self, name: str, interrupt: bool) -> None:
            self.name, self.interrupt = name, interrupt

        def UpdatePassthruConfig(self, config: Any) -> None:
            calls.append((self.name, config[0].passthruEnabled))
            if self.interrupt and len(calls) == 2:
                raise KeyboardInterrupt

    hosts = [HostChange(name, None, System(name, name == "H1"), False, switch=[t4],
                        outcome=PLANNED) for name in ("H0", "H1", "H2")]
    change = PassthruChange(True, "cluster C0", None, False, hosts)
    with pytest.raises(KeyboardInterrupt):
        apply_passthru(object(), change, "DC0", "C0", None)
    # H1's call may have landed before the interrupt: it is switched back too; H2 untouched.
    assert calls == [("H0", True), ("H1", True), ("H1", False), ("H0", False)]
    assert [h.outcome for h in hosts] == [ROLLED_BACK, ROLLED_BACK, PLANNED]
    assert CHANGED not in {h.outcome for h in hosts}


# --------------------------------------------------------------------------- template warning

def _template_warnings(env: dict[str, str], *gpus: str) -> subprocess.CompletedProcess[str]:
    gpu_flags = [flag for gpu in gpus for flag in ("--gpu", gpu)]
    return subprocess.run(
        [sys.executable, "-m", "invoke", "cluster-template", "--template", "node-image",
         *gpu_flags, "--datacenter", "DC0", "--cluster", "DC0_C0"], cwd=REPO_ROOT,
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.simulator
def test_cluster_template_warns_when_no_host_has_the_gpu_active(
    make_simulator: Callable[..., Any],
) -> None:
    sim = make_simulator(default_gpu=False, gpus=[
        "DC0_C0_H0=10de:1eb8:enabled", "DC0_C0_H1=10de:1eb8:disabled",
        "DC0_C0_H1=10de:20b5:disabled", "DC0_C0_H2=8086:a780",
    ])
    result = _template_warnings(sim.env, "10de:1eb8", "10de:20b5x2", "8086:a780", "10de:2236")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: GPU")]
    assert warnings == [
        "warning: GPU 10de:1eb8 (vendorId 4318, deviceId 7864) is not active on any host of "
        "cluster DC0_C0: enabled but not active until the host reboots (maintenance mode, then "
        "reboot): DC0_C0_H0; machines asking for it will not power on",
        "warning: GPU 10de:20b5 (vendorId 4318, deviceId 8373) is not active on any host of "
        "cluster DC0_C0: passthrough is off on every host; `invoke gpus --enable --device "
        "10de:20b5 --datacenter DC0 --cluster DC0_C0`; machines asking for it will not power on",
        "warning: GPU 10de:2236 (vendorId 4318, deviceId 8758) is not active on any host of "
        "cluster DC0_C0: no host has it as a passthrough-capable device; machines asking for "
        "it will not power on",
    ]
    assert "kind: VSphereMachineTemplate" in result.stdout  # a warning, not a refusal

    _reboot(sim, "DC0_C0_H0")
    after = _template_warnings(sim.env, "10de:1eb8")
    assert after.returncode == 0, after.stderr
    assert "warning: GPU" not in after.stderr


def test_cluster_template_cluster_needs_datacenter() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "cluster-template", "--template", "t", "--gpu",
         "10de:1eb8", "--cluster", "C0"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--cluster and --datacenter go together" in result.stderr
