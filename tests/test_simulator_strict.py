"""Where the simulator is as strict (and as capable) as vCenter, beyond Debian's simulator:
import of SATA, NVMe and lsilogicsas controllers, one custom field value per key, import
leases that time out without progress."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ovafactory import DISK_NAME, controller_item, export_ovf, make_ova
from ovapipe.validators.ova import validate_ova
from test_simulator import cluster_pool, ready_lease_info, transfer

from ovapipe.progress import Progress
from ovapipe.vsphere import inventory
from ovapipe.vsphere.connect import PinnedHTTPSConnection
from ovapipe.vsphere.publish import PublishOptions, publish

pytestmark = pytest.mark.simulator

def import_spec(si: Any, ovf: str, name: str = "strict-import") -> Any:
    from pyVmomi import vim

    datastore = inventory.retrieve(si, vim.Datastore, ["name"])[0].obj
    return si.RetrieveContent().ovfManager.CreateImportSpec(
        ovf, cluster_pool(si), datastore, vim.OvfManager.CreateImportSpecParams(entityName=name))


def errors_of(result: Any) -> list[str]:
    """The import spec's errors as publish reports them."""
    from ovapipe.vsphere.tasks import fault_message

    return [fault_message(e) for e in result.error or []]


def added_devices(result: Any) -> list[Any]:
    return [change.device for change in result.importSpec.configSpec.deviceChange]


# ---------------------------------------------------------------- SATA, NVMe, lsilogicsas


def test_sata_nvme_and_sas_controllers_become_their_devices(sim_session: Any) -> None:
    from pyVmomi import vim

    result = import_spec(sim_session, export_ovf())
    assert errors_of(result) == []
    devices = added_devices(result)
    by_type = {type(d): d for d in devices}
    sata = by_type[vim.vm.device.VirtualAHCIController]
    nvme = by_type[vim.vm.device.VirtualNVMEController]
    sas = by_type[vim.vm.device.VirtualLsiLogicSASController]
    assert (sata.busNumber, nvme.busNumber, sas.busNumber) == (0, 0, 0)
    assert sas.scsiCtlrUnitNumber == 7
    disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    assert [(d.controllerKey, d.unitNumber) for d in disks] == [(nvme.key, 0), (sas.key, 1)]
    assert [d.capacityInKB for d in disks] == [64 * 1024, 16 * 1024]
    [cdrom] = [d for d in devices if isinstance(d, vim.vm.device.VirtualCdrom)]
    assert (cdrom.controllerKey, cdrom.unitNumber) == (sata.key, 0)
    assert [item.path for item in result.fileItem] == [DISK_NAME]
    assert result.importSpec.configSpec.version == "vmx-17"


def test_the_imported_vm_has_the_controllers_and_its_disks_on_them(
    simulator: Any, sim_session: Any, efi_vmdk: Path
) -> None:
    from pyVmomi import vim

    name = "strict-import"
    result = import_spec(sim_session, export_ovf(size=efi_vmdk.stat().st_size), name)
    assert errors_of(result) == []
    lease = cluster_pool(sim_session).ImportVApp(result.importSpec)
    info = ready_lease_info(sim_session, lease)
    [item] = result.fileItem
    [url] = [u for u in info.deviceUrl if u.importKey == item.deviceId]
    transfer(simulator.connection, "POST", url.url, efi_vmdk)
    lease.HttpNfcLeaseComplete()
    [vm] = [v for v in inventory.retrieve(sim_session, vim.VirtualMachine,
                                          ["name", "config.hardware.device"]) if v.name == name]
    devices = vm.get("config.hardware.device")
    keys = {type(d): d.key for d in devices}
    disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    assert [(d.controllerKey, d.unitNumber) for d in disks] == [
        (keys[vim.vm.device.VirtualNVMEController], 0),
        (keys[vim.vm.device.VirtualLsiLogicSASController], 1),
    ]
    assert vim.vm.device.VirtualAHCIController in keys


