"""publish --library against a simulator with three real datacenters (issue 15 Done-when).

One library item, three verified vmx-17/EFI templates with 'root' snapshots; a second run
changes nothing; an interrupted upload leaves no item and no update session.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_publish import Proxy, sigint_while_uploading

from ovapipe.config import Connection
from ovapipe.errors import Interrupted, OvapipeError
from ovapipe.progress import Progress
from ovapipe.vsphere.connect import session
from ovapipe.vsphere.library import content
from ovapipe.vsphere.library.rest import rest_session
from ovapipe.vsphere.publish import PublishOptions, publish, record_path

pytestmark = [pytest.mark.simulator, pytest.mark.slow]

NAME = "ubuntu-2004-efi-test"
DATACENTERS = ("DC0", "DC1", "DC2")


def quiet(_label: str, total: int | None) -> Progress:
    return Progress("test", total, io.StringIO(), tty=False)


def options(ova: Path, out: Path, **changes: Any) -> PublishOptions:
    base = PublishOptions(ova=ova, datacenters=DATACENTERS, cluster="*_C0",
                          datastore="LocalDS_0", network="VM Network", output_dir=out,
                          library="L", pipeline_id="site-a", concurrency=3)
    return replace(base, **changes)


def run(opts: PublishOptions, connection: Connection,
        progress: Callable[[str, int | None], Progress] = quiet) -> tuple[list[Any], str]:
    log = io.StringIO()
    records = publish(opts, connection, log=log, progress=progress)
    return records, log.getvalue()


def library_state(connection: Connection) -> tuple[list[content.Item], list[str]]:
    with rest_session(connection) as api:
        items = [item for lib in content.find_libraries(api, "L")
                 for item in content.list_items(api, lib.id)]
        sessions = content.list_update_sessions(api)
    return items, sessions


def templates(connection: Connection) -> dict[str, dict[str, Any]]:
    """Every VM named NAME, by the name of the datacenter holding it."""
    from ovapipe.vsphere.template import inventory_path, snapshot_names, vms_named

    with session(connection) as si:
        found = {}
        for vm in vms_named(si, NAME):
            path = inventory_path(si, vm.obj)
            found[path.split("/")[1]] = {**vm.props, "snapshots": snapshot_names(vm),
                                         "path": path}
        return found


@pytest.fixture
def three_dc(make_simulator: Callable[..., Any]) -> Any:
    return make_simulator(datacenters=3)


def test_one_item_three_templates_then_nothing(three_dc: Any, efi_ova: Path,
                                               tmp_path: Path) -> None:
    records, log = run(options(efi_ova, tmp_path), three_dc.connection)
    items, _sessions = library_state(three_dc.connection)
    assert [item.name for item in items] == [NAME]
    [item] = items
    assert "ovapipe.pipeline_id: site-a" in item.description
    assert "ovapipe.state" not in item.description  # complete: no run marker left
    found = templates(three_dc.connection)
    assert sorted(found) == list(DATACENTERS)
    for dc, template in found.items():
        assert template["config.version"] == "vmx-17"
        assert template["config.firmware"] == "efi"
        assert template["config.template"] is True
        assert template["snapshots"] == ["root"]
        assert template["path"] == f"/{dc}/vm/{NAME}"
    for record in records:
        assert record.library_item_id == item.id and record.library_id == item.library_id
        saved = json.loads(record_path(tmp_path, NAME, record.datacenter).read_text())
        assert saved["library_item_id"] == item.id
    assert log.count("uploaded") == 1  # the bytes left once, not once per datacenter

    again, log = run(options(efi_ova, tmp_path), three_dc.connection)
    assert "nothing to upload" in log
    assert [r.moref for r in again] == [r.moref for r in records]
    assert library_state(three_dc.connection)[0] == items
    assert sorted(templates(three_dc.connection)) == list(DATACENTERS)


def test_an_interrupted_upload_leaves_no_item_and_no_session(three_dc: Any, efi_ova: Path,
                                                              tmp_path: Path) -> None:
    class Interrupting(Progress):
        def advance(self, count: int) -> None:
            super().advance(count)
            if "library" in self.label and self.done > (1 << 20):
                raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run(options(efi_ova, tmp_path), three_dc.connection,
            progress=lambda label, total: Interrupting(label, total, io.StringIO(), tty=False))
    items, sessions = library_state(three_dc.connection)
    assert items == [] and sessions == []
    assert templates(three_dc.connection) == {}


def test_sigint_during_the_library_upload_exits_130_and_leaves_nothing(
        three_dc: Any, efi_ova: Path, tmp_path: Path) -> None:
    proxy = Proxy(three_dc.connection.port, throttle=0.05, signal_after=1 << 20)
    command = [sys.executable, "-m", "ovapipe", "publish", "--ova", str(efi_ova),
               "--library", "L", "--cluster", "*_C0", "--datastore", "LocalDS_0",
               "--network", "VM Network"]
    for dc in DATACENTERS:
        command += ["--datacenter", dc]
    err = sigint_while_uploading(command, {**three_dc.env, "INVOKE_OVAPIPE_OUTPUT": str(tmp_path)},
                                 proxy)
    assert "library-upload" in err and "Traceback" not in err
    items, sessions = library_state(three_dc.connection)
    assert items == [] and sessions == []
    assert templates(three_dc.connection) == {}


def test_an_item_holding_another_ova_is_refused(three_dc: Any, efi_ova: Path, tmp_path: Path,
                                                 build_facts: Any, efi_vmdk: Path) -> None:
    from ovapipe.ova import assemble_ova

    run(options(efi_ova, tmp_path, datacenters=("DC0",)), three_dc.connection)
    other = assemble_ova(tmp_path / "other", NAME, [efi_vmdk],
                         replace(build_facts, git_commit="1" * 40)).path
    with pytest.raises(OvapipeError, match="holds another OVA") as failure:
        run(options(other, tmp_path, datacenters=("DC1",)), three_dc.connection)
    assert failure.value.exit_code == 1
    assert sorted(templates(three_dc.connection)) == ["DC0"]


def test_publish_makes_the_library_published(three_dc: Any, efi_ova: Path,
                                             tmp_path: Path) -> None:
    _records, log = run(options(efi_ova, tmp_path, datacenters=("DC2",), library_publish=True),
                        three_dc.connection)
    with rest_session(three_dc.connection) as api:
        [library] = content.find_libraries(api, "L")
    assert library.published and library.publish_url
    assert f"subscribe other vCenters to {library.publish_url}" in log


def test_publish_flag_needs_a_library(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "ovapipe", "publish", "--ova",
                             str(tmp_path / "x.ova"), "--datacenter", "DC0", "--publish"],
                            cwd=root, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "INVOKE_OVAPIPE_LIBRARY": ""})
    assert result.returncode == 2
    assert "--publish needs --library NAME" in result.stderr


def test_a_dead_runs_half_made_item_is_removed_and_a_live_runs_left_alone(
        three_dc: Any, efi_ova: Path, tmp_path: Path) -> None:
    from ovapipe.vsphere.ownership import new_marker, with_marker

    dead = replace(new_marker(NAME), pid=2 ** 22 + 1, proc_start="1")  # no such process
    with rest_session(three_dc.connection) as api:
        library = content.create_local_library(api, "L", _datastore_of(three_dc, "DC0"),
                                               published=False, description="")
        stale = content.create_item(api, library, NAME, with_marker("half made\n", dead))
    _records, log = run(options(efi_ova, tmp_path, datacenters=("DC0",)), three_dc.connection)
    assert f"removed library item {NAME} ({stale})" in log
    [item] = library_state(three_dc.connection)[0]
    assert item.id != stale and "ovapipe.state" not in item.description

    live = new_marker(NAME)  # this very process: alive
    with rest_session(three_dc.connection) as api:
        content.delete_item(api, item.id)
        busy = content.create_item(api, library, NAME, with_marker("uploading\n", live))
    with pytest.raises(OvapipeError, match="is being uploaded by") as failure:
        run(options(efi_ova, tmp_path, datacenters=("DC1",)), three_dc.connection)
    assert failure.value.exit_code == 1
    assert [i.id for i in library_state(three_dc.connection)[0]] == [busy]


def _datastore_of(sim: Any, datacenter: str) -> str:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    with session(sim.connection) as si:
        [dc] = [d for d in retrieve(si, vim.Datacenter, ["name", "datastore"])
                if d.name == datacenter]
        return str(dc.get("datastore")[0]._moId)


def test_replace_swaps_the_item_and_the_templates(three_dc: Any, efi_ova: Path, tmp_path: Path,
                                                  build_facts: Any, efi_vmdk: Path) -> None:
    from ovapipe.ova import assemble_ova

    first, _log = run(options(efi_ova, tmp_path, datacenters=("DC0", "DC1")),
                      three_dc.connection)
    other = assemble_ova(tmp_path / "other", NAME, [efi_vmdk],
                         replace(build_facts, git_commit="1" * 40)).path
    second, log = run(options(other, tmp_path, datacenters=("DC0", "DC1"), replace=True),
                      three_dc.connection)
    assert "replaced library item" in log
    [item] = library_state(three_dc.connection)[0]
    assert item.name == NAME and item.id != first[0].library_item_id
    assert {r.library_item_id for r in second} == {item.id}
    assert {r.ova_sha256 for r in second} != {r.ova_sha256 for r in first}
    assert sorted(templates(three_dc.connection)) == ["DC0", "DC1"]


def test_a_vcenter_export_with_sata_and_nvme_publishes_through_the_library(
        three_dc: Any, efi_vmdk: Path, tmp_path: Path) -> None:
    """Done-when of issue 15, the library path: such an OVA becomes an item, and deploys as
    verified templates with its SATA, NVMe and LSI Logic SAS controllers."""
    from ovafactory import export_ovf, make_ova
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    disk = efi_vmdk.read_bytes()
    ova = make_ova(tmp_path / "export.ova", export_ovf(size=len(disk)), disk, algorithm="sha1")
    records, _log = run(options(ova, tmp_path, datacenters=("DC1", "DC2"),
                                name="nvme-sata-node"), three_dc.connection)
    assert [(r.vmx, r.firmware, r.snapshot) for r in records] == [("vmx-17", "efi", "root")] * 2
    with session(three_dc.connection) as si:
        found = [v for v in retrieve(si, vim.VirtualMachine, ["name", "config.hardware.device"])
                 if v.name == "nvme-sata-node"]
    assert len(found) == 2
    for vm in found:
        kinds = {type(d) for d in vm.get("config.hardware.device")}
        assert {vim.vm.device.VirtualAHCIController, vim.vm.device.VirtualNVMEController,
                vim.vm.device.VirtualLsiLogicSASController} <= kinds
