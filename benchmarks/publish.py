"""Benchmark: publish against a streaming `curl -T` of the same disk bytes to the same simulator.

    .venv/bin/python benchmarks/publish.py [--size-mb 640] [--runs 5] [--rebuild]

Builds (once, cached under .cache/bench/) an EFI test disk whose root partition is random
bytes (so the streamOptimized VMDK does not compress away), assembles it into an OVA and
copies the disk member's bytes to a file for curl. One simulator serves every run. Alternating:

- curl: an import lease is opened through the API (not timed), then
  ``curl -T DISK -X POST -H 'Content-Type: application/x-vnd.vmware-streamVmdk' URL`` is timed
  (curl streams the file; ``--data-binary`` would read it into memory first);
- publish: ``ovapipe.vsphere.publish.publish`` in this process, the whole run (connect,
  preflight, import spec, upload, firmware, snapshot, template, validate, record), timed;
  the template is deleted afterwards (not timed).

Prints the medians and the ratios publish / curl, with the build's NAME.ova.sha256 beside the
OVA (the usual case) and without it (the whole-file sha256 is then computed during the upload's
read), and the whole process `invoke publish` / curl (target <= 1.1) with its peak RSS.

Then (each can be skipped with 0 / an empty list):
- ``--fanout N`` (default 3): the upload phase to N import leases fed by ONE OvaPass read
  (``consumers=N``, as publishing to N datacenters does), against N x a single upload;
- ``--rss-sizes`` (default 100,640,4096 MiB disks): peak RSS of `invoke publish` per size
  (target < 150 MB and flat). A 4096 MiB random disk takes minutes to build once.

Figures and the commands that produced them: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ovapipe.ova import BuildFacts, assemble_ova, read_ova
from ovapipe.paths import CACHE_DIR, REPO_ROOT
from ovapipe.progress import Progress
from ovapipe.simulator import Simulator, SimulatorOptions, build
from ovapipe.testdisk import make_test_disk
from ovapipe.vsphere.connect import session
from ovapipe.vsphere.lease import DISK_CONTENT_TYPE, resolve_target, wait_ready
from ovapipe.vsphere.publish import PublishOptions, publish
from ovapipe.vsphere.template import destroy, vms_named

TARGET_RATIO = 1.1
TARGET_RSS_MB = 150
MIB = 1024 * 1024


def build_inputs(size_mb: int, rebuild: bool) -> tuple[Path, Path, Path]:
    """(OVA with its .sha256, the same OVA without one, the disk member's bytes as a file)."""
    folder = CACHE_DIR / "bench" / f"publish-{size_mb}"
    ova = folder / "with-sidecar" / "bench-publish.ova"
    bare = folder / "bench-publish.ova"
    disk_copy = folder / "disk-member.vmdk"
    if rebuild or not (ova.is_file() and bare.is_file() and disk_copy.is_file()):
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "with-sidecar").mkdir(parents=True)
        started = time.monotonic()
        disk = make_test_disk("efi", folder / "source.vmdk", size_mb, fill_random=True)
        facts = BuildFacts(distro_name="ubuntu", distro_version="20.04",
                           kubernetes_version="v1.27.3", image_version="bench",
                           build_timestamp=1_764_320_000)
        assemble_ova(folder / "with-sidecar", "bench-publish", [disk], facts)
        disk.unlink()
        shutil.copyfile(ova, bare)
        [(_, member)] = read_ova(ova).disks()
        assert member is not None
        with ova.open("rb") as source, disk_copy.open("wb") as out:
            source.seek(member.offset)
            left = member.size
            while left:
                chunk = source.read(min(left, 8 * MIB))
                out.write(chunk)
                left -= len(chunk)
        print(f"built {ova} ({ova.stat().st_size / MIB:.0f} MiB) in "
              f"{time.monotonic() - started:.1f} s", flush=True)
    return ova, bare, disk_copy


def warm(*paths: Path) -> None:
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(8 * MIB):
                pass


