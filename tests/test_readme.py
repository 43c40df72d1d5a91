"""The README's "Try it on the simulator" commands, run as written.

The first block starts the simulator (its last line runs until Ctrl-C); the test takes the
``export`` lines it prints, as a user pastes them, and runs the second block with bash
against it. What they write (output/try/, output/node-v1/) the test removes.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import time

import pytest

from ovapipe.paths import REPO_ROOT

pytestmark = [pytest.mark.simulator, pytest.mark.packer, pytest.mark.slow]

SECTION = "## Try it on the simulator"
# What the commands write: the build under output/try, publish records under output/node-v1.
OUTPUTS = (REPO_ROOT / "output" / "try", REPO_ROOT / "output" / "node-v1")


def blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def exports_from(process: subprocess.Popen[bytes], timeout: float = 180) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines the simulator prints, up to its ready line."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    found: dict[str, str] = {}
    pending = b""
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not selector.select(deadline - time.monotonic()):
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode()
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                found[name] = value
            elif line.startswith("# https://"):
                return found
    raise AssertionError(f"the simulator did not get ready; saw {found}")


def test_the_readme_has_the_two_blocks() -> None:
    first, second = blocks()
    assert first.strip().splitlines()[-1].startswith("./run invoke sim ")
    assert "./run invoke publish" in second


def test_the_readme_example_runs_as_written() -> None:
    for output in OUTPUTS:
        if output.exists():
            pytest.skip(f"{output} exists (someone's own try): not touching it")
    first, second = blocks()
    *setup, serve = first.strip().splitlines()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VSPHERE_", "PKR_VAR_"))}
    sim = None
    try:
        for line in setup:
            subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=REPO_ROOT, env=env,
                           check=True, timeout=300, capture_output=True)
        sim = subprocess.Popen(["bash", "-c", serve], cwd=REPO_ROOT, env=env, bufsize=0,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        exports = exports_from(sim)
        assert sorted(exports) == ["VSPHERE_PASSWORD", "VSPHERE_SERVER",
                                   "VSPHERE_TLS_THUMBPRINT", "VSPHERE_USERNAME"]
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", second], cwd=REPO_ROOT,
                                env={**env, **exports}, capture_output=True, text=True,
                                timeout=900, check=False)
        assert result.returncode == 0, result.stderr[-4000:]
        assert "/DC0/vm/node-v1 (vmx-17, efi, snapshot root)" in result.stdout
        assert "PASS" in result.stdout
    finally:
        if sim is not None:
            os.killpg(sim.pid, signal.SIGINT)  # Ctrl-C stops it
            try:
                sim.wait(timeout=60)
            finally:
                if sim.poll() is None:
                    os.killpg(sim.pid, signal.SIGKILL)
                    sim.wait()
                if sim.stdout is not None:
                    sim.stdout.close()
        for output in OUTPUTS:
            shutil.rmtree(output, ignore_errors=True)
