"""The local vSphere simulator, checked over pinned TLS with pyVmomi like a real vCenter."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ovapipe.config import Connection
from ovapipe.errors import ConfigError
from ovapipe.hardware import VMX_MIN_ESXI, esxi_supports
from ovapipe.vsphere import inventory
from ovapipe.vsphere.connect import PinnedHTTPSConnection, session

pytestmark = pytest.mark.simulator

NVIDIA, TESLA_T4 = 0x10DE, 0x1EB8
CLUSTER_HOSTS = ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2")
OVF_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References><File ovf:id="file1" ovf:href="disk.vmdk"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="4194304"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="{name}"><Info>vm</Info>
    <VirtualHardwareSection><Info>hw</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-17</vssd:VirtualSystemType></System>
      <Item><rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>8</rasd:InstanceID><rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def small_vmdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 MiB disk with random content, as a streamOptimized VMDK made by qemu-img."""
    folder = tmp_path_factory.mktemp("disk")
    raw = folder / "disk.raw"
    with open(raw, "wb") as out:
        out.write(os.urandom(1 << 20))
        out.truncate(4 << 20)
    vmdk = folder / "disk.vmdk"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
         str(raw), str(vmdk)],
        check=True,
    )
    return vmdk


def cluster_pool(si: Any) -> Any:
    """The root resource pool of cluster DC0_C0."""
    from pyVmomi import vim

    (cluster,) = inventory.retrieve(si, vim.ClusterComputeResource, ["resourcePool"])
    return cluster.get("resourcePool")


def hosts(si: Any, paths: list[str]) -> dict[str, inventory.Found]:
    from pyVmomi import vim

    return {h.name: h for h in inventory.retrieve(si, vim.HostSystem, ["name", *paths])}


def gpus_of(host: inventory.Found) -> list[Any]:
    passthru = {p.id: p for p in host.get("config.pciPassthruInfo", [])}
    return [
        d for d in host.get("hardware.pciDevice", [])
        if d.id in passthru and passthru[d.id].passthruEnabled
    ]


def vm_named(si: Any, name: str) -> Any:
    from pyVmomi import vim

    return inventory.by_name(inventory.retrieve(si, vim.VirtualMachine, ["name"]), "VM", name).obj


def wait_task(si: Any, task: Any) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = inventory.properties(si, task, ["info"])["info"]
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise AssertionError(f"task failed: {info.error}")
        time.sleep(0.05)
    raise AssertionError("task did not finish")


def ready_lease_info(si: Any, lease: Any) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        props = inventory.properties(si, lease, ["state", "info", "error"])
        if props["state"] == "ready":
            return props["info"]
        assert props["state"] != "error", props.get("error")
        time.sleep(0.05)
    raise AssertionError("lease never became ready")


def transfer(conn: Connection, method: str, url: str, body: Path | None = None) -> bytes:
    path = "/" + url.split("/", 3)[3]
    http = PinnedHTTPSConnection(conn.host, conn.port, conn)
    try:
        if body is None:
            http.request(method, path)
        else:
            with open(body, "rb") as data:
                http.request(method, path, body=data, headers={
                    "Content-Length": str(body.stat().st_size),
                    "Content-Type": "application/x-vnd.vmware-streamVmdk",
                })
        response = http.getresponse()
        payload = response.read()
        assert response.status == 200, (method, url, response.status, payload)
        return payload
    finally:
        http.close()


def import_vm(si: Any, conn: Connection, name: str, disk: Path) -> Any:
    """Upload ``disk`` as the only disk of a new VM through an import lease (POST streamVmdk)."""
    from pyVmomi import vim

    content = si.RetrieveContent()
    pool = cluster_pool(si)
    datastore = inventory.retrieve(si, vim.Datastore, ["name"])[0].obj
    result = content.ovfManager.CreateImportSpec(
        OVF_TEMPLATE.replace("{name}", name), pool, datastore,
        vim.OvfManager.CreateImportSpecParams(entityName=name),
    )
    lease = pool.ImportVApp(result.importSpec)
    info = ready_lease_info(si, lease)
    assert info.lease == lease
    disk_urls = [u for u in info.deviceUrl if u.disk]
    assert len(disk_urls) == 1
    transfer(conn, "POST", disk_urls[0].url, disk)
    lease.HttpNfcLeaseComplete()
    return info.entity


def export_disks(si: Any, conn: Connection, vm: Any) -> list[bytes]:
    lease = vm.ExportVm()
    info = ready_lease_info(si, lease)
    assert info.lease == lease
    assert info.entity == vm
    disks = [transfer(conn, "GET", u.url) for u in info.deviceUrl if u.disk]
    lease.HttpNfcLeaseComplete()
    return disks


