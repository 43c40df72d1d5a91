"""Interrupts mean stop (issue 12.4): SIGINT/SIGTERM at a nightly stage end the job (rc 130),
release the lock, and leave a report that says interrupted; the same run again ends ok.

Before the fix the interrupt became a failed stage and the job went on; SIGTERM between stages
left the lock and a report with ``ok: true``.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_nightly import PROFILE, env_for, inventory, request, sim  # noqa: F401 (fixture)

from ovapipe.errors import Interrupted
from ovapipe.faults import ENV_FAULT, _fired
from ovapipe.nightly import run_nightly
from ovapipe.paths import REPO_ROOT
from ovapipe.vsphere.lock import lock_folder

pytestmark = [pytest.mark.simulator, pytest.mark.packer, pytest.mark.slow]

OTHER_PROFILE = "ubuntu-2204-efi"


# Every point where nightly may be stopped: before each stage, and between the last stage and
# the lock's release.
POINTS = (*(f"nightly.{stage}.before" for stage in (
    "preflight", "lock", "vars", "build-ova", "validate-ova", "publish", "validate-template",
    "gpus", "cluster-template", "retention")), "nightly.profile.end")


@pytest.mark.parametrize("fault", [f"{point}={action}" for point in POINTS
                                   for action in ("int", "term")])
def test_an_interrupt_at_a_stage_stops_the_job_and_never_reads_green(
        sim: Any, tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setenv(ENV_FAULT, fault)
    _fired.clear()
    with pytest.raises(Interrupted) as raised:
        run_nightly(request(tmp_path), env_for(sim), log=io.StringIO())
    assert raised.value.exit_code == 130
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["ok"] is False and report["interrupted"]
    stages = {s["stage"]: s["status"] for s in report["stages"]}
    interrupted = fault.split(".")[1]
    if interrupted == "profile":  # between stages: every stage ran ok, the run still is not
        assert set(stages.values()) == {"ok"}
    else:
        assert stages[interrupted] == "interrupted"
        assert report["stages"][-1]["stage"] == interrupted  # nothing ran after the interrupt
    junit = ET.parse(tmp_path / "report" / "junit.xml").getroot()
    assert int(junit.get("errors", "0")) >= 1
    assert f"folder:{lock_folder(PROFILE)}" not in inventory(sim)

    monkeypatch.delenv(ENV_FAULT)
    again = run_nightly(request(tmp_path, resume=True), env_for(sim), log=io.StringIO())
    assert again.ok, again.summary()


KILLED_RUN = """
import io, sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_nightly import request
from ovapipe.nightly import run_nightly
import os
report = run_nightly(request(Path(sys.argv[1]), resume=sys.argv[2] == "resume"), dict(os.environ),
                     log=sys.stderr)
print(report.summary())
sys.exit(0 if report.ok else 1)
"""


def run_in_process(simulator: Any, tmp: Path, *, resume: bool, fault: str | None
                   ) -> subprocess.CompletedProcess[str]:
    env = env_for(simulator)
    env.pop(ENV_FAULT, None)
    if fault:
        env[ENV_FAULT] = fault
    return subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp),
                           "resume" if resume else "fresh"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("point", [*POINTS, "build.export-disks.before"])
def test_resume_after_a_sigkill_finishes_the_run_with_one_report(
        sim: Any, tmp_path: Path, point: str) -> None:  # noqa: F811
    before = inventory(sim)
    killed = run_in_process(sim, tmp_path, resume=False, fault=f"{point}=kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    resumed = run_in_process(sim, tmp_path, resume=True, fault=None)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-4000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["ok"] is True
    statuses = [(s["stage"], s["status"]) for s in report["stages"]]
    assert len({stage for stage, _ in statuses}) == len(statuses)  # one entry per stage
    after = inventory(sim)
    (template,) = [name for name in after if name not in before]
    assert after[template][0] is True  # the one new thing is the template
    assert list(tmp_path.glob(".*.run.json")) == [] and list(tmp_path.glob(".*.partial-*")) == []
    from test_build import datastore_files

    assert [f for f in datastore_files(sim) if "packer_cache/" in f] == []  # no seed ISO


PROFILE_RUN = """
import os, sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_nightly import request
from dataclasses import replace
from ovapipe.nightly import run_nightly
report = run_nightly(replace(request(Path(sys.argv[1])), profiles=(sys.argv[2],)),
                     dict(os.environ), log=sys.stderr)
print(report.summary())
sys.exit(0 if report.ok else 1)
"""


def test_two_profiles_run_at_once_and_both_succeed(
        make_simulator: Any, efi_vmdk: Path, tmp_path: Path) -> None:
    """Issue 19.1: one vCenter-wide lock made the second matrix job fail every night."""
    both = make_simulator(installer_vm="ubuntu-*", installer_disk=efi_vmdk, installer_seconds=2)
    go = tmp_path / "go"

    def start(profile: str, folder: str, fault: str | None = None) -> subprocess.Popen[str]:
        env = env_for(both)
        if fault:
            env[ENV_FAULT] = fault
        return subprocess.Popen([sys.executable, "-c", PROFILE_RUN, str(tmp_path / folder),
                                 profile], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    # The first run of PROFILE holds its lock and waits at its first stage until told to go.
    first = start(PROFILE, "first", f"nightly.vars.before=wait:{go}")
    other = start(OTHER_PROFILE, "other")
    try:
        deadline = time.monotonic() + 120
        while f"folder:{lock_folder(PROFILE)}" not in inventory(both) and \
                time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)  # waiting for the lock folder to appear (the event itself)
        second = start(PROFILE, "second")
        second_out, _ = second.communicate(timeout=600)
        go.touch()
        (first_out, first_err), (other_out, other_err) = (
            p.communicate(timeout=900) for p in (first, other))
    finally:
        go.touch()
        for process in (first, other):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert second.returncode == 1, second_out
    assert f"NIGHTLY FAILED at lock [{PROFILE}]: another nightly run holds" in second_out
    assert first.returncode == 0, first_out + first_err[-3000:]
    assert other.returncode == 0, other_out + other_err[-3000:]


def test_a_report_interrupted_between_stages_is_never_green(tmp_path: Path) -> None:
    from ovapipe.report import NightlyReport, StageResult

    report = NightlyReport("id", "2026-11-28T03:00:00+00:00")
    report.stages.append(StageResult("publish", "ok", "2026-11-28T03:00:00+00:00", 1.0, "p/DC0"))
    report.interrupt("interrupted between stages (Ctrl-C or SIGTERM)")
    report.write(tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["ok"] is False and saved["interrupted"]
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert junit.get("errors") == "1"
    assert [c.get("name") for c in junit.iter("testcase") if c.find("error") is not None] == \
        ["interrupted"]
    assert report.summary().startswith("NIGHTLY INTERRUPTED")
