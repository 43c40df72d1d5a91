"""Shared pytest fixtures. Each part keeps its fixtures in its own clearly marked block."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

# ======================================================================== simulator block
# Owner: simulator part. Fixtures:
#   simulator        a running simulator with default options (function scope)
#   make_simulator   factory: make_simulator(esx_version="6.7.0", gpus=["DC0_H0=8086:1234"])
#                    (keyword arguments of ovapipe.simulator.SimulatorOptions); stopped at
#                    teardown, several at once are fine
#   sim_session      a logged-in pyVmomi ServiceInstance to `simulator` over pinned TLS
# A failing test gets the log of every simulator it started appended to its report.

_SIMULATORS = pytest.StashKey[list[Any]]()


@pytest.fixture(scope="session")
def simulator_binary() -> Any:
    from ovapipe.simulator import build

    return build()


@pytest.fixture
def make_simulator(
    request: pytest.FixtureRequest, simulator_binary: Any
) -> Iterator[Callable[..., Any]]:
    from ovapipe.simulator import Simulator, SimulatorOptions

    started: list[Simulator] = []

    def make(**options: Any) -> Simulator:
        sim = Simulator(SimulatorOptions(**options), binary=simulator_binary).start()
        started.append(sim)
        request.node.stash.setdefault(_SIMULATORS, []).append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in reversed(started):
            sim.stop()


@pytest.fixture
def simulator(make_simulator: Callable[..., Any]) -> Any:
    return make_simulator()


@pytest.fixture
def sim_session(simulator: Any) -> Iterator[Any]:
    from ovapipe.vsphere.connect import session

    with session(simulator.connection) as service:
        yield service


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for sim in item.stash.get(_SIMULATORS, []):
            lines = sim.log_text().splitlines()
            tail = "\n".join(lines[-300:])
            report.sections.append((f"simulator log {sim.url} (last 300 lines)", tail))


# ==================================================================== end simulator block


# ============================================================================== OVA block
# Owner: OVA part. Fixtures (built once per session into a temporary folder; treat them as
# read-only, copy before changing):
#   efi_vmdk      streamOptimized VMDK: GPT, ESP (FAT32) with \EFI\BOOT\BOOTX64.EFI, ext4 root
#   bios_vmdk     streamOptimized VMDK: MBR, one Linux partition, no ESP
#   build_facts   an ovapipe.ova.BuildFacts for test images (fixed timestamp)
#   efi_ova       an OVA assembled by ovapipe from efi_vmdk: vmx-17, EFI, passes validate-ova


@pytest.fixture(scope="session")
def efi_vmdk(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ovapipe.testdisk import make_test_disk

    return make_test_disk("efi", tmp_path_factory.mktemp("disks") / "efi.vmdk")


@pytest.fixture(scope="session")
def bios_vmdk(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ovapipe.testdisk import make_test_disk

    return make_test_disk("bios", tmp_path_factory.mktemp("disks") / "bios.vmdk")


@pytest.fixture(scope="session")
def build_facts() -> Any:
    from ovapipe.ova import BuildFacts

    return BuildFacts(
        distro_name="ubuntu", distro_version="20.04", kubernetes_version="v1.27.3",
        image_version="ubuntu-2004-efi-kube-v1.27.3-test", build_timestamp=1_764_320_000,
        git_commit="0000000000000000000000000000000000000000",
    )


@pytest.fixture(scope="session")
def efi_ova(tmp_path_factory: pytest.TempPathFactory, efi_vmdk: Any, build_facts: Any) -> Any:
    from ovapipe.ova import assemble_ova

    out = tmp_path_factory.mktemp("ova")
    return assemble_ova(out, "ubuntu-2004-efi-test", [efi_vmdk], build_facts).path


# ========================================================================== end OVA block


# ================================================================== temp directory block
# Owner: hostile-inputs part (issue 17). The session, and every subprocess it starts (through
# TMPDIR), gets a private temporary folder; whatever is left in it at the end, apart from
# pytest's own tmp_path folders, fails the run and is listed. The folder is then removed, so
# the machine's /tmp (shared with other processes) is never scanned and never left dirty.

_PRIVATE_TMP = pytest.StashKey[Any]()
_PYTEST_TMP_PREFIX = "pytest-of-"
# Known leftovers, reported but not yet failing the run. Packer's seed folders and ISOs
# (packer_to_cdrom*/, packer*.iso) no longer are: build-ova gives Packer a TMPDIR it removes.
KNOWN_LEFTOVERS: tuple[str, ...] = ()


def pytest_configure(config: pytest.Config) -> None:
    import os
    import tempfile
    from pathlib import Path

    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller's TMPDIR is already inherited
    private = Path(tempfile.mkdtemp(prefix="ovapipe-tests-"))
    private.chmod(0o711)  # tests that run a step as another user (nobody) must reach into it
    config.stash[_PRIVATE_TMP] = (private, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = str(private)
    tempfile.tempdir = None  # recomputed from TMPDIR on next use


def leftovers_in(folder: Any) -> list[str]:
    """Paths under ``folder`` the suite left behind (pytest's tmp_path folders excepted)."""
    return sorted(
        str(path.relative_to(folder)) for path in folder.iterdir()
        if not path.name.startswith(_PYTEST_TMP_PREFIX)
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os
    import shutil
    import tempfile

    saved = session.config.stash.get(_PRIVATE_TMP, None)
    if saved is None:
        return
    private, previous = saved
    everything = leftovers_in(private)
    left = [name for name in everything if not name.startswith(KNOWN_LEFTOVERS)]
    known = [name for name in everything if name not in left]
    if previous is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous
    tempfile.tempdir = None
    shutil.rmtree(private, ignore_errors=True)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if known and reporter is not None:
        reporter.write_line(f"warning: known leftovers in the temporary directory (removed): "
                            f"{', '.join(known[:20])}", yellow=True)
    if left:
        message = (f"the test suite left {len(left)} item(s) in its temporary directory: "
                   + ", ".join(left[:20]))
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ============================================================== end temp directory block


# ====================================================================== test lanes block
# Owner: test speed. Markers follow what a test uses, so a new test is in the right lane
# without remembering to mark it:
#   simulator  the test (or a fixture it uses) starts or talks to the govmomi simulator
#   faults     tests/test_faults_*.py: the fault-injection lane
# `./run tests -m "not simulator"` is the fast lane (docs/CONTRIBUTING.md).

_SIMULATOR_FIXTURES = frozenset({"simulator_binary", "make_simulator", "simulator", "sim_session"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _SIMULATOR_FIXTURES:
            item.add_marker(pytest.mark.simulator)
        if item.path.name.startswith("test_faults_"):
            item.add_marker(pytest.mark.faults)


# ================================================================== end test lanes block
