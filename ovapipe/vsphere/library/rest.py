"""A vCenter REST (vAPI) session over the pinned TLS connection the SOAP side uses.

The documented ``/rest`` endpoints (vSphere 6.5+; still served by vCenter 7 and 8): login by
basic auth at ``/rest/com/vmware/cis/session`` with ``vmware-use-header-authn`` so the session
id comes back only in the body; from then on it travels in the ``vmware-api-session-id``
header, never in a URL, a log line or an error message. Every request waits at most the
connection's timeout. VMware's Automation SDK (``vmware-vcenter``) speaks JSON-RPC on
``/api``, which the simulator (Debian's govmomi 0.24 vAPI) does not serve; pyproject.toml says
why this stdlib client is used instead.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode

from ovapipe.config import CLEANUP_TIMEOUT, Connection
from ovapipe.errors import ConfigError, VSphereError
from ovapipe.vsphere.connect import PinnedHTTPSConnection

REST_PREFIX: Final = "/rest"
SESSION_PATH: Final = "/rest/com/vmware/cis/session"
SESSION_HEADER: Final = "vmware-api-session-id"
ANSWER_LIMIT: Final = 16 << 20  # a JSON answer larger than this is refused (bounded memory)


class RestError(VSphereError):
    """vCenter answered a REST call with an error status."""

    def __init__(self, message: str, status: int, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class NotFound(RestError):
    pass


def path_id(identifier: str) -> str:
    """An object id as it goes into a /rest path: ``id:<id>``, quoted so it stays one element."""
    return "id:" + quote(identifier, safe="")


def _error_text(body: bytes) -> tuple[str, str]:
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        return "", body[:200].decode("utf-8", "replace").strip()
    if not isinstance(answer, dict):
        return "", ""
    kind = str(answer.get("type", ""))
    value = answer.get("value") or {}
    messages = value.get("messages", []) if isinstance(value, dict) else []
    texts = [str(m.get("default_message", "")) if isinstance(m, dict) else str(m)
             for m in messages]
    return kind, "; ".join(t for t in texts if t)


@dataclass
class RestSession:
    """One logged-in REST session; ``call`` sends JSON and returns the answer's ``value``."""

    connection: Connection
    _http: PinnedHTTPSConnection | None = field(default=None, init=False, repr=False)
    _id: str | None = field(default=None, init=False, repr=False)
    _bound: float | None = field(default=None, init=False, repr=False)

    @property
    def session_id(self) -> str:
        if self._id is None:
            raise VSphereError("the REST session is not logged in")
        return self._id

    def _conn(self) -> PinnedHTTPSConnection:
        if self._http is None:
            self._http = PinnedHTTPSConnection(self.connection.host, self.connection.port,
                                               self.connection)
        return self._http

    def _send(self, method: str, path: str, body: bytes | None,
              headers: Mapping[str, str], timeout: float | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            reused = self._http is not None
            conn = self._conn()
            wait = timeout or self.connection.timeout
            conn.timeout = wait
            if conn.sock is not None:
                conn.sock.settimeout(wait)
            try:
                conn.request(method, path, body=body, headers=dict(headers))
                response = conn.getresponse()
                data = response.read(ANSWER_LIMIT + 1)
                if len(data) > ANSWER_LIMIT:
                    raise VSphereError(f"{method} {path.split('?')[0]}: answer larger than "
                                       f"{ANSWER_LIMIT >> 20} MiB")
                if response.getheader("Connection", "").lower() == "close":
                    self.close_connection()
                return response.status, data
            except TimeoutError:
                self.close_connection()
                raise VSphereError(f"{self.connection.server}: no answer to {method} "
                                   f"{path.split('?')[0]} within {wait:g}s") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server had closed: sent once more on a new one.
                # A fresh connection that fails may have delivered the request: never resent.
                self.close_connection()
                if attempt == 2 or not reused:
                    raise VSphereError(f"{self.connection.server}: the server closed the "
                                       f"connection during {method} {path.split('?')[0]}"
                                       ) from None
            except ssl.SSLError as exc:
                self.close_connection()
                raise VSphereError(f"{self.connection.server}: TLS failed: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close_connection()
                raise VSphereError(f"{self.connection.server}: {method} "
                                   f"{path.split('?')[0]} failed: {exc}") from None
        raise AssertionError("unreachable")

    def close_connection(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def login(self) -> None:
        login = f"{self.connection.username}:{self.connection.password}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(login).decode(),
                   "vmware-use-header-authn": "true", "Content-Length": "0"}
        status, body = self._send("POST", SESSION_PATH, None, headers)
        if status == 401:
            raise ConfigError(f"{self.connection.server}: REST login failed for user "
                              f"{self.connection.username!r} (check VSPHERE_USERNAME / "
                              "VSPHERE_PASSWORD)")
        if status != 200:
            kind, text = _error_text(body)
            raise VSphereError(f"{self.connection.server}: REST login: HTTP {status} "
                               f"{kind} {text}".strip())
        try:
            value = json.loads(body)["value"]
        except (ValueError, KeyError, TypeError):
            value = None
        if not isinstance(value, str) or not value:
            raise VSphereError(f"{self.connection.server}: REST login answered no session id")
        self._id = value

    def logout(self) -> None:
        if self._id is None:
            self.close_connection()
            return
        with contextlib.suppress(VSphereError):
            # Logging out must not hold up an interrupted run: a short bound of its own.
            self._send("DELETE", SESSION_PATH, None, self._headers(), CLEANUP_TIMEOUT)
        self._id = None
        self.close_connection()

    def connection_timeout(self, seconds: float) -> None:
        """From now on each request waits at most ``seconds`` (cleanups after Ctrl-C)."""
        self._bound = seconds

    def _headers(self) -> dict[str, str]:
        return {SESSION_HEADER: self.session_id, "Accept": "application/json"}

    def request(self, method: str, path: str, *, action: str | None = None,
             query: Mapping[str, str] | None = None, body: Any = None,
             timeout: float | None = None) -> Any:
        """``method REST_PREFIX+path[?~action=..]``; the answer's ``value`` (None if empty).

        Waits at most ``timeout`` (default the connection's, VSPHERE_TIMEOUT) for the answer,
        or less once ``connection_timeout`` bounded the session for cleanups."""
        params = dict(query or {})
        if action:
            params["~action"] = action
        target = REST_PREFIX + path + (f"?{urlencode(params)}" if params else "")
        headers = self._headers()
        data = None
        if body is not None or method in ("POST", "PATCH", "PUT"):
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        wait = timeout or self.connection.timeout
        status, answer = self._send(method, target, data, headers,
                                    min(wait, self._bound) if self._bound else wait)
        what = f"{method} {REST_PREFIX}{path}" + (f" ({action})" if action else "")
        if not 200 <= status < 300:
            kind, text = _error_text(answer)
            error = NotFound if status == 404 else RestError
            detail = f": {text}" if text else ""
            raise error(f"{self.connection.server}: {what}: HTTP {status} {kind}{detail}".rstrip(),
                        status, kind)
        if not answer.strip():
            return None
        try:
            decoded = json.loads(answer)
        except ValueError:
            raise VSphereError(f"{self.connection.server}: {what}: the answer is not JSON"
                               ) from None
        return decoded.get("value") if isinstance(decoded, dict) else decoded


@contextlib.contextmanager
def rest_session(connection: Connection) -> Iterator[RestSession]:
    """``with rest_session(conn) as api:`` logs in and always logs out (bounded)."""
    api = RestSession(connection)
    try:
        api.login()
        yield api
    finally:
        api.logout()
