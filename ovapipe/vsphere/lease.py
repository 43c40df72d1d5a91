"""HttpNfcLease transfers: wait until ready, keep alive, complete or abort, stream bytes.

Split like govc's importer: reading the archive and creating the import spec live elsewhere;
this module only knows leases, their device URLs and how to move bytes to and from them.

    with hold_lease(service, lease, connection, progress) as held:
        for item in file_items:
            held.upload(held.target(item.deviceId), stream_for(item), create=item.create)

Leaving the block completes the lease; any error or Ctrl-C aborts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import IO, Any, Final, Protocol
from urllib.parse import urlsplit

from ovapipe.config import Connection, normalize_thumbprint
from ovapipe.errors import CheckFailed, VSphereError
from ovapipe.progress import Progress
from ovapipe.vsphere.connect import PinnedHTTPSConnection
from ovapipe.vsphere.tasks import fault_message

BLOCK_SIZE: Final = 1 << 20
DISK_CONTENT_TYPE: Final = "application/x-vnd.vmware-streamVmdk"
FILE_CONTENT_TYPE: Final = "application/octet-stream"
SESSION_COOKIE: Final = "vmware_soap_session"
LEASE_ENDED: Final = "the lease was aborted or timed out on the server side"
SERVER_GONE: Final = "the server stopped answering during the transfer (it went away or hangs)"


def lease_ended(exc: BaseException) -> str:
    """Why a lease call failed: the server ended the lease, or the server itself is gone.

    A vSphere fault is the server's answer; a connection error or timeout means no answer,
    and must not read as if vCenter had decided to abort.
    """
    if isinstance(exc, OSError | http.client.HTTPException):
        return f"{SERVER_GONE}: {fault_message(exc)}"
    return f"{LEASE_ENDED}: {fault_message(exc)}"


class DigestMismatch(CheckFailed):
    """The bytes read from the OVA do not match its manifest; the upload was not finished."""


@dataclass(frozen=True)
class Target:
    """One device URL of a lease, resolved to a host we can reach and pin."""

    url: str
    import_key: str
    target_id: str
    disk: bool
    file_size: int | None
    connection: Connection
    cookie: str | None = None

    @property
    def name(self) -> str:
        return self.target_id or urlsplit(self.url).path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str


def session_cookie(service: Any) -> str | None:
    """``vmware_soap_session=...`` of a logged-in ServiceInstance, for NFC requests."""
    from http.cookies import SimpleCookie

    raw = getattr(getattr(service, "_stub", None), "cookie", "") or ""
    morsel = SimpleCookie(raw).get(SESSION_COOKIE) if raw else None
    return f"{SESSION_COOKIE}={morsel.coded_value}" if morsel else None


def resolve_target(device_url: Any, connection: Connection, cookie: str | None) -> Target:
    """Replace the ``*`` host with the vCenter we talk to; pin other hosts by their thumbprint.

    vCenter hands out ``https://*/nfc/...`` when it proxies the transfer, and an ESXi host's
    name with that host's certificate thumbprint otherwise; the thumbprint arrived over the
    pinned SOAP session, so it is as trustworthy as the vCenter pin.
    """
    parts = urlsplit(device_url.url)
    if parts.hostname in (None, "*"):
        netloc = connection.server if connection.port != 443 else connection.host
        url = parts._replace(netloc=netloc).geturl()
        pin = connection
    else:
        url = device_url.url
        thumbprint = device_url.sslThumbprint
        pin = replace(
            connection,
            host=parts.hostname,
            port=parts.port or 443,
            thumbprint=normalize_thumbprint(thumbprint) if thumbprint else connection.thumbprint,
        )
    size = getattr(device_url, "fileSize", None)
    return Target(
        url=url,
        import_key=device_url.importKey or "",
        target_id=device_url.targetId or "",
        disk=bool(device_url.disk),
        file_size=int(size) if size else None,
        connection=pin,
        cookie=cookie,
    )


def wait_ready(service: Any, lease: Any, *, timeout: float = 600, poll: float = 0.2) -> Any:
    """Wait for the lease to leave 'initializing'; return its info or raise VSphereError."""
    from ovapipe.vsphere.inventory import properties

    deadline = time.monotonic() + timeout
    while True:
        props = properties(service, lease, ["state", "error", "info"])
        state = props.get("state")
        if state == "ready":
            return props["info"]
        if state == "error":
            raise VSphereError(f"the lease failed: {fault_message(props.get('error'))}")
        if state == "done":
            raise VSphereError("the lease is already done: nothing to transfer")
        if time.monotonic() > deadline:
            raise VSphereError(f"the lease was not ready after {timeout:.0f} s (state {state})")
        time.sleep(poll)


class KeepAlive:
    """Reports progress to the lease well inside its timeout so vCenter does not drop it.

    A failed report (the server aborted or timed the lease out) is kept and raised by
    ``check``, which the transfer calls between blocks.
    """

    def __init__(self, lease: Any, progress: Progress, interval: float) -> None:
        self.lease = lease
        self.progress = progress
        self.interval = interval
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-keepalive", daemon=True)

    @staticmethod
    def interval_for(lease_timeout_s: int | None) -> float:
        """A quarter of the lease timeout, at most 10 s."""
        return max(0.5, min((lease_timeout_s or 300) / 4, 10.0))

    def percent(self) -> int:
        total = self.progress.total
        return min(99, int(100 * self.progress.done / total)) if total else 0

    def report(self) -> None:
        self.lease.HttpNfcLeaseProgress(percent=self.percent())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception as exc:
                self.error = exc
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def check(self) -> None:
        if self.error is not None:
            raise VSphereError(lease_ended(self.error)) from None

    def check_now(self) -> None:
        """Ask the server now: after a refused transfer, a gone lease is the real reason."""
        self.check()
        try:
            self.report()
        except Exception as exc:
            raise VSphereError(lease_ended(exc)) from None


@dataclass
class HeldLease:
    """A ready lease being kept alive; transfers go through it so aborts are noticed."""

    lease: Any
    info: Any
    targets: list[Target]
    progress: Progress
    keepalive: KeepAlive
    extra_check: Callable[[], None] | None = None

    def target(self, import_key: str) -> Target:
        """The device URL whose importKey is an import spec file item's deviceId."""
        for target in self.targets:
            if target.import_key == import_key:
                return target
        keys = ", ".join(t.import_key for t in self.targets) or "none"
        raise VSphereError(f"the lease has no device URL for {import_key}; it has: {keys}")

    def upload(self, target: Target, stream: BlockStream, *, create: bool) -> None:
        try:
            upload(target, stream, create=create, progress=self.progress, check=self.check)
        except VSphereError:
            self.keepalive.check_now()
            raise

    def check(self) -> None:
        """Raise if the server ended the lease, or the caller's own check says stop."""
        self.keepalive.check()
        if self.extra_check is not None:
            self.extra_check()

    def download(self, target: Target, out: IO[bytes]) -> Downloaded:
        try:
            return download(target, out, progress=self.progress, check=self.check)
        except VSphereError:
            self.keepalive.check_now()
            raise


