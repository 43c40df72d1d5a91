"""Benchmark: bytes the workstation sends to publish one OVA to N datacenters, direct vs library.

    .venv/bin/python benchmarks/library.py [--size-mb 100] [--datacenters 3] [--rebuild]

One simulator with N datacenters (``--datacenters N``) behind a TCP proxy that counts the
bytes each client connection sends upstream (TLS records, headers, SOAP and REST calls
included: what leaves the workstation). Runs, each on a fresh simulator:

- direct: ``publish --datacenter DC0 .. DCn-1`` (one OvaPass read feeding N import leases);
- library: ``publish --library L --datacenter DC0 .. DCn-1`` (one upload into the library
  item, then N deploys that move no OVA bytes from the workstation).

Prints the OVA size, the bytes sent by each, their ratio to the OVA size and the wall time.
Inputs are built once under .cache/bench/ (the same random-filled EFI disk as publish.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import resource
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from ovapipe.progress import Progress
from ovapipe.simulator import Simulator, SimulatorOptions, build
from ovapipe.vsphere.publish import PublishOptions, publish

sys.path.insert(0, str(Path(__file__).resolve().parent))
from publish import build_inputs  # benchmarks/publish.py: the same inputs

MIB = 1024 * 1024


class CountingProxy:
    """127.0.0.1:port -> the simulator; ``sent`` counts client -> server bytes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(1 << 20):
                if upstream:
                    with self._lock:
                        self.sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def quiet(label: str, total: int | None) -> Progress:
    return Progress(label, total, io.StringIO(), tty=False)


def measure(ova: Path, datacenters: int, library: str | None, out: Path) -> tuple[int, float]:
    names = tuple(f"DC{i}" for i in range(datacenters))
    with Simulator(SimulatorOptions(datacenters=datacenters), binary=build(quiet=True)) as sim:
        proxy = CountingProxy(sim.connection.port)
        connection = replace(sim.connection, port=proxy.port)
        options = PublishOptions(ova=ova, datacenters=names, cluster="*_C0",
                                 datastore="LocalDS_0", network="VM Network", output_dir=out,
                                 snapshot=True, concurrency=datacenters, library=library)
        started = time.monotonic()
        publish(options, connection, log=io.StringIO(), progress=quiet)
        seconds = time.monotonic() - started
        proxy.close()
        return proxy.sent, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--datacenters", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    ova, _bare, _disk = build_inputs(args.size_mb, args.rebuild)
    size = ova.stat().st_size
    n = args.datacenters
    print(f"OVA {ova.name}: {size} bytes ({size / MIB:.1f} MiB), {n} datacenters")
    with tempfile.TemporaryDirectory(prefix="ovapipe-bench-") as out:
        direct, direct_s = measure(ova, n, None, Path(out) / "direct")
        library, library_s = measure(ova, n, "L", Path(out) / "library")
    print(f"  direct  publish --datacenter x{n}: {direct:>12} bytes sent = "
          f"{direct / size:.2f}x the OVA, {direct_s:.2f} s")
    print(f"  library publish --library L x{n}: {library:>12} bytes sent = "
          f"{library / size:.2f}x the OVA, {library_s:.2f} s")
    print(f"  library / direct: {library / direct:.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process (both runs, in process): {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
