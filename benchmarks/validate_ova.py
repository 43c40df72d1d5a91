"""Benchmark: validate-ova against the hashing floor (`openssl dgst -sha256`) on a >= 1 GiB OVA.

    .venv/bin/python benchmarks/validate_ova.py [--size-mb 1200] [--runs 5] [--rebuild]

Builds (once, cached under .cache/bench/) an EFI test disk whose root partition is random
bytes, so the streamOptimized VMDK does not compress away, and assembles it into an OVA.
Then, with the file in the page cache, times ``validate_ova`` (in this process) and
``openssl dgst -sha256`` (a child) on the same file, alternating, and prints the medians,
their ratio (target <= 1.3) and the peak RSS of a fresh process running the validation.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ovapipe.validators.ova import validate_ova

from ovapipe.ova import BuildFacts, assemble_ova
from ovapipe.paths import CACHE_DIR
from ovapipe.testdisk import make_test_disk

TARGET_RATIO = 1.3
MIB = 1024 * 1024


def build_ova(size_mb: int, rebuild: bool) -> Path:
    folder = CACHE_DIR / "bench"
    ova = folder / f"bench-{size_mb}.ova"
    if ova.is_file() and not rebuild:
        return ova
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    disk = make_test_disk("efi", folder / f"bench-{size_mb}.vmdk", size_mb, fill_random=True)
    facts = BuildFacts(
        distro_name="ubuntu", distro_version="20.04", kubernetes_version="v1.27.3",
        image_version="bench", build_timestamp=1_764_320_000,
    )
    result = assemble_ova(folder, f"bench-{size_mb}", [disk], facts)
    disk.unlink()
    print(f"built {result.path} ({result.size / MIB:.0f} MiB) in "
          f"{time.monotonic() - started:.1f} s", flush=True)
    return result.path


def time_openssl(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["openssl", "dgst", "-sha256", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_validate(path: Path) -> float:
    started = time.perf_counter()
    report = validate_ova(path)
    elapsed = time.perf_counter() - started
    if not report.ok:
        sys.exit(f"benchmark OVA does not validate:\n{report.render()}")
    return elapsed


def peak_rss_of_fresh_validation(path: Path) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of `invoke validate-ova PATH --json` in a new process."""
    invoke = Path(sys.executable).with_name("invoke")
    started = time.perf_counter()
    child = subprocess.Popen([str(invoke), "validate-ova", str(path), "--json"],
                             stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"invoke validate-ova exited {child.returncode}")
    return usage.ru_maxrss / 1024, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1200, help="virtual disk size (MiB)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    ova = build_ova(args.size_mb, args.rebuild)
    size = ova.stat().st_size
    if size < 1024 * MIB:
        sys.exit(f"{ova} is {size / MIB:.0f} MiB; the benchmark needs >= 1 GiB (--size-mb)")
    time_openssl(ova)  # warm the page cache: both sides read from memory
    time_validate(ova)
    openssl: list[float] = []
    validate: list[float] = []
    for run in range(args.runs):
        pair = [("openssl", time_openssl), ("validate", time_validate)]
        if run % 2:
            pair.reverse()
        for name, measure in pair:
            (openssl if name == "openssl" else validate).append(measure(ova))
    floor, ours = statistics.median(openssl), statistics.median(validate)
    ratio = ours / floor
    rss, cli_seconds = peak_rss_of_fresh_validation(ova)
    in_process_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"file: {ova} ({size / MIB:.0f} MiB)")
    print(f"openssl dgst -sha256: median {floor:.3f} s of {args.runs} "
          f"({size / MIB / floor:.0f} MiB/s) {[round(t, 3) for t in openssl]}")
    print(f"validate_ova:         median {ours:.3f} s of {args.runs} "
          f"({size / MIB / ours:.0f} MiB/s) {[round(t, 3) for t in validate]}")
    print(f"ratio validate/openssl: {ratio:.2f} (target <= {TARGET_RATIO}) "
          f"{'OK' if ratio <= TARGET_RATIO else 'OVER TARGET'}")
    print(f"peak RSS: `invoke validate-ova --json` in a fresh process {rss:.0f} MiB "
          f"(wall {cli_seconds:.2f} s incl. interpreter start); "
          f"this process {in_process_rss:.0f} MiB")


if __name__ == "__main__":
    main()