def _abort(lease: Any, reason: str) -> None:
    """Abort with the reason (shown in vCenter's task list); without it if that is refused.

    A lease the server already ended cannot be aborted again; that is not an error here.
    """
    from pyVmomi import vmodl

    from ovapipe.config import CLEANUP_TIMEOUT
    from ovapipe.vsphere.connect import bound

    bound(lease, CLEANUP_TIMEOUT)  # an abort runs on the way out: never a long wait
    try:
        lease.HttpNfcLeaseAbort(fault=vmodl.fault.SystemError(reason=reason[:500]))
    except vmodl.fault.ManagedObjectNotFound:
        return
    except Exception:
        with contextlib.suppress(Exception):
            lease.HttpNfcLeaseAbort()


@contextlib.contextmanager
def hold_lease(
    service: Any,
    lease: Any,
    connection: Connection,
    progress: Progress,
    *,
    ready_timeout: float = 600,
    check: Callable[[], None] | None = None,
) -> Iterator[HeldLease]:
    """Wait for ``lease``, keep it alive, complete it on success, abort it on anything else."""
    keepalive: KeepAlive | None = None
    try:
        info = wait_ready(service, lease, timeout=ready_timeout)
        cookie = session_cookie(service)
        targets = [resolve_target(d, connection, cookie) for d in info.deviceUrl or []]
        keepalive = KeepAlive(lease, progress, KeepAlive.interval_for(info.leaseTimeout))
        keepalive.start()
        yield HeldLease(lease, info, targets, progress, keepalive, check)
        keepalive.stop()
        keepalive.check()
        try:
            lease.HttpNfcLeaseProgress(percent=100)
            lease.HttpNfcLeaseComplete()
        except Exception as exc:
            raise VSphereError(lease_ended(exc)) from None
    except BaseException as exc:
        if keepalive is not None:
            keepalive.stop()
        _abort(lease, str(exc) or type(exc).__name__)
        raise


