"""Exit codes and help of every task, run as users run them (``python -m ovapipe``).

0 ok (and every task's ``--help``/``-h``), 1 a check failed, 2 usage or configuration
(Invoke's own parser errors included), 130 interrupted. ``TASK --help`` must never contact
vCenter: VSPHERE_SERVER points at a listening socket the test owns, which must see no
connection.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ovapipe.paths import REPO_ROOT
from ovapipe.program import program

TASKS = sorted([
    "vars", "build-ova", "validate-ova", "sign-ova", "sbom", "verify-iso", "publish",
    "validate-template", "gpus", "pci-id", "cluster-template", "nightly", "sim", "test-disk",
    "demo",
])


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ovapipe", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def vcenter_trap() -> Iterator[tuple[dict[str, str], socket.socket]]:
    """VSPHERE_* pointing at a socket that records whether anyone connected."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    env = {**os.environ, "VSPHERE_SERVER": f"127.0.0.1:{port}", "VSPHERE_USERNAME": "u",
           "VSPHERE_PASSWORD": "p", "VSPHERE_TLS_THUMBPRINT": "00" * 20}
    env.pop("OVAPIPE_FAULT", None)
    try:
        yield env, listener
    finally:
        listener.close()


def contacted(listener: socket.socket) -> bool:
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def test_the_table_names_every_task() -> None:
    program.create_config()
    program.parse_core(["invoke"])
    program.parse_collection()
    assert sorted(program.collection.task_names) == TASKS


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("task", TASKS)
def test_help_of_every_task_wherever_it_appears(
    task: str, flag: str, vcenter_trap: tuple[dict[str, str], socket.socket]
) -> None:
    env, listener = vcenter_trap
    result = run([task, flag], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: invoke [--core-opts] {task} ")
    assert "Traceback" not in result.stderr
    # After other flags too, where a required argument would take it as its value.
    late = {"validate-ova": ["--path"], "publish": ["--ova", "x.ova", "--name"],
            "gpus": ["--datacenter", "DC0"], "pci-id": [],
            "validate-template": ["--datacenter", "DC0", "--name"]}.get(task, [])
    result = run([task, *late, flag], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: invoke [--core-opts] {task} ")
    assert not contacted(listener), f"{task} {flag} contacted vCenter"


@pytest.mark.parametrize("task", TASKS)
def test_invokes_own_parser_errors_are_usage_errors(
    task: str, vcenter_trap: tuple[dict[str, str], socket.socket]
) -> None:
    env, _ = vcenter_trap
    result = run([task, "--no-such-flag"], env)
    assert result.returncode == 2, result.stderr
    # validate-template first misses its two required arguments; either is a usage error.
    assert ("No idea what '--no-such-flag' is!" in result.stderr
            or "did not receive required positional arguments" in result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "text"), [
    (["validate-ova"], "did not receive required positional arguments: 'path'"),
    (["publish", "--ova"], "needed value and was not given one"),
    (["nosuchtask"], "No idea what 'nosuchtask' is!"),
    (["--nosuchcoreflag"], "No idea what '--nosuchcoreflag' is!"),
])
def test_missing_arguments_and_unknown_names_are_usage_errors(
    args: list[str], text: str, vcenter_trap: tuple[dict[str, str], socket.socket]
) -> None:
    result = run(args, vcenter_trap[0])
    assert result.returncode == 2 and text in result.stderr, result.stderr


CONFIG_ERRORS = {
    "vars": ["--profile", "nope"],
    "build-ova": ["--profile", "nope"],
    "validate-ova": ["--path", "missing.ova"],
    "sign-ova": ["--path", "missing.ova"],
    "sbom": ["--path", "missing.ova"],
    "verify-iso": ["--iso", "x.iso"],  # no keyring pinned: iso.no-keyring
    "publish": ["--ova", "missing.ova", "--datacenter", "DC0"],
    "validate-template": ["--datacenter", "DC0", "--name", "x", "--min-vmx", "vmx-x"],
    "gpus": ["--datacenter", "DC0", "--insecure"],  # VSPHERE_USERNAME unset below
    "pci-id": ["--value", "zzzz"],
    "cluster-template": ["--gpu", "nothex"],
    "nightly": ["--keep", "0"],
    "sim": ["--port", "x"],
    "test-disk": ["--kind", "floppy"],
}


@pytest.mark.parametrize("task", sorted(CONFIG_ERRORS))
def test_configuration_errors_exit_2(
    task: str, vcenter_trap: tuple[dict[str, str], socket.socket], tmp_path: Path
) -> None:
    env, listener = vcenter_trap
    if task == "gpus":
        env = {k: v for k, v in env.items() if k != "VSPHERE_USERNAME"}
    result = run([task, *CONFIG_ERRORS[task]], env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert not contacted(listener)


@pytest.mark.parametrize("task", [t for t in TASKS if t != "demo"])
def test_ctrl_c_exits_130(task: str, vcenter_trap: tuple[dict[str, str], socket.socket]
                          ) -> None:
    env, _ = vcenter_trap
    args = {**CONFIG_ERRORS, "vars": [], "validate-ova": ["--path", "x.ova"]}[task]
    result = run([task, *args], {**env, "OVAPIPE_FAULT": "task.start=int"})
    assert result.returncode == 130, result.stderr
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_in_demo_exits_130(vcenter_trap: tuple[dict[str, str], socket.socket]) -> None:
    result = run(["demo"], {**vcenter_trap[0], "OVAPIPE_FAULT": "task.start=int"})
    assert result.returncode == 130, result.stderr


@pytest.fixture(scope="module")
def vmx13_ova(tmp_path_factory: pytest.TempPathFactory, efi_vmdk: Any, build_facts: Any) -> Any:
    from ovapipe.ova import assemble_ova

    out = tmp_path_factory.mktemp("vmx13")
    return assemble_ova(out, "old-node", [efi_vmdk], dataclasses.replace(build_facts, vmx=13)
                        ).path


def test_failed_checks_exit_1(vmx13_ova: Path,
                              vcenter_trap: tuple[dict[str, str], socket.socket]) -> None:
    env, listener = vcenter_trap
    result = run(["validate-ova", "--path", str(vmx13_ova)], env)
    assert result.returncode == 1, result.stderr
    result = run(["publish", "--ova", str(vmx13_ova), "--datacenter", "DC0"], env)
    assert result.returncode == 1, result.stderr
    assert "fails validate-ova" in result.stderr
    assert not contacted(listener)


@pytest.mark.simulator
def test_exit_codes_against_vcenter(simulator: Any, efi_ova: Path) -> None:
    env = {**os.environ, **simulator.env}
    failed = run(["validate-template", "--datacenter", "DC0", "--name", "DC0_H0_VM0"], env)
    assert failed.returncode == 1, failed.stderr
    ok = run(["gpus", "--datacenter", "/DC0", "--cluster", "/DC0/host/DC0_C0"], env)
    assert ok.returncode == 0, ok.stderr
    wrong_pin = run(["gpus", "--datacenter", "DC0"],
                    {**env, "VSPHERE_TLS_THUMBPRINT": "AB" * 20})
    assert wrong_pin.returncode == 2 and "does not match" in wrong_pin.stderr
    wrong_password = run(["gpus", "--datacenter", "DC0"], {**env, "VSPHERE_PASSWORD": "nope"})
    assert wrong_password.returncode == 2, wrong_password.stderr
