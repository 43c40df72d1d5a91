"""Connect to vCenter with the certificate pinned by its thumbprint."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import http.client
import ssl
import sys
import warnings
from collections.abc import Iterator
from typing import Any, Final

from ovapipe.config import CLEANUP_TIMEOUT, Connection, normalize_thumbprint
from ovapipe.errors import ConfigError, VSphereError
from ovapipe.vsphere.tasks import fault_message


def _unverified_context() -> ssl.SSLContext:
    # Verification is done by pinning the peer certificate's fingerprint, as govc and CAPV do.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def certificate_thumbprint(der: bytes, algorithm: str = "sha1") -> str:
    return normalize_thumbprint(hashlib.new(algorithm, der).hexdigest())


def check_pinned(der: bytes | None, connection: Connection) -> None:
    if connection.insecure and not connection.thumbprint:
        return
    if der is None or connection.thumbprint is None:
        raise VSphereError(f"{connection.server}: no certificate to check against the pin")
    algorithm = "sha1" if len(connection.thumbprint) == 59 else "sha256"
    seen = certificate_thumbprint(der, algorithm)
    if seen != connection.thumbprint:
        raise ConfigError(
            f"{connection.server}: certificate thumbprint {seen} does not match "
            f"VSPHERE_TLS_THUMBPRINT {connection.thumbprint} (wrong server, or the certificate "
            "changed: check it with the vCenter administrator)"
        )


def pinned_context(connection: Connection, timeout: float | None = None) -> ssl.SSLContext:
    """An SSL context that trusts exactly the server certificate matching the pin.

    pyVmomi checks its ``thumbprint`` argument only when ordinary verification fails, and it
    skips verification for 127.0.0.1 or with ``disableSslCertValidation``: the pin was never
    checked. The certificate is fetched once, checked against the pin and then made the only
    trust anchor (partial chain), so every connection pyVmomi opens must present it.
    """
    try:
        pem = ssl.get_server_certificate((connection.host, connection.port),
                                         timeout=timeout or connection.timeout)
    except (OSError, ssl.SSLError) as exc:
        raise VSphereError(f"{connection.server}: cannot connect: {exc}") from None
    der = ssl.PEM_cert_to_DER_cert(pem)
    check_pinned(der, connection)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=der)
    return context


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that checks the vCenter/ESXi certificate pin before any byte."""

    def __init__(self, host: str, port: int, connection: Connection,
                 timeout: float | None = None) -> None:
        super().__init__(host, port, timeout=timeout or connection.timeout,
                         context=_unverified_context())
        self._pin = connection
        # 1 MiB sends: Python's default 8 KiB writes become one TLS record each and halve
        # upload throughput (measured in the toolchain notes).
        self.blocksize = 1 << 20

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            check_pinned(self.sock.getpeercert(binary_form=True), self._pin)
        except BaseException:
            self.close()  # a wrong pin: nothing more goes over this socket
            raise


SERVICE_VERSIONS_PATH: Final = "/sdk/vimServiceVersions.xml"
SERVICE_VERSIONS_LIMIT: Final = 1 << 20


def api_version(connection: Connection, context: ssl.SSLContext) -> str:
    """The newest vim25 version both pyVmomi and the server speak.

    pyVmomi's SmartConnect asks the server the same question without any timeout (a server
    that accepts connections and never answers hangs it forever); this asks with one.
    """
    import xml.etree.ElementTree as ET

    from pyVmomi.VmomiSupport import GetServiceVersions, versionIdMap

    probe = http.client.HTTPSConnection(connection.host, connection.port,
                                        timeout=connection.timeout, context=context)
    try:
        probe.request("GET", SERVICE_VERSIONS_PATH)
        response = probe.getresponse()
        body = response.read(SERVICE_VERSIONS_LIMIT)
    finally:
        probe.close()
    if response.status != 200:
        raise VSphereError(f"{connection.server}: {SERVICE_VERSIONS_PATH} answered "
                           f"HTTP {response.status}: not a vCenter or ESXi SOAP endpoint")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise VSphereError(f"{connection.server}: {SERVICE_VERSIONS_PATH} is not XML: not a "
                           "vCenter or ESXi SOAP endpoint") from None
    offered = {element.text for element in root.iter("version")}
    for version in GetServiceVersions("vim25"):
        if versionIdMap.get(version) in offered:
            return str(version)
    raise VSphereError(f"{connection.server}: offers API versions {sorted(filter(None, offered))}"
                       ", none of which this pyVmomi speaks")


