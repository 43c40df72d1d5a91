"""A TCP proxy for fault tests: forwards to a server, and on request drops, resets or stalls.

``FaultProxy(upstream_port)`` listens on 127.0.0.1; ``proxy.fail_after(n, "drop"|"reset"|
"stall")`` makes every connection misbehave once n more bytes have gone from the server to the
client (n=0: at once). "drop" closes both sides (FIN), "reset" closes with SO_LINGER 0 (RST),
"stall" stops forwarding but keeps the sockets open, like a server that stops answering.
``close()`` ends every thread and socket. TLS passes through untouched, so pinning still holds.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class _Plan:
    remaining: int | None = None  # bytes server->client before the fault; None = no fault
    mode: str = "drop"


@dataclass
class FaultProxy:
    upstream_port: int
    upstream_host: str = "127.0.0.1"
    _plan: _Plan = field(default_factory=_Plan)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sockets: list[socket.socket] = field(default_factory=list)
    _closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def fail_after(self, count: int, mode: str) -> None:
        assert mode in ("drop", "reset", "stall")
        with self._lock:
            self._plan = _Plan(count, mode)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((self.upstream_host, self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _fault(self, size: int) -> tuple[int, str | None]:
        """How many of ``size`` bytes may pass, and the fault to apply after them."""
        with self._lock:
            plan = self._plan
            if plan.remaining is None:
                return size, None
            if size < plan.remaining:
                plan.remaining -= size
                return size, None
            allowed, plan.remaining = plan.remaining, 0
            return allowed, plan.mode

    def _pump(self, source: socket.socket, target: socket.socket, downstream: bool) -> None:
        try:
            while not self._closed.is_set():
                data = source.recv(65536)
                if not data:
                    break
                allowed, fault = self._fault(len(data)) if downstream else (len(data), None)
                target.sendall(data[:allowed])
                if fault == "stall":
                    self._closed.wait()
                    return
                if fault == "reset":
                    for sock in (source, target):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                if fault is not None:
                    break
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
