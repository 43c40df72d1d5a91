"""Benchmark: `invoke validate-ova` as a whole process against `openssl dgst -sha256`.

    .venv/bin/python benchmarks/validate_ova.py [--size-mb 700] [--small-mb 72] [--runs 5]

Builds (once, cached under .cache/bench/) EFI test disks whose root partition is random bytes,
so the streamOptimized VMDK does not compress away, and assembles them into a large OVA
(>= 600 MiB; target: validate-ova <= 1.1x openssl) and a small one (about 30 MiB; target
<= 0.25 s). With the files in the page cache and the project's bytecode compiled, it runs,
interleaved, `openssl dgst -sha256 FILE` and `invoke validate-ova FILE --json` (each a new
process, as a user runs them), and prints medians, the ratio, each process's peak RSS, and the
start-up floor (`invoke --version`: interpreter + Invoke, before any ovapipe code runs).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ovapipe.ova import BuildFacts, assemble_ova  # noqa: E402
from ovapipe.paths import CACHE_DIR  # noqa: E402
from ovapipe.testdisk import make_test_disk  # noqa: E402

TARGET_RATIO = 1.1
TARGET_SMALL_S = 0.25
MIB = 1024 * 1024
INVOKE = Path(sys.executable).with_name("invoke")


def build_ova(size_mb: int, rebuild: bool = False) -> Path:
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


def run(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process; exits on failure."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=REPO, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"`{' '.join(command)}` exited {code}")
    return elapsed, usage.ru_maxrss / 1024


def measure(ova: Path, runs: int) -> dict[str, list[tuple[float, float]]]:
    commands = {
        "openssl": ["openssl", "dgst", "-sha256", str(ova)],
        "validate": [str(INVOKE), "validate-ova", str(ova), "--json"],
        "startup": [str(INVOKE), "--version"],
    }
    for command in commands.values():  # warm the page cache and the bytecode
        run(command)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    names = list(commands)
    for number in range(runs):
        order = names if number % 2 == 0 else list(reversed(names))
        for name in order:
            results[name].append(run(commands[name]))
    return results


def summary(results: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    return {name: (statistics.median(t for t, _ in values), max(r for _, r in values))
            for name, values in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=700, help="large disk size (MiB)")
    parser.add_argument("--small-mb", type=int, default=72, help="small disk size (MiB)")
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (median)")
    parser.add_argument("--rebuild", action="store_true", help="build the OVAs again")
    args = parser.parse_args()

    compileall.compile_dir(REPO / "ovapipe", quiet=1)
    compileall.compile_dir(REPO / "validators", quiet=1)
    compileall.compile_file(REPO / "tasks.py", quiet=1)
    large = build_ova(args.size_mb, args.rebuild)
    small = build_ova(args.small_mb, args.rebuild)
    if large.stat().st_size < 600 * MIB:
        sys.exit(f"{large} is under 600 MiB; raise --size-mb")
    load = os.getloadavg()
    ok = True
    for label, ova in (("large", large), ("small", small)):
        medians = summary(measure(ova, args.runs))
        size = ova.stat().st_size / MIB
        floor, floor_rss = medians["openssl"]
        ours, our_rss = medians["validate"]
        start, _ = medians["startup"]
        print(f"{label} OVA {ova.name}: {size:.0f} MiB, median of {args.runs} interleaved runs")
        print(f"  openssl dgst -sha256        {floor:.3f} s  ({size / floor:.0f} MiB/s), "
              f"RSS {floor_rss:.0f} MiB")
        print(f"  invoke validate-ova --json  {ours:.3f} s  ratio {ours / floor:.2f}, "
              f"RSS {our_rss:.0f} MiB")
        print(f"  start-up floor (invoke --version) {start:.3f} s")
        if label == "large":
            good = ours / floor <= TARGET_RATIO
            print(f"  target <= {TARGET_RATIO}x openssl: {'OK' if good else 'OVER'}")
        else:
            good = ours <= TARGET_SMALL_S
            print(f"  target <= {TARGET_SMALL_S} s: {'OK' if good else 'OVER'}")
        ok = ok and good
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({os.cpu_count()} CPUs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
