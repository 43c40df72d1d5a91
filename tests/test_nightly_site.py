"""`invoke nightly` as a site runs it: against `invoke sim`, with site var files, outside the demo.

Also: a wrong setting fails at the preflight stage before anything is built, and two runs
started together from one checkout both finish with reports of their own.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ovapipe import config
from ovapipe.nightly import NightlyRequest, run_nightly
from ovapipe.paths import REPO_ROOT

pytestmark = [pytest.mark.simulator, pytest.mark.packer, pytest.mark.slow]

PROFILE = "ubuntu-2004-efi"
PACKER_SITE = {
    "datacenter": "DC0", "cluster": "DC0_C0", "datastore": "LocalDS_0", "network": "VM Network",
    "iso_url": "", "iso_checksum": "",
    "iso_paths": ["[LocalDS_0] iso/ubuntu-20.04.6-live-server-amd64.iso"],
    "boot_wait": "1s", "shutdown_timeout": "3m", "disk_size": 8192, "insecure_connection": True,
}


@pytest.fixture
def invoke_sim(efi_vmdk: Path) -> Iterator[dict[str, str]]:
    """`invoke sim` in its own process; yields the VSPHERE_* lines it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "sim", "--installer-vm", f"{PROFILE}-*",
         "--installer-disk", str(efi_vmdk), "--installer-seconds", "2"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=clean_env())
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()],
                              daemon=True)
    reader.start()
    env: dict[str, str] = {}
    try:
        while True:
            line = lines.get(timeout=120)
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                env[name] = value
            elif line.startswith("# https://"):
                break
        yield env
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("VSPHERE_", "PKR_VAR_", "GITHUB_", "OVAPIPE_RUN_ID"))}


def site_files(tmp: Path) -> Path:
    """A site var file named in a site invoke.yaml, as a platform team would keep them."""
    (tmp / "site.json").write_text(json.dumps(PACKER_SITE))
    (tmp / "extra.json").write_text(json.dumps({"memory": 2048}))
    settings = tmp / "site.yaml"
    settings.write_text(
        "ovapipe:\n"
        f"  output: {tmp / 'out'}\n"
        f"  var_files: [{tmp / 'site.json'}]\n"
        "  datacenter: DC0\n  cluster: DC0_C0\n  datastore: LocalDS_0\n"
        "  network: VM Network\n")
    return settings


def nightly(settings: Path, env: dict[str, str], report: Path, *flags: str
            ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "-f", str(settings), "nightly", "--profile", PROFILE,
         "--report", str(report), *flags],
        cwd=REPO_ROOT, env={**clean_env(), **env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def test_invoke_nightly_runs_against_invoke_sim_with_site_var_files(
    invoke_sim: dict[str, str], tmp_path: Path
) -> None:
    settings = site_files(tmp_path)
    summary = tmp_path / "step-summary.md"
    env = {**invoke_sim, "GITHUB_RUN_ID": "4242", "GITHUB_STEP_SUMMARY": str(summary)}
    process = nightly(settings, env, tmp_path / "report",
                      "--var-file", str(tmp_path / "extra.json"), "--set", "cpus=2")
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["build_id"].endswith("-4242")
    template = f"{PROFILE}-kube-v1.30.5-{report['build_id']}"
    (publish,) = [s for s in report["stages"] if s["stage"] == "publish"]
    assert publish["artifacts"]["template"].endswith(f"/{template}")
    assert [s["stage"] for s in report["stages"]][:2] == ["preflight", "lock"]
    vars_file = tmp_path / "out" / template / "packer-vars.json"
    packer_vars = json.loads(vars_file.read_text())
    assert packer_vars["memory"] == 2048 and packer_vars["iso_paths"] == PACKER_SITE["iso_paths"]

    markdown = (tmp_path / "report" / "report.md").read_text()
    assert summary.read_text() == markdown + "\n"
    assert f"| {PROFILE}/DC0 | {publish['artifacts']['template']} | vmx-17 | efi | root |" \
        in markdown
    assert "Tesla T4 (10de:1eb8 \u2192 vendorId 4318, deviceId 7864)" in markdown, markdown
    assert f"`{tmp_path / 'out' / template / 'cluster-template-DC0.yaml'}`" in markdown
    assert "gpu-operator-install.sh`" in markdown and "cuda-vector-add.yaml`" in markdown


def test_two_runs_started_together_both_finish_with_their_own_reports(
    invoke_sim: dict[str, str], tmp_path: Path
) -> None:
    settings = site_files(tmp_path)
    runs = [nightly(settings, invoke_sim, tmp_path / "report") for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] != [1, 1], results
    reports = []
    for run, (stdout, stderr) in zip(runs, results, strict=True):
        assert run.returncode in (0, 1), stdout + stderr
        assert "Traceback" not in stderr and "Errno" not in stdout + stderr
        (line,) = [line for line in stderr.splitlines() if line.startswith("report: ")]
        path = Path(line.removeprefix("report: ").split(",")[0])
        reports.append(json.loads(path.read_text()))
        if run.returncode == 1:  # the other run held the vCenter lock: refused, not broken
            failed = [s for s in reports[-1]["stages"] if s["status"] == "failed"]
            assert [s["stage"] for s in failed] == ["lock"], failed
    assert reports[0]["build_id"] != reports[1]["build_id"]
    found = sorted(p.relative_to(tmp_path) for p in (tmp_path / "report").rglob("report.json"))
    assert len(found) == 2


@pytest.fixture
def sim_without_gpus(make_simulator: Callable[..., Any]) -> Any:
    return make_simulator(default_gpu=False)


def test_wrong_settings_fail_at_preflight_before_any_build(sim_without_gpus: Any,
                                                          tmp_path: Path) -> None:
    sim = sim_without_gpus
    env = {**clean_env(), **sim.env, config.ENV_DATACENTER: "DC0",
           config.ENV_CLUSTER: "DC0_C0", config.ENV_DATASTORE: "LocalDS_0",
           config.ENV_NETWORK: "VM Network"}
    (tmp_path / "site.json").write_text(json.dumps(PACKER_SITE))

    def run(**placement: str) -> Any:
        request = NightlyRequest(
            profiles=(PROFILE,), datacenters=("DC0",), report_dir=tmp_path / "report",
            output_dir=tmp_path / "out", var_files=(str(tmp_path / "site.json"),),
            sets=("disk_size=65536000",), cluster="DC0_C0",
            **{"datastore": "LocalDS_0", "network": "VM Network", **placement})
        return run_nightly(request, env, log=io.StringIO())

    report = run()
    assert [(s.stage, s.status) for s in report.stages] == [("preflight", "failed")]
    message = report.stages[0].message
    assert "has" in message and "free" in message and "--datastore" in message  # disk size
    assert "no passthrough GPU is enabled in cluster DC0_C0" in message  # both at once
    assert not (tmp_path / "out").exists()

    report = run(datastore="nosuch")
    assert [(s.stage, s.status) for s in report.stages] == [("preflight", "failed")]
    assert "nosuch" in report.stages[0].message and "--datastore" in report.stages[0].message