def time_curl(sim: Simulator, ova: Path, disk: Path, run: int) -> float:
    """Open an import lease through the API, then time curl streaming the disk into it."""
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    index = read_ova(ova)
    with session(sim.connection) as si, ova.open("rb") as handle:
        handle.seek(index.descriptor_member.offset)
        descriptor = handle.read(index.descriptor_member.size).decode()
        content = si.RetrieveContent()
        [cluster] = retrieve(si, vim.ClusterComputeResource, ["resourcePool"])
        [datastore] = retrieve(si, vim.Datastore, ["name"])
        pool = cluster.get("resourcePool")
        spec = content.ovfManager.CreateImportSpec(
            ovfDescriptor=descriptor, resourcePool=pool, datastore=datastore.obj,
            cisp=vim.OvfManager.CreateImportSpecParams(entityName=f"curl-{run}"))
        lease = pool.ImportVApp(spec=spec.importSpec)
        info = wait_ready(si, lease)
        target = resolve_target(info.deviceUrl[0], sim.connection, None)
        started = time.perf_counter()
        subprocess.run(
            ["curl", "-sS", "-k", "--fail", "-o", "/dev/null", "-T", str(disk), "-X", "POST",
             "-H", f"Content-Type: {DISK_CONTENT_TYPE}", target.url],
            check=True,
        )
        elapsed = time.perf_counter() - started
        lease.HttpNfcLeaseAbort()
        destroy(info.entity, f"curl-{run}")
    return elapsed


def time_publish(sim: Simulator, ova: Path, run: int, out: Path) -> float:
    name = f"bench-{run}"
    options = PublishOptions(ova=ova, datacenters=("DC0",), cluster="DC0_C0",
                             datastore="LocalDS_0", network="VM Network", name=name,
                             output_dir=out)
    started = time.perf_counter()
    publish(options, sim.connection, log=io.StringIO(),
            progress=lambda label, total: Progress(label, total, io.StringIO(), tty=False))
    elapsed = time.perf_counter() - started
    delete_template(sim, name)
    return elapsed


def delete_template(sim: Simulator, name: str) -> None:
    with session(sim.connection) as si:
        for vm in vms_named(si, name):
            destroy(vm.obj, name)


