import json
import xml.etree.ElementTree as ET

from ovapipe.report import NightlyReport, StageResult


def report_with(*statuses):
    report = NightlyReport("20261128T0300Z-abc1234", "2026-11-28T03:00:00Z")
    for index, status in enumerate(statuses):
        report.stages.append(StageResult(f"stage{index}", status, "2026-11-28T03:00:00Z", 1.5,
                                         target="ubuntu-2004-efi/DC0",
                                         message="packer exited 1" if status == "failed" else ""))
    return report


def test_ok_only_when_no_stage_failed(tmp_path):
    assert report_with("ok", "reused").ok
    assert not report_with("ok", "failed", "skipped").ok
    assert not report_with().ok


def test_summary_names_the_failed_stage_first():
    text = report_with("ok", "failed", "skipped").summary()
    assert text.splitlines()[0] == (
        "NIGHTLY FAILED at stage1 [ubuntu-2004-efi/DC0]: packer exited 1")


def test_files_are_json_and_junit(tmp_path):
    report_with("ok", "failed", "skipped").write(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert [s["status"] for s in data["stages"]] == ["ok", "failed", "skipped"]
    assert data["ok"] is False
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert cases[1].find("failure").get("message") == "packer exited 1"
    assert cases[2].find("skipped") is not None