def test_create_descriptor_of_the_vm_imports_again_with_the_same_controllers(
    sim_session: Any
) -> None:
    """CreateDescriptor writes the subtypes ovftool writes (vmware.sata.ahci, ...), which
    CreateImportSpec reads back."""
    from pyVmomi import vim

    name = "strict-round-trip"
    lease = cluster_pool(sim_session).ImportVApp(import_spec(sim_session, export_ovf(),
                                                             name).importSpec)
    ready_lease_info(sim_session, lease)
    lease.HttpNfcLeaseComplete()
    [vm] = [v.obj for v in inventory.retrieve(sim_session, vim.VirtualMachine, ["name"])
            if v.name == name]
    descriptor = sim_session.RetrieveContent().ovfManager.CreateDescriptor(
        obj=vm, cdp=vim.OvfManager.CreateDescriptorParams(name=name)).ovfDescriptor
    assert "<rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType>" in descriptor
    assert "<rasd:ResourceSubType>vmware.nvme.controller</rasd:ResourceSubType>" in descriptor
    assert "<rasd:ResourceSubType>lsilogicsas</rasd:ResourceSubType>" in descriptor
    again = import_spec(sim_session, descriptor, name + "-again")
    assert errors_of(again) == []

    def shape(devices: list[Any]) -> list[tuple[str, int | None]]:
        controllers = {d.key: type(d).__name__ for d in devices
                       if isinstance(d, vim.vm.device.VirtualController)}
        return sorted((controllers[d.controllerKey], d.unitNumber) for d in devices
                      if isinstance(d, vim.vm.device.VirtualDisk))

    assert shape(added_devices(again)) == shape(added_devices(import_spec(sim_session,
                                                                          export_ovf())))


def test_a_disk_beside_the_cdrom_on_sata_as_ova_compose_writes(sim_session: Any) -> None:
    from pyVmomi import vim

    result = import_spec(sim_session, export_ovf(disk_parent="3", disk_unit="1",
                                                 second_disk=None))
    assert errors_of(result) == []
    devices = added_devices(result)
    [sata] = [d for d in devices if isinstance(d, vim.vm.device.VirtualAHCIController)]
    attached = sorted((type(d).__name__, d.unitNumber) for d in devices
                      if getattr(d, "controllerKey", None) == sata.key)
    assert attached == [("vim.vm.device.VirtualCdrom", 0), ("vim.vm.device.VirtualDisk", 1)]


@pytest.mark.parametrize("subtype", ["ahci", "AHCI", "nvme"])
def test_short_subtype_spellings_are_accepted(sim_session: Any, subtype: str) -> None:
    ovf = export_ovf(second_disk=None, extra_items=controller_item("20", subtype))
    assert errors_of(import_spec(sim_session, ovf)) == []


@pytest.mark.parametrize("ovf_changes,expected", [
    (dict(extra_items=controller_item("20", "vmware.usb.xhci")),
     "Item 20 (controller 20): unsupported controller subtype 'vmware.usb.xhci' for "
     "ResourceType 20"),
    (dict(extra_items=controller_item("20", "megaraid", 6)),
     "unsupported controller subtype 'megaraid' for ResourceType 6"),
    (dict(vmx="vmx-11"),
     "NVME controller 0): a NVMe controller (nvme) needs hardware version vmx-13 or newer, "
     "the OVF asks for vmx-11"),
    (dict(second_disk=("5", "7")),
     "Item 8 (Hard disk 2): AddressOnParent '7' on 5: a SCSI controller has units 0-15 except "
     "7 (the controller's own)"),
    (dict(second_disk=("4", "0")),
     "AddressOnParent '0' on 4: another device of the OVF already uses it"),
    (dict(second_disk=("3", "30")),
     "AddressOnParent '30' on 3: a SATA controller has units 0-29"),
    (dict(second_disk=("99", "0")),
     "Item 8 (Hard disk 2): Parent '99' is not a supported controller Item"),
    (dict(second_disk=None, extra_items="".join(
        controller_item(str(20 + n), "vmware.sata.ahci") for n in range(4))),
     "Item 23 (controller 23): more than 4 SATA controllers"),
])
def test_what_vcenter_refuses_is_an_error_of_the_import_spec(
    sim_session: Any, ovf_changes: dict[str, Any], expected: str
) -> None:
    messages = errors_of(import_spec(sim_session, export_ovf(**ovf_changes)))
    assert any(expected in m for m in messages), messages


def test_an_optional_item_that_cannot_be_made_is_a_warning_and_left_out(sim_session: Any) -> None:
    """ovftool marks CD-ROMs ovf:required="false"; vCenter warns and imports without them."""
    from pyVmomi import vim

    from ovapipe.vsphere.tasks import fault_message

    ovf = export_ovf(second_disk=None).replace("<rasd:Parent>3</rasd:Parent>",
                                               "<rasd:Parent>99</rasd:Parent>")
    result = import_spec(sim_session, ovf)
    assert errors_of(result) == []
    [warning] = [fault_message(w) for w in result.warning]
    assert "Item 6 (CD/DVD drive 1): Parent '99' is not a supported controller Item" in warning
    assert 'ovf:required="false": left out' in warning
    assert not [d for d in added_devices(result) if isinstance(d, vim.vm.device.VirtualCdrom)]


