"""The simulator's separate datacenters and its content library (vAPI), over pinned HTTPS."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_simulator import OVF_TEMPLATE, small_vmdk  # noqa: F401 (fixture)

from ovapipe.errors import ConfigError
from ovapipe.simulator import SimulatorOptions
from ovapipe.vsphere import inventory
from ovapipe.vsphere.connect import session
from ovapipe.vsphere.library import content
from ovapipe.vsphere.library.rest import RestError, RestSession, rest_session

pytestmark = pytest.mark.simulator

NVIDIA, TESLA_T4 = 0x10DE, 0x1EB8


@pytest.fixture
def three_dc(make_simulator: Callable[..., Any]) -> Any:
    return make_simulator(datacenters=3, clusters=2, cluster_hosts=2, hosts=0)


def test_each_datacenter_has_its_own_inventory_and_gpus(three_dc: Any) -> None:
    from pyVmomi import vim

    with session(three_dc.connection) as si:
        datacenters = sorted(d.name for d in inventory.retrieve(si, vim.Datacenter, ["name"]))
        clusters = sorted(c.name for c in inventory.retrieve(
            si, vim.ClusterComputeResource, ["name"]))
        hosts = {h.name: h for h in inventory.retrieve(si, vim.HostSystem,
                                                       ["name", "hardware.pciDevice"])}
        stores = inventory.retrieve(si, vim.Datastore, ["name", "info.url"])
    assert datacenters == ["DC0", "DC1", "DC2"]
    assert clusters == [f"DC{d}_C{c}" for d in range(3) for c in range(2)]
    assert sorted(hosts) == sorted(f"DC{d}_C{c}_H{h}" for d in range(3) for c in range(2)
                                   for h in range(2))
    assert len({ds.get("info.url") for ds in stores}) == 3  # one LocalDS_0 folder each
    for name, host in hosts.items():
        t4s = [p for p in host.get("hardware.pciDevice", [])
               if (p.vendorId & 0xFFFF, p.deviceId & 0xFFFF) == (NVIDIA, TESLA_T4)]
        assert len(t4s) == (1 if "_C0_" in name else 0), name


@pytest.mark.parametrize("changes, problem", [
    ({"datacenters": 0}, "--datacenters 0: expected 1 to 16"),
    ({"datacenters": 17}, "--datacenters 17: expected 1 to 16"),
    ({"cluster_hosts": 0}, "--cluster-hosts 0"),
    ({"clusters": 0, "hosts": 0}, "a datacenter needs at least one host"),
])
def test_bad_inventory_counts_are_refused(changes: dict[str, int], problem: str) -> None:
    options = SimulatorOptions(**changes)  # type: ignore[arg-type]
    assert any(problem in p for p in options.problems())
    with pytest.raises(ConfigError, match=problem.split(":")[0]):
        options.check()


def test_the_binary_refuses_a_count_out_of_range(simulator_binary: Path) -> None:
    import subprocess

    result = subprocess.run([str(simulator_binary), "--datacenters", "17"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--datacenters 17: expected 1 to 16" in result.stderr


def _library_on(api: RestSession, si: Any, datacenter: str) -> str:
    from pyVmomi import vim

    [dc] = [d for d in inventory.retrieve(si, vim.Datacenter, ["name", "datastore"])
            if d.name == datacenter]
    return content.create_local_library(api, "L", dc.get("datastore")[0]._moId,
                                        published=False, description="test")


def _put(api: RestSession, url: str, session_id: str, data: bytes) -> int:
    from urllib.parse import urlsplit

    status, _body = api._send("PUT", urlsplit(url).path, data,
                              {"vmware-api-session-id": session_id,
                               "Content-Length": str(len(data))})
    return status


def test_an_upload_is_checked_against_its_checksum(simulator: Any, sim_session: Any) -> None:
    with rest_session(simulator.connection) as api:
        library = _library_on(api, sim_session, "DC0")
        item = content.create_item(api, library, "node", "")
        bad = content.create_update_session(api, item)
        wrong = hashlib.sha256(b"something else").hexdigest()
        added = content.add_file(api, bad, "a.ovf", 5, ("SHA256", wrong))
        assert _put(api, added.upload_url, bad, b"hello") == 400
        with pytest.raises(RestError, match="SHA256 of the received bytes"):
            content.end_update_session(api, bad, "complete")

        good = content.create_update_session(api, item)
        added = content.add_file(api, good, "a.ovf", 5,
                                 ("SHA256", hashlib.sha256(b"hello").hexdigest()))
        assert _put(api, added.upload_url, good, b"hello") == 200
        content.end_update_session(api, good, "complete")
        found = content.get_update_session(api, good)
        assert found is not None and found.state == "DONE"
        with pytest.raises(RestError, match="not one of SHA1"):
            content.add_file(api, good, "b.ovf", 1, ("CRC32", "00"))
    assert "a.ovf verified (SHA256)" in simulator.log_text()


def test_deploy_gives_the_vm_the_items_disk_and_annotation(
        three_dc: Any, small_vmdk: Path) -> None:  # noqa: F811 (fixture)
    from pyVmomi import vim

    descriptor = OVF_TEMPLATE.format(name="node").encode()
    disk = small_vmdk.read_bytes()
    with session(three_dc.connection) as si, rest_session(three_dc.connection) as api:
        library = _library_on(api, si, "DC0")
        item = content.create_item(api, library, "node", "")
        upload = content.create_update_session(api, item)
        for name, data in (("node.ovf", descriptor), ("disk.vmdk", disk)):
            added = content.add_file(api, upload, name, len(data),
                                     ("SHA1", hashlib.sha1(data).hexdigest()))
            assert _put(api, added.upload_url, upload, data) == 200
        content.end_update_session(api, upload, "complete")

        [dc] = [d for d in inventory.retrieve(si, vim.Datacenter,
                                              ["name", "datastore", "vmFolder", "network"])
                if d.name == "DC2"]
        [cluster] = [c for c in inventory.retrieve(si, vim.ClusterComputeResource,
                                                   ["name", "resourcePool"])
                     if c.name == "DC2_C0"]
        target = content.DeployTarget(cluster.get("resourcePool")._moId,
                                      dc.get("vmFolder")._moId, dc.get("datastore")[0]._moId, ())
        vm_id = content.deploy_item(api, item, "deployed", "marked from birth\n", target)
        vm = vim.VirtualMachine(vm_id, si._stub)
        props = inventory.properties(si, vm, ["config.annotation", "config.hardware.device",
                                              "parent"])
        [ds] = inventory.retrieve(si, vim.Datastore, ["info.url"], dc.obj)
    assert props["config.annotation"] == "marked from birth\n"
    assert props["parent"]._moId == dc.get("vmFolder")._moId  # in DC2, not DC0
    [backing] = [d.backing.fileName for d in props["config.hardware.device"]
                 if isinstance(d, vim.vm.device.VirtualDisk)]
    datastore_path = backing.split("] ", 1)[1]
    assert (Path(ds.get("info.url")) / datastore_path).read_bytes() == disk


def test_the_api_spelling_answers_like_rest(simulator: Any, sim_session: Any) -> None:
    """/api/session, /api/content/... and /api/vcenter/ovf/library-item: bare JSON values,
    ?action=, bodies without the /rest wrapper, errors as error_type."""
    import base64
    import json

    from pyVmomi import vim

    api = RestSession(simulator.connection)
    conn = simulator.connection

    def call(method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, answer = api._send(method, path, data, {
            "Content-Type": "application/json", **(headers or {})})
        return status, json.loads(answer) if answer.strip() else None

    login = base64.b64encode(f"{conn.username}:{conn.password}".encode()).decode()
    status, session_id = call("POST", "/api/session", headers={"Authorization": f"Basic {login}"})
    assert status == 201
    assert isinstance(session_id, str) and session_id
    auth = {"vmware-api-session-id": session_id}
    [dc] = inventory.retrieve(sim_session, vim.Datacenter, ["datastore"])
    status, library = call("POST", "/api/content/local-library", {
        "name": "A", "type": "LOCAL", "storage_backings": [
            {"type": "DATASTORE", "datastore_id": dc.get("datastore")[0]._moId}]}, auth)
    assert status == 200 and isinstance(library, str)
    assert call("POST", "/api/content/library?action=find", {"name": "A"}, auth) == (
        200, [library])
    status, got = call("GET", f"/api/content/library/{library}", headers=auth)
    assert got["name"] == "A" and got["id"] == library
    status, item = call("POST", "/api/content/library/item",
                        {"library_id": library, "name": "node", "type": "ovf"}, auth)
    assert status == 200 and isinstance(item, str)
    status, upload = call("POST", "/api/content/library/item/update-session",
                          {"library_item_id": item}, auth)
    status, added = call("POST", f"/api/content/library/item/updatesession/file/{upload}"
                         "?action=add", {"name": "a.ovf", "source_type": "PUSH"}, auth)
    assert status == 200 and added["upload_endpoint"]["uri"].startswith("https://")
    assert call("POST", f"/api/content/library/item/update-session/{upload}?action=cancel",
                headers=auth)[0] == 204
    assert call("PATCH", f"/api/content/library/item/{item}", {"description": "d"},
                auth)[0] == 204
    assert call("GET", f"/api/content/library/item/{item}", headers=auth)[1][
        "description"] == "d"
    assert call("DELETE", f"/api/content/library/item/{item}", headers=auth)[0] == 204
    status, error = call("GET", f"/api/content/library/item/{item}", headers=auth)
    assert status == 404 and "error_type" in error
    assert call("GET", "/api/content/library", headers={})[0] == 401
    assert call("DELETE", "/api/session", headers=auth)[0] == 204
    api.close_connection()


def test_gpu_discovery_and_placement_stay_in_their_datacenter(three_dc: Any) -> None:
    from ovapipe.vsphere.gpus import list_gpus
    from ovapipe.vsphere.placement import PlacementRequest, resolve_placement

    with session(three_dc.connection) as si:
        for datacenter in ("DC0", "DC1", "DC2"):
            found = list_gpus(si, datacenter, "*_C0")
            assert sorted(h.name for h in found.hosts) == [
                f"{datacenter}_C0_H{n}" for n in range(2)]
            for host in found.hosts:
                [t4] = [d for d in host.devices if d.vendor_hex == "10de"]
                assert (t4.vendor_hex, t4.device_hex, t4.active) == ("10de", "1eb8", True)
            assert list_gpus(si, datacenter, "*_C1").summary == []
            placement = resolve_placement(si, PlacementRequest(
                datacenter, "*_C0", None, "LocalDS_0", None, "VM Network"), [])
            assert placement.compute.name == f"{datacenter}_C0"
            # The simulator names each datastore's folder after its datacenter.
            assert f"govcsim-{datacenter}-LocalDS_0-" in placement.datastore.obj._moId


def test_rest_session_keeps_its_id_out_of_urls_and_errors(simulator: Any) -> None:
    from ovapipe.vsphere.library.rest import NotFound

    with rest_session(simulator.connection) as api:
        secret = api.session_id
        with pytest.raises(NotFound) as missing:
            api.request("GET", f"{content.ITEM}/id:no-such-item")
        assert secret not in str(missing.value)
        assert "HTTP 404" in str(missing.value)
    assert secret not in simulator.log_text()
    wrong = dataclasses.replace(simulator.connection, password="wrong")
    with pytest.raises(ConfigError, match="REST login failed for user"), rest_session(wrong):
        pass


def test_a_server_that_never_answers_times_out(simulator: Any) -> None:
    import socket

    from ovapipe.errors import VSphereError

    with socket.create_server(("127.0.0.1", 0)) as trap:  # accepts, never answers
        silent = dataclasses.replace(simulator.connection, port=trap.getsockname()[1],
                                     timeout=1.0)
        with pytest.raises(VSphereError, match="within 1s"):
            RestSession(silent).login()
