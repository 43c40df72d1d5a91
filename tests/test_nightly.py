"""invoke nightly against the simulator: retention, a failed build, the lock, the report."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ovapipe import config
from ovapipe.errors import Interrupted
from ovapipe.nightly import NIGHTLY_BUILD_FACT, NightlyRequest, build_stamp, run_nightly
from ovapipe.paths import REPO_ROOT, VARS_DIR
from ovapipe.vsphere.lock import NightlyLock, lock_folder

pytestmark = [pytest.mark.simulator, pytest.mark.packer, pytest.mark.slow]

PROFILE = "ubuntu-2004-efi"
PLACEMENT = {
    config.ENV_DATACENTER: "DC0",
    config.ENV_CLUSTER: "DC0_C0",
    config.ENV_DATASTORE: "LocalDS_0",
    config.ENV_NETWORK: "VM Network",
}
SITE = str(VARS_DIR / "site" / "simulator.json")


@pytest.fixture
def sim(make_simulator: Callable[..., Any], efi_vmdk: Path) -> Any:
    return make_simulator(installer_vm=f"{PROFILE}-*", installer_disk=efi_vmdk,
                          installer_seconds=2)


def env_for(sim: Any) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VSPHERE_", "PKR_VAR_"))}
    return {**clean, **sim.env, **PLACEMENT}


def request(tmp: Path, *, keep: int = 1, sets: tuple[str, ...] = (), resume: bool = False,
            ) -> NightlyRequest:
    return NightlyRequest(profiles=(PROFILE,), datacenters=("DC0",), keep=keep,
                          report_dir=tmp / "report", output_dir=tmp, var_files=(SITE,),
                          sets=sets, resume=resume, cluster="DC0_C0", datastore="LocalDS_0",
                          network="VM Network", pipeline_id="test-site")


def inventory(sim: Any) -> dict[str, tuple[bool, str]]:
    """Every VM and folder name with (is template, annotation)."""
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.inventory import retrieve

    with session(sim.connection) as service:
        vms = {vm.name: (bool(vm.get("config.template")), vm.get("config.annotation") or "")
               for vm in retrieve(service, vim.VirtualMachine,
                                  ["name", "config.template", "config.annotation"])}
        folders = {f"folder:{f.name}": (False, "")
                   for f in retrieve(service, vim.Folder, ["name"])}
    return {**vms, **folders}


def nightly_templates(sim: Any) -> list[str]:
    return sorted(name for name, (template, note) in inventory(sim).items()
                  if template and f"ovapipe.{NIGHTLY_BUILD_FACT}:" in note)


def test_second_run_replaces_the_first_and_touches_nothing_else(sim: Any, tmp_path: Path) -> None:
    before = inventory(sim)
    first = run_nightly(request(tmp_path / "one"), env_for(sim), log=io.StringIO())
    assert first.ok, first.summary()
    (first_template,) = nightly_templates(sim)
    assert first_template.startswith(f"{PROFILE}-")

    second = run_nightly(request(tmp_path / "two"), env_for(sim), log=io.StringIO())
    assert second.ok, second.summary()
    (second_template,) = nightly_templates(sim)
    assert second_template != first_template and second_template > first_template
    retention = next(s for s in second.stages if s.stage == "retention")
    assert first_template in retention.message

    after = inventory(sim)
    assert {k: v for k, v in after.items() if k != second_template} == before
    manifest = next(Path(s.artifacts["manifest"]) for s in second.stages
                    if "manifest" in s.artifacts)
    text = manifest.read_text()
    assert second_template in text and "vendorId: 4318" in text and "deviceId: 7864" in text


def test_a_failed_build_keeps_yesterdays_template_and_reports_the_stage(
    sim: Any, tmp_path: Path
) -> None:
    assert run_nightly(request(tmp_path / "one"), env_for(sim), log=io.StringIO()).ok
    yesterday = nightly_templates(sim)

    # The simulated install takes 2 s; Packer gives up waiting for the power-off after 1 s.
    failed = run_nightly(request(tmp_path / "two", sets=("shutdown_timeout=1s",)),
                         env_for(sim), log=io.StringIO())
    assert not failed.ok
    assert failed.summary().splitlines()[0].startswith(f"NIGHTLY FAILED at build-ova [{PROFILE}]")
    assert nightly_templates(sim) == yesterday

    report = json.loads((tmp_path / "two" / "report" / "report.json").read_text())
    statuses = {s["stage"]: s["status"] for s in report["stages"]}
    assert statuses["build-ova"] == "failed" and statuses["publish"] == "skipped"
    assert statuses["retention"] == "skipped"
    junit = ET.parse(tmp_path / "two" / "report" / "junit.xml").getroot()
    failures = [c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None]
    assert failures == [f"build-ova [{PROFILE}]"]


def test_a_second_run_is_refused_while_the_first_holds_the_lock(sim: Any, tmp_path: Path
                                                                ) -> None:
    holder = NightlyLock(sim.connection, "20261128-000000-other", PROFILE)
    holder.acquire()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "invoke", "nightly", "--profile", PROFILE,
             "--report", str(tmp_path / "report")],
            cwd=REPO_ROOT, env=env_for(sim), capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stdout + result.stderr
        assert (f"NIGHTLY FAILED at lock [{PROFILE}]: another nightly run holds the vCenter "
                f"lock of profile {PROFILE}") in result.stdout
        assert f"pid {os.getpid()}" in result.stdout and "20261128-000000-other" in result.stdout
        assert "Traceback" not in result.stderr
        assert nightly_templates(sim) == []
    finally:
        holder.release()
    assert f"folder:{lock_folder(PROFILE)}" not in inventory(sim)


def test_resume_reuses_verified_artifacts_and_rebuilds_changed_ones(
    sim: Any, tmp_path: Path
) -> None:
    first = run_nightly(request(tmp_path), env_for(sim), log=io.StringIO())
    assert first.ok, first.summary()
    resumed = run_nightly(request(tmp_path, resume=True), env_for(sim), log=io.StringIO())
    assert resumed.ok, resumed.summary()
    statuses = {s.stage: s.status for s in resumed.stages}
    assert statuses["build-ova"] == "reused" and statuses["publish"] == "ok"

    ova = Path(next(s.artifacts["ova"] for s in first.stages if s.stage == "build-ova"))
    with ova.open("r+b") as handle:
        handle.seek(700)
        handle.write(b"tampered")
    again = run_nightly(request(tmp_path, resume=True), env_for(sim), log=io.StringIO())
    assert {s.stage: s.status for s in again.stages}["build-ova"] != "reused"


def test_usage_errors_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="keep at least 1"):
        run_nightly(NightlyRequest(profiles=(PROFILE,), datacenters=("DC0",), keep=0), {})
    with pytest.raises(Exception, match="no datacenter"):
        run_nightly(NightlyRequest(profiles=(PROFILE,), datacenters=()), {})
    with pytest.raises(Exception, match="nosuch"):
        run_nightly(NightlyRequest(profiles=("nosuch",), datacenters=("DC0",)), {})


def test_build_stamp_sorts_by_time() -> None:
    import datetime as dt

    early = build_stamp(dt.datetime(2026, 11, 28, 3, 0, 0, tzinfo=dt.UTC))
    late = build_stamp(dt.datetime(2026, 12, 1, 2, 0, 0, tzinfo=dt.UTC))
    assert early == "20261128-030000" and early < late


def test_a_stage_that_breaks_is_recorded_not_lost(tmp_path: Path) -> None:
    from ovapipe.nightly import _Stages
    from ovapipe.report import NightlyReport

    report = NightlyReport("id", "2026-11-28T03:00:00+00:00")
    stages = _Stages(report, tmp_path, io.StringIO())

    def broken() -> dict[str, str]:
        raise KeyError("vm_name")

    def interrupted() -> dict[str, str]:
        raise KeyboardInterrupt

    assert stages.run("publish", "p/DC0", broken) is False
    with pytest.raises(Interrupted):
        stages.run("gpus", "p/DC0", interrupted)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [(s["stage"], s["status"]) for s in saved["stages"]] == [
        ("publish", "failed"), ("gpus", "interrupted")]
    assert saved["ok"] is False
    assert saved["stages"][0]["message"] == "internal error: KeyError: 'vm_name'"
    assert saved["stages"][1]["message"] == "interrupted (Ctrl-C or SIGTERM)"


def test_retention_in_a_real_run_deletes_only_its_own_old_templates(
    sim: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """Issue 11's Done-when: another team's templates in another folder, a clock-skewed
    template and a cloned template beside ours; the nightly run deletes only its own old one."""
    from test_retention import _publish, linked_clone, make_team_folder

    make_team_folder(sim, "teamB")
    stamp = lambda day: f"{PROFILE}-202611{day:02d}-010000-abc1234"  # noqa: E731
    out = tmp_path / "seeded"
    old = _publish(sim, efi_ova, out, stamp(21), "test-site")
    cloned = _publish(sim, efi_ova, out, stamp(20), "test-site")
    linked_clone(sim, cloned.moref, "capv-worker")
    other_folder = _publish(sim, efi_ova, out, stamp(22), "test-site", folder="teamB")
    other_site = _publish(sim, efi_ova, out, stamp(23), "team-b")
    skewed = _publish(sim, efi_ova, out, f"{PROFILE}-20991231-010000-abc1234", "test-site")

    result = run_nightly(request(tmp_path / "run"), env_for(sim), log=io.StringIO())
    assert result.ok, result.summary()
    left = inventory(sim)
    assert old.template not in left
    for kept in (cloned.template, "capv-worker", other_folder.template, other_site.template,
                 skewed.template):
        assert kept in left, kept
    retention = next(s for s in result.stages if s.stage == "retention")
    assert old.template in retention.message
    assert f"kept {cloned.template}: capv-worker use its disks" in retention.message
    assert f"kept {skewed.template}: its build stamp is in the future" in retention.message


def test_signed_nightly_gates_on_its_pinned_signer(sim: Any, tmp_path: Path) -> None:
    from dataclasses import replace

    from pki import issue

    from ovapipe.ova.signing import Signer
    from ovapipe.vsphere.publish import record_path

    signer = issue("nightly signer")
    pinned = tmp_path / "pinned.pem"
    pinned.write_bytes(signer.cert_pem())
    signed = replace(request(tmp_path / "signed"), signer=Signer(signer.key, (signer.cert,)),
                     require_signature=True, trust=pinned)
    result = run_nightly(signed, env_for(sim), log=io.StringIO())
    assert result.ok, result.summary()
    (template,) = nightly_templates(sim)
    record = json.loads(record_path(tmp_path / "signed", template, "DC0").read_text())
    assert record["provenance"]["signer"] == "CN=nightly signer"
    assert record["provenance"]["sbom"] == f"{template}.spdx.json"
    build = json.loads((tmp_path / "signed" / template / "build.json").read_text())
    assert build["sbom"]["sha256"] == record["provenance"]["sbom_sha256"]
    assert build["iso"]["authenticity"]["checked"] is False

    pinned.write_bytes(issue("someone else").cert_pem())
    refused = run_nightly(replace(signed, output_dir=tmp_path / "other",
                                  report_dir=tmp_path / "other" / "report"),
                          env_for(sim), log=io.StringIO())
    assert not refused.ok
    failed = next(s for s in refused.stages if s.status == "failed")
    assert failed.stage == "validate-ova" and "signature.untrusted" in failed.message
def test_two_nightly_runs_through_a_library_keep_one_item_and_one_template_per_datacenter(
    make_simulator: Callable[..., Any], efi_vmdk: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from ovapipe.vsphere.library import content
    from ovapipe.vsphere.library.rest import rest_session

    sim = make_simulator(installer_vm=f"{PROFILE}-*", installer_disk=efi_vmdk,
                         installer_seconds=2, datacenters=2)
    env = {**env_for(sim), config.ENV_CLUSTER: "*_C0"}
    runs = []
    for folder in ("one", "two"):
        nightly = replace(request(tmp_path / folder), datacenters=("DC0", "DC1"),
                          cluster="*_C0", library="L")
        report = run_nightly(nightly, env, log=io.StringIO())
        assert report.ok, report.summary()
        runs.append(report)
    published = [s for s in runs[1].stages if s.stage == "publish"]
    assert len(published) == 2
    [item_ref] = {s.artifacts["library_item"] for s in published}
    with rest_session(sim.connection) as api:
        [library] = content.find_libraries(api, "L")
        [item] = content.list_items(api, library.id)
    assert item_ref == f"L/{item.id}"
    retention = next(s for s in runs[1].stages if s.stage == "retention")
    assert "library L: deleted L/" in retention.message
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.inventory import retrieve
    from ovapipe.vsphere.template import inventory_path

    with session(sim.connection) as service:
        left = sorted(inventory_path(service, vm.obj) for vm in retrieve(
            service, vim.VirtualMachine, ["name", "config.template", "config.annotation"])
            if vm.get("config.template")
            and f"ovapipe.{NIGHTLY_BUILD_FACT}:" in (vm.get("config.annotation") or ""))
    name = nightly_templates(sim)[0]
    assert left == [f"/DC0/vm/{name}", f"/DC1/vm/{name}"]  # the second run's, in each