def test_a_disk_on_an_unsupported_controller_is_not_dropped_silently(sim_session: Any) -> None:
    """Debian's simulator reported the controller and left the disk out of the spec."""
    ovf = export_ovf(second_disk=("20", "0"),
                     extra_items=controller_item("20", "vmware.usb.xhci"))
    messages = errors_of(import_spec(sim_session, ovf))
    assert len(messages) == 2 and "Parent '20' is not a supported controller" in messages[1]


# ---------------------------------------------------------------- through ovapipe


def quiet(_label: str, total: int | None) -> Progress:
    return Progress("test", total, io.StringIO(), tty=False)


@pytest.mark.slow
def test_a_vcenter_export_with_sata_and_nvme_publishes_and_validates(
    simulator: Any, efi_vmdk: Path, tmp_path: Path
) -> None:
    """Done-when of issue 15: such an OVA imports through ovapipe's direct publish path,
    passes validate-ova, and the template passes validate-template (inside publish)."""
    disk = efi_vmdk.read_bytes()
    ova = make_ova(tmp_path / "export.ova", export_ovf(size=len(disk)), disk,
                   algorithm="sha1")
    report = validate_ova(ova)
    assert report.ok and report.findings == [], report.render()
    options = PublishOptions(ova=ova, datacenters=("DC0",), cluster="DC0_C0",
                             datastore="LocalDS_0", network="VM Network",
                             output_dir=tmp_path / "out", name="nvme-sata-node")
    [record] = [r.as_dict() for r in publish(options, simulator.connection, log=io.StringIO(),
                                             progress=quiet)]
    assert (record["vmx"], record["firmware"], record["snapshot"]) == ("vmx-17", "efi", "root")
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session

    with session(simulator.connection) as si:
        [vm] = [v for v in inventory.retrieve(si, vim.VirtualMachine,
                                              ["name", "config.hardware.device",
                                               "config.template"])
                if v.name == "nvme-sata-node"]
        types = {type(d) for d in vm.get("config.hardware.device")}
        assert vm.get("config.template") is True
    assert {vim.vm.device.VirtualAHCIController, vim.vm.device.VirtualNVMEController,
            vim.vm.device.VirtualLsiLogicSASController} <= types




# ---------------------------------------------------------------- SetField


def field_values(si: Any, obj: Any, key: int) -> list[tuple[str, str]]:
    """(property, value) of every value for ``key`` in customValue and value."""
    props = inventory.properties(si, obj, ["customValue", "value"])
    return [(name, v.value) for name in ("customValue", "value")
            for v in props.get(name, []) if v.key == key]


def test_set_field_keeps_one_value_per_key(sim_session: Any) -> None:
    from pyVmomi import vim

    content = sim_session.RetrieveContent()
    manager = content.customFieldsManager
    key = manager.AddCustomFieldDef(name="strict.holder", moType=vim.Folder).key
    other = manager.AddCustomFieldDef(name="strict.other", moType=vim.Folder).key
    folder = content.rootFolder.CreateFolder("strict-fields")
    manager.SetField(entity=folder, key=other, value="untouched")
    for value in ("first", "second", "third"):
        manager.SetField(entity=folder, key=key, value=value)
    assert field_values(sim_session, folder, key) == [("customValue", "third"),
                                                      ("value", "third")]
    assert field_values(sim_session, folder, other) == [("customValue", "untouched"),
                                                        ("value", "untouched")]


def test_set_custom_value_on_a_vm_replaces_too(sim_session: Any) -> None:
    from pyVmomi import vim

    manager = sim_session.RetrieveContent().customFieldsManager
    key = manager.AddCustomFieldDef(name="strict.owner", moType=vim.VirtualMachine).key
    vm = inventory.retrieve(sim_session, vim.VirtualMachine, ["name"])[0].obj
    vm.setCustomValue(key="strict.owner", value="a")
    vm.setCustomValue(key="strict.owner", value="b")
    assert field_values(sim_session, vm, key) == [("customValue", "b"), ("value", "b")]


def test_set_field_refuses_what_vcenter_refuses(sim_session: Any) -> None:
    from pyVmomi import vim, vmodl

    content = sim_session.RetrieveContent()
    manager = content.customFieldsManager
    key = manager.AddCustomFieldDef(name="strict.folders", moType=vim.Folder).key
    vm = inventory.retrieve(sim_session, vim.VirtualMachine, ["name"])[0].obj
    with pytest.raises(vmodl.fault.InvalidArgument):
        manager.SetField(entity=content.rootFolder, key=key + 1000, value="x")
    with pytest.raises(vmodl.fault.InvalidArgument):
        manager.SetField(entity=vm, key=key, value="x")  # a Folder field on a VM
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        manager.SetField(entity=vim.Folder("group-v-gone", sim_session._stub), key=key,
                         value="x")


