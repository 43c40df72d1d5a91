"""Unique build ids, the report folder lock, report.md and the CI step summary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ovapipe.errors import ConfigError
from ovapipe.report import NightlyReport, StageResult
from ovapipe.runs import LOCK_FILE, claim_report_folder, run_suffix


def test_ci_run_ids_name_the_run_and_local_runs_get_a_random_suffix() -> None:
    assert run_suffix({"GITHUB_RUN_ID": "12345678901", "GITHUB_RUN_ATTEMPT": "1"}) == (
        "12345678901")
    assert run_suffix({"GITHUB_RUN_ID": "12345678901", "GITHUB_RUN_ATTEMPT": "2"}) == (
        "12345678901-2")
    assert run_suffix({"OVAPIPE_RUN_ID": "nightly7", "GITHUB_RUN_ID": "1"}) == "nightly7"
    local = {run_suffix({}) for _ in range(50)}
    assert len(local) == 50 and all(len(s) == 8 for s in local)


def test_a_run_id_cannot_carry_a_path() -> None:
    with pytest.raises(ConfigError, match=re.escape("OVAPIPE_RUN_ID='../x'")):
        run_suffix({"OVAPIPE_RUN_ID": "../x"})


def test_a_held_report_folder_sends_the_other_run_to_its_own_subfolder(tmp_path: Path) -> None:
    first, first_lock, note = claim_report_folder(tmp_path / "report", "20261203-1-aaaa")
    assert first == tmp_path / "report" and note == ""
    second, second_lock, note = claim_report_folder(tmp_path / "report", "20261203-1-bbbb")
    assert second == tmp_path / "report" / "20261203-1-bbbb"
    assert "in use by 20261203-1-aaaa pid" in note
    second_lock.release()
    first_lock.release()
    again, again_lock, note = claim_report_folder(tmp_path / "report", "20261203-2-cccc")
    assert again == tmp_path / "report" and note == ""
    assert "20261203-2-cccc" in (again / LOCK_FILE).read_text()
    again_lock.release()


def report() -> NightlyReport:
    result = NightlyReport("20261203-021700-1a2b3c4-77", "2026-12-03T02:17:00+00:00")
    target = "ubuntu-2004-efi/DC0"
    result.stages += [
        StageResult("build-ova", "ok", "t", 61.25, "ubuntu-2004-efi", "",
                    {"ova": "output/x/x.ova"}),
        StageResult("publish", "ok", "t", 12.0, target, "",
                    {"template": "/DC0/vm/x", "vmx": "vmx-17", "firmware": "efi",
                     "snapshot": "root"}),
        StageResult("gpus", "ok", "t", 0.5, target, "Tesla T4 (10DE:1EB8): 2 hosts, 2 enabled"),
        StageResult("cluster-template", "ok", "t", 0.2, target, "",
                    {"manifest": "output/x/cluster-template-DC0.yaml",
                     "gpu-operator-install.sh": "output/x/gpu-operator-install.sh"}),
        StageResult("retention", "failed", "t", 0.1, target, "a | pipe\nand a newline"),
    ]
    return result


def test_report_md_has_stages_templates_gpus_and_hand_off_files(tmp_path: Path) -> None:
    nightly = report()
    nightly.write(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert text.startswith(
        "## ovapipe nightly 20261203-021700-1a2b3c4-77: FAILED at retention [ubuntu-2004-efi/DC0]")
    assert "| build-ova | ubuntu-2004-efi | ok | 61.2 | - |" in text
    assert "| retention | ubuntu-2004-efi/DC0 | failed | 0.1 | a \\| pipe and a newline |" in text
    assert "| ubuntu-2004-efi/DC0 | /DC0/vm/x | vmx-17 | efi | root |" in text
    assert "- ubuntu-2004-efi/DC0: Tesla T4 (10DE:1EB8): 2 hosts, 2 enabled" in text
    assert "`output/x/cluster-template-DC0.yaml`" in text
    assert "`output/x/gpu-operator-install.sh`" in text
    assert nightly.folder == tmp_path


def test_the_step_summary_is_appended_to_not_replaced(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    report().add_to_step_summary({"GITHUB_STEP_SUMMARY": str(summary)})
    text = summary.read_text()
    assert text.startswith("earlier step\n## ovapipe nightly ")
    report().add_to_step_summary({})  # not in CI: nothing to write
    assert summary.read_text() == text


def test_an_empty_datacenter_is_a_usage_error_before_connecting() -> None:
    import os
    import subprocess
    import sys

    from ovapipe.paths import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VSPHERE_", "GITHUB_"))}
    env.update(VSPHERE_SERVER="127.0.0.1:9", VSPHERE_USERNAME="u", VSPHERE_PASSWORD="p",
               VSPHERE_TLS_THUMBPRINT=":".join(["00"] * 20))
    result = subprocess.run([sys.executable, "-m", "invoke", "nightly", "--datacenter", ""],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no datacenter given (an empty name counts as none)" in result.stderr
    assert "Traceback" not in result.stderr


def test_retention_keeps_the_newest_build_across_kubernetes_releases_and_id_formats() -> None:
    from ovapipe.retention import NightlyTemplate, to_delete

    profile = "ubuntu-2004-efi"
    older_release = NightlyTemplate(f"{profile}-20261128-031500-abc1234", "DC0", profile,
                                    f"{profile}-20261128-031500-abc1234")  # before run ids
    newer = NightlyTemplate(f"{profile}-kube-v1.30.5-20261202-021700-1a2b3c4-9f", "DC0",
                            profile, f"{profile}-20261202-021700-1a2b3c4-9f")
    newest = NightlyTemplate(f"{profile}-kube-v1.30.10-20261203-021700-1a2b3c4-4242", "DC0",
                             profile, f"{profile}-20261203-021700-1a2b3c4-4242")
    doomed = to_delete([newest, older_release, newer], keep=1, just_published={newest.name})
    assert doomed == [older_release, newer]