HID = {chr(ord("a") + i): (0x04 + i, False) for i in range(26)}
HID.update({chr(ord("A") + i): (0x04 + i, True) for i in range(26)})
HID.update({" ": (0x2C, False), "\n": (0x28, False), "!": (0x1E, True), "=": (0x2E, False),
            "/": (0x38, False), "1": (0x1E, False)})


def type_text(vm: Any, text: str) -> int:
    from pyVmomi import vim

    events = []
    for char in text:
        usage, shift = HID[char]
        events.append(vim.UsbScanCodeSpecKeyEvent(
            usbHidCode=usage << 16 | 7,
            modifiers=vim.UsbScanCodeSpecModifierType(leftShift=shift),
        ))
    return int(vm.PutUsbScanCodes(vim.UsbScanCodeSpec(keyEvents=events)))


# -------------------------------------------------------------------------------- tests


def test_build_is_idempotent(simulator_binary: Path) -> None:
    from ovapipe.simulator import build

    before = simulator_binary.stat().st_mtime_ns
    assert build(quiet=True) == simulator_binary
    assert simulator_binary.stat().st_mtime_ns == before


def test_installer_options_need_a_disk() -> None:
    from ovapipe.simulator import SimulatorOptions

    with pytest.raises(ConfigError, match="installer_disk"):
        SimulatorOptions(installer_vm="build-*").argv()
    argv = SimulatorOptions(installer_vm="b*", installer_disk="d.vmdk", default_gpu=False).argv()
    assert "--no-default-gpu" in argv and argv[argv.index("--installer-vm") + 1] == "b*"


def test_default_versions_are_7_0_3(sim_session: Any) -> None:
    about = sim_session.RetrieveContent().about
    assert (about.version, about.apiVersion) == ("7.0.3", "7.0.3.0")
    assert "vCenter Server 7.0.3" in about.fullName
    found = hosts(sim_session, ["config.product"])
    assert len(found) == 4
    assert {h.get("config.product").version for h in found.values()} == {"7.0.3"}


