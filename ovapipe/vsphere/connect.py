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
from typing import Any

from ovapipe.config import Connection, normalize_thumbprint
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
        raise VSphereError(
            f"{connection.server}: certificate thumbprint {seen} does not match "
            f"VSPHERE_TLS_THUMBPRINT {connection.thumbprint} (wrong server, or the certificate "
            "changed: check it with the vCenter administrator)"
        )


def pinned_context(connection: Connection, timeout: float = 30) -> ssl.SSLContext:
    """An SSL context that trusts exactly the server certificate matching the pin.

    pyVmomi checks its ``thumbprint`` argument only when ordinary verification fails, and it
    skips verification for 127.0.0.1 or with ``disableSslCertValidation``: the pin was never
    checked. The certificate is fetched once, checked against the pin and then made the only
    trust anchor (partial chain), so every connection pyVmomi opens must present it.
    """
    try:
        pem = ssl.get_server_certificate((connection.host, connection.port), timeout=timeout)
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

    def __init__(self, host: str, port: int, connection: Connection, timeout: float = 60) -> None:
        super().__init__(host, port, timeout=timeout, context=_unverified_context())
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


def open_service(connection: Connection) -> Any:
    """Log in and return the ServiceInstance; errors become VSphereError/ConfigError."""
    from pyVim import connect as pyvim_connect
    from pyVmomi import vim

    if connection.insecure and not connection.thumbprint:
        print(
            f"warning: --insecure: the certificate of {connection.server} is not verified",
            file=sys.stderr,
        )
    pinned = pinned_context(connection) if connection.thumbprint else None
    try:
        return pyvim_connect.SmartConnect(
            host=connection.host,
            port=connection.port,
            user=connection.username,
            pwd=connection.password,
            sslContext=pinned,
            disableSslCertValidation=pinned is None and connection.insecure,
            connectionPoolTimeout=-1,
        )
    except vim.fault.InvalidLogin:
        pass  # below, once the traceback (which holds pyVmomi's stub) is gone
    except ssl.SSLError as exc:
        raise VSphereError(f"{connection.server}: TLS failed: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise VSphereError(f"{connection.server}: cannot connect: {exc}") from None
    except Exception as exc:
        raise VSphereError(f"{connection.server}: cannot log in: {fault_message(exc)}") from None
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
            pyvim_connect.Disconnect(service)
