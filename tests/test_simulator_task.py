"""`invoke sim`: flags checked before anything is created, SIGTERM like Ctrl-C (issue 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ovapipe.errors import ConfigError
from ovapipe.paths import REPO_ROOT
from ovapipe.simulator import SimulatorOptions


def _sim(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "sim", *args], cwd=REPO_ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "99999"], "--port 99999: expected 0 (a free port) to 65535"),
        (["--installer-vm", "build-*"], "--installer-vm needs --installer-disk"),
        (["--installer-disk", "/nonexistent.vmdk"], "--installer-disk needs --installer-vm"),
        (["--esx-version", "seven"], "--esx-version"),
        (["--gpu", "DC0_H0"], "expected HOST_GLOB=VENDOR:DEVICE"),
        (["--installer-seconds", "-1"], "--installer-seconds"),
    ],
)
def test_bad_flags_are_usage_errors_and_create_nothing(
    tmp_path: Path, simulator_binary: Path, args: list[str], says: str
) -> None:
    """Measured: --port 99999 printed a Go panic stack; --installer-vm without
    --installer-disk left an empty temporary folder."""
    process = _sim(tmp_path, *args)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, (out, err)
    assert says in err
    assert "goroutine" not in err and "panic" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_binary_itself_refuses_a_bad_port_without_a_stack(simulator_binary: Path) -> None:
    result = subprocess.run([str(simulator_binary), "--port", "99999"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "--port 99999: expected 0 (a free port) to 65535" in result.stderr
    assert "goroutine" not in result.stderr


def test_options_check_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        SimulatorOptions(port=-1, installer_vm="x", vc_version="6.7.0").check()
    message = excinfo.value.message
    assert "--port -1" in message and "--installer-vm needs --installer-disk" in message
    assert "older than --esx-version" in message


def test_sigterm_stops_it_like_ctrl_c_and_removes_its_folder(
    tmp_path: Path, simulator_binary: Path
) -> None:
    """Measured: SIGTERM left the simulator's folder with info.json, which holds its password."""
    process = _sim(tmp_path)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C stops it" in line:
            break
    assert any(line.startswith("export VSPHERE_PASSWORD=") for line in lines), lines
    folders = list(tmp_path.glob("ovapipe-sim-*"))
    assert len(folders) == 1 and (folders[0] / "info.json").exists()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, (out, err)
    assert "stopping the simulator" in out
    assert list(tmp_path.iterdir()) == []
