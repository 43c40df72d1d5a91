"""validate-template: each rule on plain properties, then the task against the simulator."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ovapipe.validators.template import check_template, validate_template

from ovapipe.vsphere.hostcheck import HostProblem, host_problems
from ovapipe.vsphere.inventory import Found

ROOT = Path(__file__).resolve().parent.parent


def snapshot_tree(*names: str) -> SimpleNamespace:
    nodes = [SimpleNamespace(name=n, childSnapshotList=[]) for n in names]
    return SimpleNamespace(rootSnapshotList=nodes)


def vm(**changes: Any) -> Found:
    props: dict[str, Any] = {
        "name": "node", "config.version": "vmx-17", "config.firmware": "efi",
        "config.template": True, "config.guestId": "ubuntu64Guest",
        "config.bootOptions.efiSecureBootEnabled": False, "snapshot": snapshot_tree("root"),
    }
    props.update(changes)
    return Found(SimpleNamespace(_moId="vm-1"), {k: v for k, v in props.items() if v is not None})


def test_a_good_template_passes() -> None:
    report = check_template(vm(), "/DC0/vm/node", [])
    assert report.ok and report.findings == []
    assert (report.vmx, report.firmware, report.secure_boot) == ("vmx-17", "efi", False)


@pytest.mark.parametrize(
    ("changes", "rule", "severity", "text"),
    [
        ({"config.version": "vmx-13"}, "hardware.version", "error", "vmx-13 is older than vmx-17"),
        ({"config.version": "weird"}, "hardware.version", "error", "not a hardware version"),
        ({"config.firmware": "bios"}, "firmware", "error", "config.firmware is bios"),
        ({"config.firmware": None}, "firmware", "error", "config.firmware is unset"),
        ({"config.template": False}, "template.flag", "warning", "this is a VM"),
        ({"snapshot": None}, "template.snapshot", "warning", "linked clones"),
        ({"config.guestId": "otherGuest"}, "guest.os", "warning", "guest OS is otherGuest"),
    ],
)
def test_each_rule_has_a_failing_case(changes: dict[str, Any], rule: str, severity: str,
                                      text: str) -> None:
    report = check_template(vm(**changes), "/DC0/vm/node", [])
    [finding] = [f for f in report.findings if f.rule == rule]
    assert finding.severity == severity and text in finding.message
    assert report.ok == (severity == "warning")


def test_host_problems_are_errors() -> None:
    problem = HostProblem("esx1", "host esx1 runs ESXi 6.7.0, but vmx-17 needs ESXi 7.0 or newer")
    report = check_template(vm(), "/DC0/vm/node", [problem])
    assert not report.ok and report.errors[0].rule == "hosts.compatible"


def test_bios_can_be_asked_for() -> None:
    assert check_template(vm(**{"config.firmware": "bios"}), "p", [], firmware="bios").ok


def host(name: str, version: str, state: str = "connected", maintenance: bool = False) -> Found:
    return Found(SimpleNamespace(_moId=f"host-{name}"), {
        "name": name, "config.product.version": version,
        "runtime.connectionState": state, "runtime.inMaintenanceMode": maintenance,
    })


class Browser:
    def __init__(self, keys: dict[str, list[str]]) -> None:
        self.keys = keys

    def QueryConfigOptionDescriptor(self) -> list[Any]:
        return [SimpleNamespace(key=k, createSupported=True,
                                host=[SimpleNamespace(_moId=f"host-{h}") for h in hosts])
                for k, hosts in self.keys.items()]


def test_hosts_must_run_a_new_enough_esxi() -> None:
    hosts = [host("a", "7.0.3"), host("b", "6.7.0"), host("c", "6.5.0", maintenance=True)]
    browser = Browser({"vmx-17": ["a"], "vmx-14": ["a", "b"]})
    [problem] = host_problems("C1", browser, hosts, 17)
    assert problem.host == "b"
    assert problem.message.startswith("host b runs ESXi 6.7.0, but vmx-17 needs ESXi 7.0 or newer")


def test_hosts_must_be_able_to_create_the_version_by_the_environment_browser() -> None:
    [problem] = host_problems("C1", Browser({"vmx-14": ["a"]}), [host("a", "7.0.3")], 17)
    assert "cannot create vmx-17 according to the environment browser of C1" in problem.message


def test_a_cluster_without_usable_hosts_is_a_problem() -> None:
    [problem] = host_problems("C1", Browser({}), [host("a", "7.0.3", state="disconnected")], 17)
    assert "C1 has no connected host" in problem.message


# ---- against the simulator -------------------------------------------------------------------


def invoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **env}, timeout=120)


@pytest.mark.simulator
def test_a_published_template_passes_and_the_task_exits_0(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    from ovapipe.progress import Progress
    from ovapipe.vsphere.publish import PublishOptions, publish

    publish(PublishOptions(ova=efi_ova, datacenters=("DC0",), cluster="DC0_C0",
                           datastore="LocalDS_0", network="VM Network", output_dir=tmp_path),
            simulator.connection, log=io.StringIO(),
            progress=lambda label, total: Progress(label, total, io.StringIO(), tty=False))
    result = invoke(simulator.env, "validate-template", "--datacenter", "DC0",
                    "--name", "ubuntu-2004-efi-test", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"ok": True, "path": "/DC0/vm/ubuntu-2004-efi-test", "vmx": "vmx-17",
                      "firmware": "efi", "secure_boot": False, "findings": []}


@pytest.mark.simulator
def test_a_bios_vm_fails_with_exit_1(simulator: Any) -> None:
    result = invoke(simulator.env, "validate-template", "--datacenter", "DC0",
                    "--name", "DC0_H0_VM0", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["ok"]
    assert {"firmware", "template.flag", "template.snapshot"} <= {f["rule"] for f in
                                                                  report["findings"]}


@pytest.mark.simulator
def test_a_missing_template_is_exit_2_without_traceback(simulator: Any) -> None:
    result = invoke(simulator.env, "validate-template", "--datacenter", "DC0", "--name", "nope")
    assert result.returncode == 2
    assert "VM or template 'nope' (--name) not found in datacenter /DC0" in result.stderr
    assert "Traceback" not in result.stderr
    result = invoke(simulator.env, "validate-template", "--datacenter", "DCX", "--name", "nope")
    assert result.returncode == 2
    assert "datacenter 'DCX' (--datacenter) not found; available: /DC0" in result.stderr


@pytest.mark.simulator
def test_a_vmx17_vm_on_esxi_67_hosts_cannot_run(make_simulator: Any) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.inventory import datacenter, retrieve
    from ovapipe.vsphere.tasks import wait_for_task

    sim = make_simulator(esx_version="6.7.0")
    with session(sim.connection) as si:
        dc = datacenter(si, "DC0")
        [cluster] = [c for c in retrieve(si, vim.ClusterComputeResource, ["name", "resourcePool"],
                                         dc.obj)]
        folder = next(f.obj for f in retrieve(si, vim.Folder, ["name"], dc.obj)
                      if f.name == "vm")
        spec = vim.vm.ConfigSpec(name="new-node", version="vmx-17", firmware="efi",
                                 guestId="ubuntu64Guest",
                                 files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"))
        wait_for_task(folder.CreateVM_Task(config=spec, pool=cluster.get("resourcePool")),
                      "create VM")
        report = validate_template(si, "DC0", "new-node")
    errors = [f.message for f in report.errors]
    assert any(m.startswith("host DC0_C0_H0 runs ESXi 6.7.0, but vmx-17 needs ESXi 7.0")
               for m in errors), errors


@pytest.mark.parametrize(("flag", "value", "text"), [
    ("--min-vmx", "vmx-x", "--min-vmx: not a hardware version"),
    ("--firmware", "uefi", "--firmware 'uefi': expected one of efi, bios"),
])
def test_bad_arguments_exit_2_before_connecting(flag: str, value: str, text: str) -> None:
    result = invoke({}, "validate-template", "--datacenter", "DC0", "--name", "x", flag, value)
    assert result.returncode == 2
    assert text in result.stderr and "Traceback" not in result.stderr


@pytest.mark.simulator
def test_min_vmx_accepts_the_vmx_spelling(simulator: Any) -> None:
    result = invoke(simulator.env, "validate-template", "--datacenter", "DC0",
                    "--name", "DC0_H0_VM0", "--min-vmx", "vmx-20", "--firmware", "bios",
                    "--json")
    assert result.returncode == 1
    [finding] = [f for f in json.loads(result.stdout)["findings"] if f["severity"] == "error"]
    assert finding["rule"] == "hardware.version"
    assert "vmx-19 is older than vmx-20" in finding["message"]


@pytest.mark.simulator
@pytest.mark.parametrize("name", ["/DC0/vm/DC0_H0_VM0", "vm/DC0_H0_VM0", "DC0_H0_VM0",
                                  "DC0_H?_VM0"])
def test_the_name_is_an_inventory_path(simulator: Any, name: str) -> None:
    result = invoke(simulator.env, "validate-template", "--datacenter", "/DC0", "--name", name,
                    "--min-vmx", "vmx-4", "--firmware", "bios", "--json")
    assert json.loads(result.stdout)["path"] == "/DC0/vm/DC0_H0_VM0", result.stderr


@pytest.mark.simulator
def test_a_name_matching_several_vms_is_refused_with_their_paths(simulator: Any) -> None:
    result = invoke(simulator.env, "validate-template", "--datacenter", "DC0",
                    "--name", "DC0_H0_VM*")
    assert result.returncode == 2
    assert ("is ambiguous in datacenter /DC0: 2 match: /DC0/vm/DC0_H0_VM0, /DC0/vm/DC0_H0_VM1"
            in result.stderr)
