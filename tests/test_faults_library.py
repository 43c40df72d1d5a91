"""publish --library killed or interrupted at its fault points; the next run recovers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ovapipe.paths import REPO_ROOT
from ovapipe.vsphere.library import content
from ovapipe.vsphere.library.rest import rest_session

DATACENTERS = ("DC0", "DC1")


def publish_cli(sim: Any, ova: Path, out: Path,
                fault: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ovapipe", "publish", "--ova", str(ova), "--library", "L",
               "--cluster", "*_C0", "--datastore", "LocalDS_0", "--network", "VM Network"]
    for dc in DATACENTERS:
        command += ["--datacenter", dc]
    env = {**os.environ, **sim.env, "INVOKE_OVAPIPE_OUTPUT": str(out), "OVAPIPE_FAULT": fault}
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def items_and_sessions(sim: Any) -> tuple[list[content.Item], list[str]]:
    with rest_session(sim.connection) as api:
        libraries = content.find_libraries(api, "L")
        items = [i for lib in libraries for i in content.list_items(api, lib.id)]
        return items, [s for s in content.list_update_sessions(api)
                       if (found := content.get_update_session(api, s)) is not None
                       and found.state == "ACTIVE"]


@pytest.fixture
def two_dc(make_simulator: Callable[..., Any]) -> Any:
    return make_simulator(datacenters=len(DATACENTERS))


@pytest.mark.parametrize("point", ["publish.library.uploaded", "publish.library-upload.before"])
def test_sigint_at_a_library_point_leaves_no_item_and_no_session(
        two_dc: Any, efi_ova: Path, tmp_path: Path, point: str) -> None:
    result = publish_cli(two_dc, efi_ova, tmp_path, f"{point}=int")
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert items_and_sessions(two_dc) == ([], [])


def test_a_killed_upload_is_removed_by_the_next_run(two_dc: Any, efi_ova: Path,
                                                    tmp_path: Path) -> None:
    killed = publish_cli(two_dc, efi_ova, tmp_path, "publish.library.uploaded=kill")
    assert killed.returncode == -9
    [left], [open_session] = items_and_sessions(two_dc)
    assert "ovapipe.state: in-progress" in left.description  # marked: the next run's to remove
    again = publish_cli(two_dc, efi_ova, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"removed library item {left.name} ({left.id})" in again.stderr
    assert f"and its update session(s) {open_session}" in again.stderr
    [item], sessions = items_and_sessions(two_dc)
    assert sessions == []
    assert item.id != left.id and "ovapipe.state" not in item.description
    assert again.stdout.count(f"from library item {item.id}") == len(DATACENTERS)