def _describe(exc: BaseException) -> str:
    """A one-line reason for a transfer error (the server closed, reset, refused...)."""
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "the server closed the connection"
    if isinstance(exc, http.client.BadStatusLine | ssl.SSLEOFError):
        return f"the server closed the connection ({type(exc).__name__})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _request(target: Target, method: str, headers: dict[str, str]) -> PinnedHTTPSConnection:
    parts = urlsplit(target.url)
    conn = PinnedHTTPSConnection(
        parts.hostname or target.connection.host, parts.port or 443, target.connection
    )
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn.putrequest(method, path, skip_accept_encoding=True)
    if target.cookie:
        conn.putheader("Cookie", target.cookie)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    return conn


class BlockStream(Protocol):
    """What an upload sends: ``size`` bytes as blocks, hashed before each block is handed on.

    ``verify`` raises DigestMismatch when the bytes read so far do not match the expected
    digest; the uploader calls it before sending the last block.
    """

    name: str
    size: int

    def __iter__(self) -> Iterator[memoryview]: ...

    def verify(self) -> None: ...


def upload(
    target: Target,
    stream: BlockStream,
    *,
    create: bool,
    progress: Progress,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Send ``stream`` to ``target``: disks by POST as streamVmdk, ``create`` items by PUT.

    The stream is verified before its last block goes out: on a digest mismatch the server
    never holds a complete file and the lease is aborted by the caller.
    """
    method = "PUT" if create else "POST"
    content_type = DISK_CONTENT_TYPE if target.disk else FILE_CONTENT_TYPE
    sent = 0
    conn: PinnedHTTPSConnection | None = None
    try:
        conn = _request(
            target,
            method,
            {"Content-Type": content_type, "Content-Length": str(stream.size)},
        )
        if stream.size == 0:
            stream.verify()
        for block in stream:
            check()
            if sent + len(block) >= stream.size:
                stream.verify()
            conn.send(block)
            sent += len(block)
            progress.advance(len(block))
        if sent != stream.size:
            raise VSphereError(f"{stream.name}: read {sent} of {stream.size} bytes")
        response = conn.getresponse()
        body = response.read(4096)
        if not 200 <= response.status < 300:
            text = body.decode("utf-8", "replace").strip()
            raise VSphereError(
                f"upload of {stream.name} refused: HTTP {response.status} {response.reason}"
                + (f": {text[:200]}" if text else "")
            )
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        progress_text = (
            f"all {sent} bytes were sent but not confirmed" if sent == stream.size
            else f"after {sent} of {stream.size} bytes"
        )
        raise VSphereError(
            f"upload of {stream.name} failed ({progress_text}): {_describe(exc)}"
        ) from None
    finally:
        if conn is not None:
            conn.close()


def download(
    target: Target,
    out: IO[bytes],
    *,
    progress: Progress,
    check: Callable[[], None] = lambda: None,
) -> Downloaded:
    """Stream a lease's device URL (ExportVm) into ``out``; returns its size and sha256."""
    digest = hashlib.sha256()
    received = 0
    conn: PinnedHTTPSConnection | None = None
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    try:
        conn = _request(target, "GET", {})
        response = conn.getresponse()
        if response.status != 200:
            text = response.read(4096).decode("utf-8", "replace").strip()
            raise VSphereError(
                f"download of {target.name} refused: HTTP {response.status} {response.reason}"
                + (f": {text[:200]}" if text else "")
            )
        length = response.getheader("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        while True:
            check()
            count = response.readinto(view)
            if not count:
                break
            digest.update(view[:count])
            out.write(view[:count])
            received += count
            progress.advance(count)
        if expected is not None and received != expected:
            raise VSphereError(
                f"download of {target.name} ended after {received} of {expected} bytes"
            )
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise VSphereError(
            f"download of {target.name} failed after {received} bytes: {_describe(exc)}"
        ) from None
    finally:
        if conn is not None:
            conn.close()
    return Downloaded(received, digest.hexdigest())