def test_versions_6_7_0(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(vc_version="6.7.0", esx_version="6.7.0")
    with session(sim.connection) as si:
        about = si.RetrieveContent().about
        assert (about.version, about.apiVersion) == ("6.7.0", "6.7")
        products = {h.get("config.product").version for h in hosts(si, ["config.product"]).values()}
        assert products == {"6.7.0"}


def test_bad_version_is_refused(make_simulator: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="esx-version"):
        make_simulator(esx_version="seven")
    with pytest.raises(ConfigError, match="older than --esx-version"):
        make_simulator(vc_version="6.7.0", esx_version="7.0.3")


def test_default_tesla_t4_on_cluster_hosts_only(sim_session: Any) -> None:
    found = hosts(sim_session, ["hardware.pciDevice", "config.pciPassthruInfo"])
    for name in CLUSTER_HOSTS:
        (gpu,) = gpus_of(found[name])
        assert (gpu.vendorId, gpu.deviceId) == (4318, 7864)
        assert (gpu.vendorId & 0xFFFF, gpu.deviceId & 0xFFFF) == (NVIDIA, TESLA_T4)
        assert "Tesla T4" in gpu.deviceName and gpu.vendorName == "NVIDIA Corporation"
        info = {p.id: p for p in found[name].get("config.pciPassthruInfo")}[gpu.id]
        assert info.passthruCapable and info.passthruEnabled and info.passthruActive
    assert gpus_of(found["DC0_H0"]) == []


def test_t4_in_config_target_dynamic_passthrough(sim_session: Any) -> None:
    from pyVmomi import vim

    (cluster,) = inventory.retrieve(sim_session, vim.ClusterComputeResource, ["environmentBrowser"])
    target = cluster.get("environmentBrowser").QueryConfigTarget()
    assert [(d.vendorId, d.deviceId) for d in target.dynamicPassthrough] == [(4318, 7864)]
    assert len(target.pciPassthrough) == len(CLUSTER_HOSTS)


def test_no_default_gpu(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(default_gpu=False)
    with session(sim.connection) as si:
        found = hosts(si, ["hardware.pciDevice", "config.pciPassthruInfo"])
        assert all(gpus_of(h) == [] for h in found.values())


def test_vendor_id_above_0x7fff_comes_back_signed(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(gpus=["DC0_H0=8086:56c0"])
    with session(sim.connection) as si:
        found = hosts(si, ["hardware.pciDevice", "config.pciPassthruInfo"])
        (gpu,) = gpus_of(found["DC0_H0"])
        assert (gpu.vendorId, gpu.deviceId) == (-32634, 0x56C0)
        assert gpu.vendorId & 0xFFFF == 0x8086
        assert [d.vendorId for d in gpus_of(found["DC0_C0_H0"])] == [4318]


def test_gpu_flag_matching_no_host_is_refused(make_simulator: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="matches no host"):
        make_simulator(gpus=["nope*=10de:1eb8"])


@pytest.mark.parametrize(("esx", "vc"), [("6.7.0", "6.7.0"), ("7.0.3", "7.0.3"),
                                         ("7.0.0", "7.0.3"), ("8.0.2", "8.0.2")])
def test_environment_browser_matches_esxi_version(
    make_simulator: Callable[..., Any], esx: str, vc: str
) -> None:
    from pyVmomi import vim

    sim = make_simulator(esx_version=esx, vc_version=vc)
    expected = [f"vmx-{v}" for v in sorted(VMX_MIN_ESXI) if esxi_supports(esx, v)]
    with session(sim.connection) as si:
        browsers = [
            x.get("environmentBrowser")
            for x in inventory.retrieve(si, vim.ComputeResource, ["environmentBrowser"])
        ]
        assert len(browsers) == 2  # the cluster and the standalone host
        for browser in browsers:
            descriptors = browser.QueryConfigOptionDescriptor()
            assert [d.key for d in descriptors if d.createSupported] == expected
            assert [d.key for d in descriptors if d.defaultConfigOption] == [expected[-1]]
    if esx == "6.7.0":
        assert "vmx-17" not in expected


def test_go_table_agrees_with_hardware_py(simulator_binary: Path) -> None:
    from ovapipe.simulator import hardware_table

    assert hardware_table(simulator_binary) == VMX_MIN_ESXI


def test_wrong_password_is_rejected(simulator: Any) -> None:
    wrong = dataclasses.replace(simulator.connection, password="not-the-password")
    with pytest.raises(ConfigError, match="login failed"), session(wrong):
        pass


def test_thumbprint_mismatch_is_rejected(simulator: Any) -> None:
    good = simulator.connection
    assert good.thumbprint is not None and len(good.thumbprint) == 59
    assert good.thumbprint == good.thumbprint.upper()
    other = "00" if not good.thumbprint.startswith("00") else "11"
    wrong = dataclasses.replace(good, thumbprint=other + good.thumbprint[2:])
    mismatch = r"does not match VSPHERE_TLS_THUMBPRINT"
    with pytest.raises(ConfigError, match=mismatch), session(wrong):
        pass


def test_a_sha256_pin_is_accepted(simulator: Any) -> None:
    import hashlib
    import ssl

    from ovapipe.config import normalize_thumbprint

    conn = simulator.connection
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((conn.host, conn.port)))
    sha256 = normalize_thumbprint(hashlib.sha256(der).hexdigest())
    with session(dataclasses.replace(conn, thumbprint=sha256)) as si:
        assert si.RetrieveContent().about.version == "7.0.3"


def test_several_simulators_at_once(make_simulator: Callable[..., Any]) -> None:
    first, second = make_simulator(), make_simulator(esx_version="6.7.0", vc_version="6.7.0")
    assert first.url != second.url
    assert first.env["VSPHERE_TLS_THUMBPRINT"] != second.env["VSPHERE_TLS_THUMBPRINT"]
    with session(first.connection) as a, session(second.connection) as b:
        assert a.RetrieveContent().about.version == "7.0.3"
        assert b.RetrieveContent().about.version == "6.7.0"


def test_stop_ends_the_process_and_keeps_the_log(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator()
    pid = sim.pid
    assert sim.running and pid is not None
    sim.stop()
    assert not sim.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "stopping" in sim.log_text()


def test_export_returns_the_bytes_uploaded_through_an_import_lease(
    simulator: Any, sim_session: Any, small_vmdk: Path
) -> None:
    vm = import_vm(sim_session, simulator.connection, "imported", small_vmdk)
    (exported,) = export_disks(sim_session, simulator.connection, vm)
    assert exported == small_vmdk.read_bytes()


def test_export_of_a_powered_on_vm_is_refused(sim_session: Any) -> None:
    from pyVmomi import vim

    vm = vm_named(sim_session, "DC0_H0_VM0")
    assert inventory.properties(sim_session, vm, ["runtime.powerState"])[
        "runtime.powerState"] == "poweredOn"
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.ExportVm()


def test_typed_keys_read_back_as_text(simulator: Any, sim_session: Any) -> None:
    vm = vm_named(sim_session, "DC0_H0_VM0")
    text = "linux auto=true url=Http/1\n"
    assert type_text(vm, text) == len(text)
    assert type_text(vm, "Hi!") == 3
    assert simulator.typed_text("DC0_H0_VM0") == text + "Hi!"
    assert simulator.typed_text("DC0_H0_VM1") == ""


@pytest.fixture
def installer_sim(make_simulator: Callable[..., Any], small_vmdk: Path) -> Iterator[Any]:
    yield make_simulator(installer_vm="build-*", installer_disk=small_vmdk, installer_seconds=1)


def create_vm_with_disk(si: Any, name: str, version: str = "vmx-17") -> Any:
    from pyVmomi import vim

    datacenter = inventory.datacenter(si, "DC0")
    folder = inventory.properties(si, datacenter.obj, ["vmFolder"])["vmFolder"]
    pool = cluster_pool(si)
    controller = vim.vm.device.VirtualDeviceSpec(
        operation="add",
        device=vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0,
                                                       sharedBus="noSharing"),
    )
    disk = vim.vm.device.VirtualDeviceSpec(
        operation="add",
        fileOperation="create",
        device=vim.vm.device.VirtualDisk(
            key=2000, controllerKey=1000, unitNumber=0, capacityInKB=4096,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(diskMode="persistent"),
        ),
    )
    spec = vim.vm.ConfigSpec(
        name=name, version=version, firmware="efi", guestId="ubuntu64Guest",
        files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"),
        deviceChange=[controller, disk],
    )
    return wait_task(si, folder.CreateVM_Task(config=spec, pool=pool))


def power_state(si: Any, vm: Any) -> str:
    return str(inventory.properties(si, vm, ["runtime.powerState"])["runtime.powerState"])


def wait_powered_off(si: Any, vm: Any, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if power_state(si, vm) == "poweredOff":
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"VM still {power_state(si, vm)} after {timeout}s")


def test_installer_writes_the_disk_and_powers_off(installer_sim: Any, small_vmdk: Path) -> None:
    with session(installer_sim.connection) as si:
        vm = create_vm_with_disk(si, "build-ubuntu")
        wait_task(si, vm.PowerOnVM_Task())
        assert power_state(si, vm) == "poweredOn"
        waited = wait_powered_off(si, vm, timeout=20)
        assert waited >= 0.5
        (disk,) = export_disks(si, installer_sim.connection, vm)
        assert disk == small_vmdk.read_bytes()
    assert "installer: build-ubuntu powered off" in installer_sim.log_text()


def test_installer_ignores_other_vms(installer_sim: Any) -> None:
    with session(installer_sim.connection) as si:
        vm = create_vm_with_disk(si, "other")
        wait_task(si, vm.PowerOnVM_Task())
        time.sleep(2)
        assert power_state(si, vm) == "poweredOn"


def test_installer_waits_for_the_boot_command(
    make_simulator: Callable[..., Any], small_vmdk: Path
) -> None:
    # Install takes 2 s, counted from the last keystroke: typing at 1 s moves power-off from
    # 2 s to 3 s after power-on; the check at 2.5 s sees it still on (0.5 s margins).
    sim = make_simulator(installer_vm="build-*", installer_disk=small_vmdk, installer_seconds=2)
    with session(sim.connection) as si:
        vm = create_vm_with_disk(si, "build-typed")
        wait_task(si, vm.PowerOnVM_Task())
        time.sleep(1.0)
        type_text(vm, "a")
        time.sleep(1.5)
        assert power_state(si, vm) == "poweredOn"
        wait_powered_off(si, vm, timeout=20)
        assert sim.typed_text("build-typed") == "a"


def test_create_descriptor_describes_an_exported_vm(simulator: Any, sim_session: Any) -> None:
    import xml.etree.ElementTree as ET

    from pyVmomi import vim

    vm = create_vm_with_disk(sim_session, "described")
    lease = vm.ExportVm()
    info = ready_lease_info(sim_session, lease)
    (disk_url,) = [u for u in info.deviceUrl if u.disk]
    lease.HttpNfcLeaseComplete()
    files = [vim.OvfManager.OvfFile(deviceId=disk_url.key, path="described-disk1.vmdk", size=123)]
    result = sim_session.RetrieveContent().ovfManager.CreateDescriptor(
        obj=vm, cdp=vim.OvfManager.CreateDescriptorParams(name="described", ovfFiles=files)
    )
    ns = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
          "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
          "vmw": "http://www.vmware.com/schema/ovf"}
    root = ET.fromstring(result.ovfDescriptor)
    (file_ref,) = root.findall("ovf:References/ovf:File", ns)
    assert file_ref.get(f"{{{ns['ovf']}}}href") == "described-disk1.vmdk"
    (disk,) = root.findall("ovf:DiskSection/ovf:Disk", ns)
    assert disk.get(f"{{{ns['ovf']}}}fileRef") == file_ref.get(f"{{{ns['ovf']}}}id")
    system_type = root.find(".//vssd:VirtualSystemType", ns)
    assert system_type is not None and system_type.text == "vmx-17"
    configs = {c.get(f"{{{ns['vmw']}}}key"): c.get(f"{{{ns['vmw']}}}value")
               for c in root.findall(".//vmw:Config", ns)}
    assert configs["firmware"] == "efi"


def test_simulator_dies_with_its_parent(simulator_binary: Path) -> None:
    script = (
        "import os\n"
        "from pathlib import Path\n"
        "from ovapipe.simulator import Simulator\n"
        f"sim = Simulator(binary=Path({str(simulator_binary)!r})).start()\n"
        "print(sim.pid, sim.log_path.parent, flush=True)\n"
        "os._exit(0)\n"
    )
    import shutil
    import sys

    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True).stdout
    pid_text, workdir = out.split()
    pid = int(pid_text)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, 9)
        raise AssertionError(f"simulator {pid} outlived the process that started it")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # its parent died before cleaning up


