"""Benchmark: simulator build (no-op) and start-up time (target: start < 2 s once built).

    .venv/bin/python benchmarks/simulator.py [--runs 10] [--upload-mb 600]

Times ``build()`` when the binary is up to date, then ``Simulator.start()`` until the
simulator answers over pinned TLS (median and max of --runs), and one streaming
``curl -T`` POST of --upload-mb random bytes into an import lease (bytes are written to the
datastore file, so the disk is part of the floor). Prints the simulator's peak RSS after
the upload, which stays small because bodies are streamed, not buffered.

Measured 2026-11-28 on the 2-core build box while other jobs ran: no-op build 0.02-0.1 s,
start median 0.12 s (max 0.14 s), 600 MB upload 150-390 MB/s (disk write-back bound; the
same machine's floor for a discarding server was 577 MB/s), simulator RSS 23 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ovapipe.simulator import Simulator, build
from ovapipe.vsphere import inventory
from ovapipe.vsphere.connect import session

OVF = Path(__file__).resolve().parent.parent / "tests" / "test_simulator.py"


def upload(sim: Simulator, size_mb: int) -> tuple[float, int]:
    from pyVmomi import vim

    sys.path.insert(0, str(OVF.parent))
    from test_simulator import OVF_TEMPLATE, cluster_pool, ready_lease_info

    with tempfile.TemporaryDirectory() as folder, session(sim.connection) as si:
        data = Path(folder) / "disk.bin"
        with open(data, "wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(1 << 20))
        pool = cluster_pool(si)
        datastore = inventory.retrieve(si, vim.Datastore, ["name"])[0].obj
        spec = si.RetrieveContent().ovfManager.CreateImportSpec(
            OVF_TEMPLATE.replace("{name}", "bench"), pool, datastore,
            vim.OvfManager.CreateImportSpecParams(entityName="bench"),
        )
        lease = pool.ImportVApp(spec.importSpec)
        info = ready_lease_info(si, lease)
        url = next(u.url for u in info.deviceUrl if u.disk).replace("*", sim.env["VSPHERE_SERVER"])
        started = time.monotonic()
        subprocess.run(
            ["curl", "-sSfk", "-o", "/dev/null", "-X", "POST", "-T", str(data),
             "-H", "Content-Type: application/x-vnd.vmware-streamVmdk", url],
            check=True,
        )
        seconds = time.monotonic() - started
        lease.HttpNfcLeaseComplete()
    rss = subprocess.run(["ps", "-o", "rss=", "-p", str(sim.pid)], capture_output=True,
                         text=True, check=True).stdout
    return seconds, int(rss) // 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--upload-mb", type=int, default=600)
    args = parser.parse_args()

    binary = build(quiet=True)
    started = time.monotonic()
    build(quiet=True)
    print(f"no-op build           {time.monotonic() - started:.2f} s")

    starts = []
    for _ in range(args.runs):
        sim = Simulator(binary=binary)
        began = time.monotonic()
        sim.start()
        starts.append(time.monotonic() - began)
        sim.stop()
    print(f"start (until it answers) median {statistics.median(starts):.2f} s, "
          f"max {max(starts):.2f} s (target < 2 s)")

    with Simulator(binary=binary) as sim:
        seconds, rss = upload(sim, args.upload_mb)
    print(f"curl -T upload        {args.upload_mb} MB in {seconds:.2f} s "
          f"({args.upload_mb / seconds:.0f} MB/s), simulator RSS {rss} MB")


if __name__ == "__main__":
    main()