class NoAnswer(VSphereError, OSError):
    """A vCenter request got no (or a broken) answer; still an OSError for retry logic."""

    def __init__(self, message: str) -> None:
        VSphereError.__init__(self, message)

    def __str__(self) -> str:
        return self.message


def _name_the_request(service: Any, connection: Connection) -> None:
    """Make every request of ``service`` that times out or loses its connection say which
    request it was and on which server (one line), instead of a bare ``timed out``."""
    stub = service._stub
    invoke = stub.InvokeMethod

    def invoke_method(mo: Any, info: Any, args: Any, *more: Any) -> Any:
        try:
            return invoke(mo, info, args, *more)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, NoAnswer):
                raise
            what = f"{getattr(info, 'wsdlName', '?')} on {getattr(mo, '_moId', '?')}"
            if isinstance(exc, TimeoutError):
                raise NoAnswer(f"{connection.server}: no answer within "
                               f"{_timeout_of(stub, connection):g} s to {what} "
                               "(VSPHERE_TIMEOUT)") from None
            raise NoAnswer(f"{connection.server}: {what}: {fault_message(exc)}") from None

    stub.InvokeMethod = invoke_method


def _timeout_of(stub: Any, connection: Connection) -> float:
    scheme_args = getattr(stub, "schemeArgs", None)
    if isinstance(scheme_args, dict) and scheme_args.get("timeout"):
        return float(scheme_args["timeout"])
    return connection.timeout


def _no_answer(connection: Connection, what: str) -> VSphereError:
    return VSphereError(f"{connection.server}: no answer within {connection.timeout:g} s while "
                        f"{what} (VSPHERE_TIMEOUT)")


def open_service(connection: Connection) -> Any:
    """Log in and return the ServiceInstance; errors become VSphereError/ConfigError.

    Every request of the returned session times out after ``connection.timeout`` seconds.
    """
    from pyVim import connect as pyvim_connect
    from pyVmomi import vim

    if connection.insecure and not connection.thumbprint:
        print(
            f"warning: --insecure: the certificate of {connection.server} is not verified",
            file=sys.stderr,
        )
    context = pinned_context(connection) if connection.thumbprint else _unverified_context()
    try:
        version = api_version(connection, context)
        service = pyvim_connect.Connect(
            host=connection.host,
            port=connection.port,
            user=connection.username,
            pwd=connection.password,
            version=version,
            sslContext=context,
            httpConnectionTimeout=connection.timeout,
            connectionPoolTimeout=-1,
        )
    except TimeoutError:
        raise _no_answer(connection, "logging in") from None
    except vim.fault.HostConnectFault as exc:
        # pyVmomi wraps a failed first request (RetrieveContent) in HostConnectFault(msg=...).
        text = str(getattr(exc, "msg", "") or "")
        if "timed out" in text:
            raise _no_answer(connection, "logging in") from None
        raise VSphereError(f"{connection.server}: cannot connect: {text}") from None
    except vim.fault.InvalidLogin:
        pass  # below, once the traceback (which holds pyVmomi's stub) is gone
    except ssl.SSLError as exc:
        raise VSphereError(f"{connection.server}: TLS failed: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise VSphereError(f"{connection.server}: cannot connect: {exc}") from None
    except Exception as exc:
        raise VSphereError(f"{connection.server}: cannot log in: {fault_message(exc)}") from None
    else:
        _name_the_request(service, connection)
        return service
    # pyVmomi drops a failed login's stub with its socket still open: close it now, quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    raise ConfigError(
        f"{connection.server}: login failed for user {connection.username!r} "
        "(check VSPHERE_USERNAME / VSPHERE_PASSWORD)"
    )


@contextlib.contextmanager
def session(connection: Connection) -> Iterator[Any]:
    """``with session(conn) as si:`` logs in and always logs out."""
    from pyVim import connect as pyvim_connect

    service = open_service(connection)
    try:
        yield service
    finally:
        with contextlib.suppress(Exception):
            # Logging out must not hold up an interrupted run: a short bound of its own.
            bound(service, CLEANUP_TIMEOUT)
            pyvim_connect.Disconnect(service)


def bound(service: Any, seconds: float) -> None:
    """From now on, each request of ``service`` waits at most ``seconds`` for an answer."""
    stub = getattr(service, "_stub", None)
    scheme_args = getattr(stub, "schemeArgs", None)
    if isinstance(scheme_args, dict):
        scheme_args["timeout"] = seconds
    pool = getattr(stub, "pool", None) or []
    for entry in list(pool):
        conn = entry[0] if isinstance(entry, tuple) else entry
        conn.timeout = seconds
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(seconds)