def test_set_field_needs_a_login(simulator: Any) -> None:
    """The call answered before Debian's dispatch keeps Debian's session check."""
    from pyVmomi import SoapStubAdapter, vim

    from ovapipe.vsphere.connect import pinned_context, session

    conn = simulator.connection
    with session(conn) as si:
        content = si.RetrieveContent()
        key = content.customFieldsManager.AddCustomFieldDef(name="strict.login",
                                                           moType=vim.Folder).key
        manager_id, root_id = content.customFieldsManager._moId, content.rootFolder._moId
    stub = SoapStubAdapter(host=conn.host, port=conn.port, sslContext=pinned_context(conn))
    anonymous = vim.CustomFieldsManager(manager_id, stub)
    try:
        with pytest.raises(vim.fault.NotAuthenticated):
            anonymous.SetField(entity=vim.Folder(root_id, stub), key=key, value="x")
    finally:
        stub.DropConnections()


# ---------------------------------------------------------------- lease timeouts


def lease_state(si: Any, lease: Any) -> tuple[str, Any]:
    props = inventory.properties(si, lease, ["state", "error"])
    return props["state"], props.get("error")


def new_lease(si: Any, name: str) -> Any:
    result = import_spec(si, export_ovf(second_disk=None), name)
    assert errors_of(result) == []
    return cluster_pool(si).ImportVApp(result.importSpec)


def keep_alive_until(si: Any, alive: Any, until_error: Any) -> None:
    """Report progress on ``alive`` until ``until_error`` (never reported on) timed out."""
    import time

    deadline = time.monotonic() + 60
    while lease_state(si, until_error)[0] != "error":
        assert time.monotonic() < deadline, "the lease without progress never timed out"
        alive.HttpNfcLeaseProgress(percent=10)
        time.sleep(0.1)  # poll interval while waiting for the other lease's timeout


def test_a_lease_without_progress_times_out_and_one_with_progress_lives(
    make_simulator: Callable[..., Any]
) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session

    simulator = make_simulator(lease_timeout=1.0)
    with session(simulator.connection) as si:
        idle = new_lease(si, "lease-idle")
        kept = new_lease(si, "lease-kept")
        info = ready_lease_info(si, idle)
        assert info.leaseTimeout == 1
        [url] = [u.url for u in info.deviceUrl if u.disk]
        keep_alive_until(si, kept, idle)
        # ... and past its own first timeout too: a lease made now must time out first.
        keep_alive_until(si, kept, new_lease(si, "lease-clock"))
        assert lease_state(si, kept)[0] == "ready"

        state, error = lease_state(si, idle)
        assert state == "error" and isinstance(error, vim.fault.Timedout)
        assert "The lease timed out: no progress was reported for 1s" in error.msg
        with pytest.raises(vim.fault.Timedout):
            idle.HttpNfcLeaseProgress(percent=50)
        with pytest.raises(vim.fault.Timedout):
            idle.HttpNfcLeaseComplete()
        with pytest.raises(vim.fault.InvalidState):
            idle.HttpNfcLeaseAbort()
        http = PinnedHTTPSConnection(simulator.connection.host, simulator.connection.port,
                                     simulator.connection)
        try:
            http.request("GET", "/" + url.split("/", 3)[3])
            assert http.getresponse().status == 404
        finally:
            http.close()
        kept.HttpNfcLeaseComplete()
    assert "timed out after 1s without progress" in simulator.log_text()


def test_a_completed_lease_does_not_time_out(make_simulator: Callable[..., Any]) -> None:
    from ovapipe.vsphere.connect import session

    simulator = make_simulator(lease_timeout=0.5)
    with session(simulator.connection) as si:
        done = new_lease(si, "lease-done")
        ready_lease_info(si, done)
        done.HttpNfcLeaseComplete()
        keep_alive_until(si, new_lease(si, "lease-kept"), new_lease(si, "lease-clock"))
    assert simulator.log_text().count("timed out after") == 1  # the clock lease only


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan"), 1e9])
def test_a_bad_lease_timeout_is_a_usage_error(seconds: float) -> None:
    from ovapipe.errors import ConfigError
    from ovapipe.simulator import SimulatorOptions

    with pytest.raises(ConfigError, match="--lease-timeout"):
        SimulatorOptions(lease_timeout=seconds).check()


def test_the_simulator_itself_refuses_a_bad_lease_timeout(simulator_binary: Path) -> None:
    import subprocess

    result = subprocess.run([str(simulator_binary), "--lease-timeout", "0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--lease-timeout 0: expected 0.1 to 86400 seconds" in result.stderr