def time_cli(sim: Simulator, ova: Path, run: int, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `invoke publish` as a user runs it."""
    name = f"bench-cli-{run}"
    env = {**os.environ, **sim.env, "INVOKE_OVAPIPE_OUTPUT": str(out)}
    command = [sys.executable, "-m", "invoke", "publish", "--ova", str(ova), "--datacenter",
               "DC0", "--cluster", "DC0_C0", "--datastore", "LocalDS_0", "--network",
               "VM Network", "--name", name]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"invoke publish failed with exit code {process.returncode}")
    delete_template(sim, name)
    return elapsed, usage.ru_maxrss / 1024


def _open_lease(si: Any, sim: Simulator, ova: Path, name: str) -> tuple[Any, Any, Any]:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    index = read_ova(ova)
    with ova.open("rb") as handle:
        handle.seek(index.descriptor_member.offset)
        descriptor = handle.read(index.descriptor_member.size).decode()
    content = si.RetrieveContent()
    [cluster] = retrieve(si, vim.ClusterComputeResource, ["resourcePool"])
    [datastore] = retrieve(si, vim.Datastore, ["name"])
    pool = cluster.get("resourcePool")
    spec = content.ovfManager.CreateImportSpec(
        ovfDescriptor=descriptor, resourcePool=pool, datastore=datastore.obj,
        cisp=vim.OvfManager.CreateImportSpecParams(entityName=name))
    lease = pool.ImportVApp(spec=spec.importSpec)
    info = wait_ready(si, lease)
    return lease, info, resolve_target(info.deviceUrl[0], sim.connection, None)


def time_fanout(sim: Simulator, ova: Path, consumers: int, run: int) -> float:
    """Seconds to upload the disk member to ``consumers`` leases from one OvaPass read."""
    import threading

    from ovapipe.vsphere.lease import upload
    from ovapipe.vsphere.ovapass import OvaPass

    index = read_ova(ova)
    [(_, member)] = index.disks()
    assert member is not None
    with session(sim.connection) as si:
        leases = [_open_lease(si, sim, ova, f"fan-{run}-{c}") for c in range(consumers)]
        errors: list[BaseException] = []
        started = time.perf_counter()
        with OvaPass(ova, index.size, [(member, index.expected_digest(member.name))],
                     whole_file_sha256=False, consumers=consumers) as one_pass:
            def send(consumer: int) -> None:
                try:
                    upload(leases[consumer][2], one_pass.stream(0, consumer), create=False,
                           progress=Progress("fan", member.size, io.StringIO(), tty=False))
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=send, args=(c,)) for c in range(consumers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            one_pass.finish()
        elapsed = time.perf_counter() - started
        for number, (lease, info, _) in enumerate(leases):
            lease.HttpNfcLeaseAbort()
            destroy(info.entity, f"fan-{run}-{number}")
    if errors:
        raise SystemExit(f"fan-out upload failed: {errors[0]}")
    return elapsed


def rss_at_sizes(sim: Simulator, sizes: list[int], rebuild: bool, out: Path) -> list[str]:
    lines = []
    for size_mb in sizes:
        ova, _, _ = build_inputs(size_mb, rebuild)
        warm(ova)
        seconds, rss = time_cli(sim, ova, 1000 + size_mb, out)
        lines.append(f"  {size_mb:5d} MiB disk ({ova.stat().st_size / MIB:5.0f} MiB OVA): "
                     f"invoke publish {seconds:.2f} s, peak RSS {rss:.0f} MB")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=640)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--fanout", type=int, default=3, help="N uploads from one read (0: skip)")
    parser.add_argument("--rss-sizes", default="100,640,4096",
                        help="disk sizes (MiB) for the RSS runs, comma-separated ('' skips)")
    args = parser.parse_args(argv)
    load = os.getloadavg()

    ova, bare, disk = build_inputs(args.size_mb, args.rebuild)
    warm(ova, bare, disk)
    out = CACHE_DIR / "bench" / "publish-output"
    results: dict[str, list[float]] = {"curl": [], "publish": [], "publish_no_sidecar": [],
                                       "cli": [], "rss": []}
    with Simulator(SimulatorOptions(), binary=build(quiet=True)) as sim:
        for run in range(args.runs):
            results["curl"].append(time_curl(sim, ova, disk, run))
            results["publish"].append(time_publish(sim, ova, run, out))
            results["publish_no_sidecar"].append(time_publish(sim, bare, 100 + run, out))
            seconds, rss = time_cli(sim, ova, run, out)
            results["cli"].append(seconds)
            results["rss"].append(rss)
            print(f"run {run + 1}: curl {results['curl'][-1]:.2f} s, publish "
                  f"{results['publish'][-1]:.2f} s, without .sha256 "
                  f"{results['publish_no_sidecar'][-1]:.2f} s, invoke publish {seconds:.2f} s "
                  f"({rss:.0f} MB)", flush=True)
        fan: dict[str, list[float]] = {"single": [], "fanout": []}
        if args.fanout > 1:
            for run in range(args.runs):
                pair = [("single", 1), ("fanout", args.fanout)]
                for name, count in pair if run % 2 == 0 else reversed(pair):
                    fan[name].append(time_fanout(sim, ova, count, 10 * run + count))
        sizes = [int(x) for x in args.rss_sizes.split(",") if x.strip()]
        rss_lines = rss_at_sizes(sim, sizes, args.rebuild, out) if sizes else []

    median = {key: statistics.median(values) for key, values in results.items()}
    size_mb = disk.stat().st_size / MIB
    ratio = median["publish"] / median["curl"]
    ratio_bare = median["publish_no_sidecar"] / median["curl"]
    ratio_cli = median["cli"] / median["curl"]
    peak = max(results["rss"])
    report: dict[str, Any] = {
        "disk_mb": round(size_mb), "runs": args.runs,
        **{f"median_{k}_s": round(v, 3) for k, v in median.items() if k != "rss"},
        "ratio_publish_over_curl": round(ratio, 3),
        "ratio_without_sidecar": round(ratio_bare, 3),
        "ratio_cli_over_curl": round(ratio_cli, 3),
        "peak_rss_mb": round(peak, 1),
    }
    print()
    print(f"disk member: {size_mb:.0f} MiB, median of {args.runs}")
    print(f"  curl -T (streaming POST to a lease)      {median['curl']:.2f} s "
          f"({size_mb / median['curl']:.0f} MiB/s)")
    print(f"  publish (with NAME.ova.sha256)           {median['publish']:.2f} s  "
          f"ratio {ratio:.2f}")
    print(f"  publish (sha256 computed on the read)    {median['publish_no_sidecar']:.2f} s  "
          f"ratio {ratio_bare:.2f}")
    print(f"  invoke publish (new process, all steps)  {median['cli']:.2f} s  "
          f"ratio {ratio_cli:.2f} (target <= {TARGET_RATIO})")
    print(f"  peak RSS of invoke publish               {peak:.0f} MB "
          f"(target < {TARGET_RSS_MB} MB)")
    if fan["fanout"]:
        single, many = statistics.median(fan["single"]), statistics.median(fan["fanout"])
        report["fanout"] = {"n": args.fanout, "single_s": round(single, 3),
                            "fanout_s": round(many, 3)}
        print(f"  upload to {args.fanout} leases from one read  {many:.2f} s  vs "
              f"{args.fanout} x single {args.fanout * single:.2f} s "
              f"(single {single:.2f} s; ratio {many / (args.fanout * single):.2f})")
    if rss_lines:
        print("  peak RSS by size:")
        print("\n".join(rss_lines))
    print(f"  load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(report)
    ok = ratio_cli <= TARGET_RATIO and peak < TARGET_RSS_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