def test_import_spec_ignores_the_ovf_firmware_like_debians_simulator(sim_session: Any) -> None:
    """Other parts test their firmware fix-up on this: the imported VM must come up bios."""
    from pyVmomi import vim

    efi_ovf = OVF_TEMPLATE.replace(
        "</VirtualHardwareSection>",
        '<vmw:Config xmlns:vmw="http://www.vmware.com/schema/ovf" ovf:required="false" '
        'vmw:key="firmware" vmw:value="efi"/></VirtualHardwareSection>',
    ).replace("{name}", "efi-import")
    datastore = inventory.retrieve(sim_session, vim.Datastore, ["name"])[0].obj
    result = sim_session.RetrieveContent().ovfManager.CreateImportSpec(
        efi_ovf, cluster_pool(sim_session), datastore,
        vim.OvfManager.CreateImportSpecParams(entityName="efi-import"),
    )
    config_spec = result.importSpec.configSpec
    assert config_spec.version == "vmx-17"
    assert config_spec.firmware in (None, "bios")


def test_strict_vmx_refuses_versions_the_hosts_cannot_run(
    make_simulator: Callable[..., Any], small_vmdk: Path
) -> None:
    from pyVmomi import vmodl

    sim = make_simulator(esx_version="6.7.0", vc_version="6.7.0", strict_vmx=True)
    with session(sim.connection) as si:
        with pytest.raises(vmodl.fault.InvalidArgument, match="vmx-17 is not supported"):
            create_vm_with_disk(si, "too-new")
        with pytest.raises(vmodl.fault.InvalidArgument, match=r"ESXi 6\.7\.0 creates up to vmx-14"):
            import_vm(si, sim.connection, "too-new-import", small_vmdk)
        create_vm_with_disk(si, "fits", version="vmx-14")
    assert "soap CreateVM_Task: refused" in sim.log_text()


def test_without_strict_vmx_any_version_is_created(make_simulator: Callable[..., Any]) -> None:
    sim = make_simulator(esx_version="6.7.0", vc_version="6.7.0")
    with session(sim.connection) as si:
        create_vm_with_disk(si, "registered-from-elsewhere")


def test_export_of_a_never_written_disk_is_a_blank_stream_optimized_vmdk(
    simulator: Any, sim_session: Any, tmp_path: Path
) -> None:
    vm = create_vm_with_disk(sim_session, "blank")
    (data,) = export_disks(sim_session, simulator.connection, vm)
    vmdk, raw = tmp_path / "blank.vmdk", tmp_path / "blank.raw"
    vmdk.write_bytes(data)
    assert b'createType="streamOptimized"' in data
    subprocess.run(["qemu-img", "check", str(vmdk)], check=True, capture_output=True)
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(vmdk), str(raw)], check=True)
    assert raw.stat().st_size == 4096 * 1024
    assert raw.read_bytes().count(0) == 4096 * 1024
