"""Lease transfers against a local pinned-TLS NFC stand-in (no simulator needed)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ovapipe.config import Connection
from ovapipe.errors import ConfigError, VSphereError
from ovapipe.ova.archive import Member as ArchiveMember
from ovapipe.ova.manifest import ManifestEntry
from ovapipe.progress import Progress
from ovapipe.vsphere import lease as lease_mod
from ovapipe.vsphere.connect import certificate_thumbprint
from ovapipe.vsphere.lease import (
    BLOCK_SIZE,
    DISK_CONTENT_TYPE,
    DigestMismatch,
    KeepAlive,
    Target,
    hold_lease,
    resolve_target,
    session_cookie,
    upload,
)
from ovapipe.vsphere.ovapass import OvaPass


@dataclass(frozen=True)
class Source:
    """``size`` bytes of ``path`` from ``offset``: a member inside an archive."""

    path: Path
    offset: int
    size: int


Member = tuple[Source, bytes]


def upload_range(target: Target, source: Source, *, create: bool, progress: Progress,
                 expected: ManifestEntry | None = None) -> None:
    """``upload`` of one range of a file, streamed by the OVA reader the publish path uses."""
    member = ArchiveMember(target.name, source.offset, source.size)
    with OvaPass(source.path, source.path.stat().st_size, [(member, expected)],
                 whole_file_sha256=False) as ova:
        upload(target, ova.stream(0), create=create, progress=progress)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body_length: int
    sha256: str
    complete: bool


@dataclass
class NfcServer:
    port: int
    connection: Connection
    received: list[Received] = field(default_factory=list)
    drop_after: int | None = None
    status: int = 200
    serve_bytes: bytes = b""


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cert")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True,
    )
    return key, cert


@pytest.fixture
def nfc(certificate: tuple[Path, Path]) -> Iterator[NfcServer]:
    key, cert = certificate
    state: dict[str, NfcServer] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _receive(self) -> None:
            server = state["server"]
            length = int(self.headers.get("Content-Length", "0"))
            digest = hashlib.sha256()
            got = 0
            while got < length:
                if server.drop_after is not None and got >= server.drop_after:
                    server.received.append(Received(self.command, self.path, dict(self.headers),
                                                    got, digest.hexdigest(), False))
                    self.connection.close()
                    return
                chunk = self.rfile.read(min(1 << 16, length - got))
                if not chunk:
                    break
                digest.update(chunk)
                got += len(chunk)
            server.received.append(Received(self.command, self.path, dict(self.headers), got,
                                            digest.hexdigest(), got == length))
            self.send_response(server.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = _receive
        do_PUT = _receive

        def do_GET(self) -> None:
            data = state["server"].serve_bytes
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # clients that stop mid-request are what these tests are about

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    port = httpd.server_address[1]
    connection = Connection("127.0.0.1", port, "user", "pass", certificate_thumbprint(der))
    state["server"] = NfcServer(port, connection)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state["server"]
    httpd.shutdown()
    httpd.server_close()


def device_url(url: str = "https://*/nfc/52a1/disk-0.vmdk", disk: bool = True,
               import_key: str = "/vm/VirtualLsiLogicController0:0") -> SimpleNamespace:
    return SimpleNamespace(url=url, key="/vm-1/disk:0", importKey=import_key,
                           targetId="disk-0.vmdk", disk=disk, sslThumbprint=None, fileSize=None)


def quiet(total: int | None) -> Progress:
    return Progress("test", total, io.StringIO(), tty=False)


@pytest.fixture
def member(tmp_path: Path) -> Member:
    """A 'member' of 2.5 MiB in the middle of a bigger file."""
    payload = os.urandom(BLOCK_SIZE * 2 + BLOCK_SIZE // 2)
    path = tmp_path / "archive.ova"
    path.write_bytes(b"H" * 512 + payload + b"T" * 1024)
    return Source(path, 512, len(payload)), payload


def test_star_host_becomes_the_vcenter_and_keeps_its_pin() -> None:
    connection = Connection("vc.example.com", 443, "u", "p", "AA:" * 19 + "AA")
    target = resolve_target(device_url(), connection, None)
    assert target.url == "https://vc.example.com/nfc/52a1/disk-0.vmdk"
    assert target.connection == connection
    sim = Connection("127.0.0.1", 8989, "u", "p", "AA:" * 19 + "AA")
    assert resolve_target(device_url(), sim, None).url == "https://127.0.0.1:8989/nfc/52a1/disk-0.vmdk"


def test_esxi_host_urls_are_pinned_by_the_lease_thumbprint() -> None:
    connection = Connection("vc.example.com", 443, "u", "p", "AA:" * 19 + "AA")
    url = device_url("https://esx1.example.com/nfc/52a1/disk-0.vmdk")
    url.sslThumbprint = "bb" * 20
    target = resolve_target(url, connection, None)
    assert target.connection.host == "esx1.example.com"
    assert target.connection.thumbprint == "BB:" * 19 + "BB"


def test_session_cookie_keeps_only_name_and_value() -> None:
    service = SimpleNamespace(_stub=SimpleNamespace(
        cookie='vmware_soap_session="52b0-secret"; Path=/; HttpOnly; Secure;'))
    assert session_cookie(service) == 'vmware_soap_session="52b0-secret"'
    assert session_cookie(SimpleNamespace()) is None


def test_disk_upload_streams_the_member_by_post(nfc: NfcServer, member: Member) -> None:
    source, payload = member
    target = resolve_target(device_url(), nfc.connection, "vmware_soap_session=abc")
    progress = quiet(source.size)
    upload_range(target, source, create=False, progress=progress,
                 expected=ManifestEntry("disk-0.vmdk", "SHA256",
                                        hashlib.sha256(payload).hexdigest()))
    [got] = nfc.received
    assert got.method == "POST" and got.path == "/nfc/52a1/disk-0.vmdk"
    assert got.headers["Content-Type"] == DISK_CONTENT_TYPE
    assert got.headers["Content-Length"] == str(len(payload))
    assert got.headers["Cookie"] == "vmware_soap_session=abc"
    assert got.complete and got.sha256 == hashlib.sha256(payload).hexdigest()
    assert progress.done == len(payload)


def test_create_items_are_put(nfc: NfcServer, tmp_path: Path) -> None:
    path = tmp_path / "nvram"
    path.write_bytes(b"nvram" * 100)
    target = resolve_target(device_url(disk=False), nfc.connection, None)
    upload_range(target, Source(path, 0, 500), create=True, progress=quiet(500),
                 expected=ManifestEntry("nvram", "SHA1", hashlib.sha1(b"nvram" * 100).hexdigest()))
    [got] = nfc.received
    assert got.method == "PUT" and got.complete
    assert got.headers["Content-Type"] == "application/octet-stream"


def test_digest_mismatch_stops_before_the_last_block(
    nfc: NfcServer, member: Member
) -> None:
    source, _ = member
    target = resolve_target(device_url(), nfc.connection, None)
    with pytest.raises(DigestMismatch, match=r"disk-0.vmdk: SHA256 .* manifest says 00"):
        upload_range(target, source, create=False, progress=quiet(source.size),
                     expected=ManifestEntry("disk-0.vmdk", "SHA256", "00" * 32))
    assert all(not got.complete for got in nfc.received)


def test_dropped_connection_is_a_clear_error(nfc: NfcServer, member: Member) -> None:
    source, _ = member
    nfc.drop_after = BLOCK_SIZE
    target = resolve_target(device_url(), nfc.connection, None)
    dropped = r"upload of disk-0.vmdk failed \((after \d+ of|all) \d+ bytes"
    with pytest.raises(VSphereError, match=dropped):
        upload_range(target, source, create=False, progress=quiet(source.size))


def test_server_refusal_names_the_status(nfc: NfcServer, member: Member) -> None:
    source, _ = member
    nfc.status = 500
    target = resolve_target(device_url(), nfc.connection, None)
    with pytest.raises(VSphereError, match="refused: HTTP 500"):
        upload_range(target, source, create=False, progress=quiet(source.size))


def test_wrong_pin_sends_nothing(nfc: NfcServer, member: Member) -> None:
    source, _ = member
    wrong = Connection("127.0.0.1", nfc.port, "u", "p", "AB:" * 19 + "AB")
    with pytest.raises(ConfigError, match="does not match"):
        upload_range(resolve_target(device_url(), wrong, None), source, create=False,
               progress=quiet(source.size))
    assert nfc.received == []


def test_ctrl_c_from_progress_propagates(nfc: NfcServer, member: Member) -> None:
    source, _ = member

    class Interrupting(Progress):
        def advance(self, count: int) -> None:
            raise KeyboardInterrupt

    target = resolve_target(device_url(), nfc.connection, None)
    with pytest.raises(KeyboardInterrupt):
        upload_range(target, source, create=False,
               progress=Interrupting("t", source.size, io.StringIO(), tty=False))
    assert not any(t.name.startswith("ova-") for t in threading.enumerate())


def test_download_streams_and_hashes(nfc: NfcServer) -> None:
    nfc.serve_bytes = os.urandom(3 * BLOCK_SIZE + 7)
    target = resolve_target(device_url(), nfc.connection, None)
    out = io.BytesIO()
    result = lease_mod.download(target, out, progress=quiet(None))
    assert out.getvalue() == nfc.serve_bytes
    assert result.size == len(nfc.serve_bytes)
    assert result.sha256 == hashlib.sha256(nfc.serve_bytes).hexdigest()


class FakeLease:
    def __init__(self, state: str = "ready", fail_progress: bool = False) -> None:
        self.state = state
        self.calls: list[str] = []
        self.fail_progress = fail_progress
        self.info = SimpleNamespace(deviceUrl=[device_url()], leaseTimeout=2)

    def HttpNfcLeaseProgress(self, percent: int) -> None:
        self.calls.append(f"progress {percent}")
        if self.fail_progress:
            raise RuntimeError("The object 'vim.HttpNfcLease:lease-1' has already been deleted")

    def HttpNfcLeaseComplete(self) -> None:
        self.calls.append("complete")

    def HttpNfcLeaseAbort(self, fault: Any = None) -> None:
        self.calls.append("abort")


@pytest.fixture
def fake_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    def properties(_service: Any, lease: FakeLease, _paths: Any) -> dict[str, Any]:
        error = SimpleNamespace(localizedMessage="Host DC0_H0 is not responding")
        return {"state": lease.state, "error": error, "info": lease.info}

    monkeypatch.setattr("ovapipe.vsphere.inventory.properties", properties)


def test_lease_completes_on_success(fake_properties: None, nfc: NfcServer) -> None:
    lease = FakeLease()
    with hold_lease(object(), lease, nfc.connection, quiet(10)) as held:
        assert held.target("/vm/VirtualLsiLogicController0:0").url.endswith("/disk-0.vmdk")
    assert lease.calls[-2:] == ["progress 100", "complete"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_lease_aborts_on_any_error(fake_properties: None, nfc: NfcServer,
                                   error: type[BaseException]) -> None:
    lease = FakeLease()
    with pytest.raises(error), hold_lease(object(), lease, nfc.connection, quiet(10)):
        raise error()
    assert lease.calls[-1] == "abort" and "complete" not in lease.calls


def test_lease_in_error_state_names_the_fault(fake_properties: None, nfc: NfcServer) -> None:
    lease = FakeLease(state="error")
    with pytest.raises(VSphereError, match="the lease failed: Host DC0_H0 is not responding"), \
            hold_lease(object(), lease, nfc.connection, quiet(10)):
        pass
    assert lease.calls == ["abort"]


def test_unknown_import_key_lists_what_the_lease_has(fake_properties: None, nfc: NfcServer) -> None:
    with pytest.raises(VSphereError, match="no device URL for /x/disk:9; it has: /vm/Virtual"), \
            hold_lease(object(), FakeLease(), nfc.connection, quiet(10)) as held:
        held.target("/x/disk:9")


def test_keepalive_reports_progress_and_notices_a_server_abort() -> None:
    progress = quiet(200)
    progress.done = 100
    lease = FakeLease()
    keepalive = KeepAlive(lease, progress, interval=0.05)
    keepalive.start()
    while not lease.calls:
        threading.Event().wait(0.01)
    assert lease.calls[0] == "progress 50"
    lease.fail_progress = True
    while keepalive.error is None:
        threading.Event().wait(0.01)
    keepalive.stop()
    with pytest.raises(VSphereError, match="the lease was aborted or timed out on the server side"):
        keepalive.check()


def test_keepalive_interval_is_well_inside_the_timeout() -> None:
    assert KeepAlive.interval_for(300) == 10
    assert KeepAlive.interval_for(8) == 2
    assert KeepAlive.interval_for(None) == 10


@pytest.mark.parametrize(("lease_gone", "message"), [
    (True, "the lease was aborted or timed out on the server side: The object"),
    (False, "refused: HTTP 404"),
])
def test_a_refused_upload_names_a_lease_the_server_ended(
    fake_properties: None, nfc: NfcServer, member: Member, lease_gone: bool,
    message: str,
) -> None:
    """vCenter answers 404 once it aborted a lease; the user must learn that, not the 404."""
    source, _ = member
    nfc.status = 404
    lease = FakeLease()
    with pytest.raises(VSphereError, match=message), \
            hold_lease(object(), lease, nfc.connection, quiet(source.size)) as held:
        lease.fail_progress = lease_gone
        target = held.target("/vm/VirtualLsiLogicController0:0")
        disk = ArchiveMember("disk-0.vmdk", source.offset, source.size)
        with OvaPass(source.path, source.path.stat().st_size, [(disk, None)],
                     whole_file_sha256=False) as ova:
            held.upload(target, ova.stream(0), create=False)
    assert lease.calls[-1] == "abort"


def test_fault_message_names_a_fault_without_text() -> None:
    from pyVmomi import vim, vmodl

    from ovapipe.vsphere.tasks import fault_message

    assert fault_message(vmodl.fault.NotSupported()) == "NotSupported"
    assert fault_message(vim.fault.InvalidState(msg="the VM is on")) == "InvalidState: the VM is on"
    wrapped = vmodl.LocalizedMethodFault(fault=vmodl.fault.NotSupported())
    assert fault_message(wrapped) == "NotSupported"
    assert fault_message(ConnectionResetError("reset by peer")) == "connection lost: reset by peer"
    assert fault_message(None) == "unknown error"


def test_fault_message_is_one_line_with_type_object_and_message() -> None:
    """Issue 12/13: faults printed as raw pyVmomi dumps (``FileAlreadyExists {...}``)."""
    from pyVmomi import vim, vmodl

    from ovapipe.vsphere.tasks import fault_message

    exists = vim.fault.FileAlreadyExists(file="[LocalDS_0] node/node.vmdk")
    assert fault_message(exists) == "FileAlreadyExists [LocalDS_0] node/node.vmdk"
    gone = vmodl.fault.ManagedObjectNotFound(obj=vim.VirtualMachine("vm-42"),
                                             msg="The object has\nalready been deleted")
    assert fault_message(gone) == \
        "ManagedObjectNotFound VirtualMachine:vm-42: The object has already been deleted"
    assert fault_message(TimeoutError("timed out")) == "no answer from the server (timed out)"


def test_an_unwrapped_vsphere_fault_fails_its_step_in_one_line() -> None:
    """Issue 12: faults reached the user as pyVmomi dumps (``FileAlreadyExists {...}``)."""
    from pyVmomi import vim

    from ovapipe.errors import StepFailed
    from ovapipe.steps import Run, Step, run_steps

    def create(_state: None, _run: Run) -> None:
        raise vim.fault.FileAlreadyExists(file="[LocalDS_0] node/node.vmx")

    with pytest.raises(StepFailed) as raised, open(os.devnull, "w") as sink:
        run_steps([Step("import", create)], None, run=Run(log=sink))
    assert raised.value.message == \
        "step 'import' failed: vCenter: FileAlreadyExists [LocalDS_0] node/node.vmx"
