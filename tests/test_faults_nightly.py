"""Interrupts mean stop (issue 12.4): SIGINT/SIGTERM at a nightly stage end the job (rc 130),
release the lock, and leave a report that says interrupted; the same run again ends ok.

Before the fix the interrupt became a failed stage and the job went on; SIGTERM between stages
left the lock and a report with ``ok: true``.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_nightly import PROFILE, env_for, inventory, request, sim  # noqa: F401 (fixture)

from ovapipe.errors import Interrupted
from ovapipe.faults import ENV_FAULT, _fired
from ovapipe.nightly import run_nightly
from ovapipe.vsphere.lock import lock_folder

pytestmark = [pytest.mark.simulator, pytest.mark.packer, pytest.mark.slow]


@pytest.mark.parametrize("fault", ["nightly.validate-template.before=term",
                                   "nightly.gpus.before=int"])
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
    assert stages[interrupted] == "interrupted"
    assert "retention" not in stages  # nothing ran after the interrupt
    junit = ET.parse(tmp_path / "report" / "junit.xml").getroot()
    assert int(junit.get("errors", "0")) >= 1
    assert f"folder:{lock_folder(PROFILE)}" not in inventory(sim)

    monkeypatch.delenv(ENV_FAULT)
    again = run_nightly(request(tmp_path, resume=True), env_for(sim), log=io.StringIO())
    assert again.ok, again.summary()
