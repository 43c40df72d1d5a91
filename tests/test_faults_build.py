"""build-ova interrupted or killed at each step (issue 12.6): rc 130, nothing left behind, and
the same command again ends rc 0 with only its output folder and no VM or seed ISO left."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_build import (  # noqa: F401 (fixtures)
    _remove_build_tmpdir,
    build_env,
    build_sim,
    invoke_argv,
    leftovers,
    no_seed_leftovers,
    run_build,
    sets,
    vm_names,
)

from ovapipe.faults import ENV_FAULT
from ovapipe.paths import REPO_ROOT

pytestmark = [pytest.mark.simulator, pytest.mark.packer, pytest.mark.slow]


def build_with_fault(sim: Any, out: Path, name: str, fault: str
                     ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(invoke_argv(out, *sets(name)), cwd=REPO_ROOT,
                          env={**build_env(sim), ENV_FAULT: fault}, capture_output=True,
                          text=True, timeout=420)


# Every step boundary of build-ova (ovapipe/build.py STEPS, plus the recovery inside
# preflight) with each way a process ends: a crash, Ctrl-C and a CI cancel.
POINTS = ("recover", "preflight", "render-vars", "packer-build", "export-disks",
          "assemble-OVA", "validate-ova", "write-output")


@pytest.mark.parametrize("fault", [f"build.{point}.before={action}"
                                   for point in POINTS for action in ("kill", "int", "term")])
def test_a_build_stopped_at_a_step_leaves_nothing_and_the_rerun_succeeds(
        build_sim: Any, tmp_path: Path, fault: str) -> None:  # noqa: F811
    name = "ovapipe-faulted"
    out = tmp_path / "output"
    before = vm_names(build_sim)
    stopped = build_with_fault(build_sim, out, name, fault)
    if fault.endswith("=kill"):
        assert stopped.returncode == -signal.SIGKILL
    else:
        assert stopped.returncode == 130, stopped.stderr[-3000:]
        assert "interrupted during step" in stopped.stderr
        assert vm_names(build_sim) == before
        assert leftovers(out) == []

    again = run_build(build_sim, out, *sets(name))
    assert again.returncode == 0, again.stderr[-3000:]
    assert vm_names(build_sim) == before
    assert leftovers(out) == [name]
