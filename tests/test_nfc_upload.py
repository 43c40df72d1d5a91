"""The simulator's NFC upload handler: full-buffer writes, and a cut-off body is no upload."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from test_simulator import OVF_TEMPLATE, cluster_pool, export_disks, ready_lease_info

from ovapipe.vsphere import inventory
from ovapipe.vsphere.connect import PinnedHTTPSConnection

pytestmark = pytest.mark.simulator


def _lease(si: Any, name: str) -> tuple[Any, Any]:
    from pyVmomi import vim

    content = si.RetrieveContent()
    pool = cluster_pool(si)
    datastore = inventory.retrieve(si, vim.Datastore, ["name"])[0].obj
    result = content.ovfManager.CreateImportSpec(
        OVF_TEMPLATE.replace("{name}", name), pool, datastore,
        vim.OvfManager.CreateImportSpecParams(entityName=name))
    lease = pool.ImportVApp(result.importSpec)
    return lease, ready_lease_info(si, lease)


def _post(simulator: Any, url: str, length: int, body: bytes) -> PinnedHTTPSConnection:
    conn = simulator.connection
    http = PinnedHTTPSConnection(conn.host, conn.port, conn)
    http.putrequest("POST", "/" + url.split("/", 3)[3])
    http.putheader("Content-Type", "application/x-vnd.vmware-streamVmdk")
    http.putheader("Content-Length", str(length))
    http.endheaders()
    http.send(body)
    return http


def test_odd_sized_upload_arrives_whole(simulator: Any, sim_session: Any) -> None:
    body = os.urandom(3 * (1 << 20) + 12345)  # not a multiple of the 1 MiB copy buffer
    lease, info = _lease(sim_session, "odd")
    (url,) = [u.url for u in info.deviceUrl if u.disk]
    http = _post(simulator, url, len(body), body)
    assert http.getresponse().status == 200
    http.close()
    lease.HttpNfcLeaseComplete()
    assert export_disks(sim_session, simulator.connection, info.entity) == [body]


def test_a_body_cut_short_is_a_failed_upload(simulator: Any, sim_session: Any) -> None:
    lease, info = _lease(sim_session, "cut")
    (url,) = [u.url for u in info.deviceUrl if u.disk]
    http = _post(simulator, url, 4 << 20, os.urandom(3 << 19))
    http.close()  # the client dies before the last byte
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = simulator.log_text()
        if "failed after" in log or "stored" in log:
            break
        time.sleep(0.05)
    lines = [line for line in log.splitlines() if "nfc POST" in line and "/cut/" in line]
    assert len(lines) == 1 and "failed after" in lines[0], lines
    lease.HttpNfcLeaseAbort()

