"""The nightly report: report.json, junit.xml and a short summary a person reads in the morning."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final, Literal

from ovapipe.files import write_text

Status = Literal["ok", "failed", "skipped", "reused", "interrupted"]
STEP_SUMMARY_ENV: Final = "GITHUB_STEP_SUMMARY"
MARKDOWN_FILE: Final = "report.md"
# Artifacts of these stages are hand-off files (what the platform team applies next).
HANDOFF_STAGES: Final = ("cluster-template",)


@dataclass
class StageResult:
    stage: str
    status: Status
    started: str  # ISO 8601, UTC
    duration: float
    target: str = ""  # profile, or profile/datacenter for per-datacenter stages
    message: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path or reference

    @property
    def name(self) -> str:
        return f"{self.stage} [{self.target}]" if self.target else self.stage


@dataclass
class NightlyReport:
    build_id: str
    started: str
    stages: list[StageResult] = field(default_factory=list)
    folder: Path | None = None  # where write() put the reports, once it has
    # Set when Ctrl-C/SIGTERM ended the run: such a run never reads as ok, in any format.
    interrupted: str = ""

    @property
    def ok(self) -> bool:
        return (not self.interrupted and bool(self.stages)
                and all(stage.status not in ("failed", "interrupted") for stage in self.stages))

    def interrupt(self, message: str) -> None:
        """Mark the run interrupted; a stage that was running is already ``interrupted``."""
        self.interrupted = message

    @property
    def failed(self) -> list[StageResult]:
        return [stage for stage in self.stages if stage.status == "failed"]

    def as_dict(self) -> dict[str, object]:
        return {"build_id": self.build_id, "started": self.started, "ok": self.ok,
                "interrupted": self.interrupted or None,
                "stages": [asdict(stage) for stage in self.stages]}

    def junit(self) -> str:
        suite = ET.Element(
            "testsuite",
            name=f"ovapipe nightly {self.build_id}",
            tests=str(len(self.stages) + (1 if self._interrupted_between_stages else 0)),
            failures=str(len(self.failed)),
            errors=str(sum(s.status == "interrupted" for s in self.stages)
                       + (1 if self._interrupted_between_stages else 0)),
            skipped=str(sum(s.status == "skipped" for s in self.stages)),
            time=f"{sum(s.duration for s in self.stages):.3f}",
            timestamp=self.started,
        )
        for stage in self.stages:
            case = ET.SubElement(suite, "testcase", classname=f"nightly.{stage.stage}",
                                 name=stage.name, time=f"{stage.duration:.3f}")
            if stage.status == "failed":
                ET.SubElement(case, "failure", message=stage.message).text = stage.message
            elif stage.status == "interrupted":
                ET.SubElement(case, "error", message=stage.message,
                              type="interrupted").text = stage.message
            elif stage.status == "skipped":
                ET.SubElement(case, "skipped", message=stage.message)
            if stage.artifacts:
                ET.SubElement(case, "system-out").text = "\n".join(
                    f"{name}: {value}" for name, value in sorted(stage.artifacts.items()))
        if self._interrupted_between_stages:
            case = ET.SubElement(suite, "testcase", classname="nightly.interrupted",
                                 name="interrupted", time="0.000")
            ET.SubElement(case, "error", message=self.interrupted,
                          type="interrupted").text = self.interrupted
        ET.indent(suite)
        return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"

    @property
    def _interrupted_between_stages(self) -> bool:
        return bool(self.interrupted) and not any(
            s.status == "interrupted" for s in self.stages)

    def summary(self) -> str:
        """Failed stages first, then what was built and where."""
        lines: list[str] = []
        if self.interrupted:
            lines.append(f"NIGHTLY INTERRUPTED: {self.interrupted}")
        if self.failed:
            first = self.failed[0]
            lines.append(f"NIGHTLY FAILED at {first.name}: {first.message}")
            lines.extend(f"  also failed: {s.name}: {s.message}" for s in self.failed[1:])
        elif not self.interrupted:
            lines.append(f"NIGHTLY OK  {self.build_id}")
        for stage in self.stages:
            lines.append(f"  {stage.status:7} {stage.name:40} {stage.duration:7.1f}s"
                         + (f"  {stage.message}" if stage.message and stage.status != "failed"
                            else ""))
        return "\n".join(lines)

    def markdown(self) -> str:
        """report.md: for people, and for the CI run's page ($GITHUB_STEP_SUMMARY)."""
        return render_markdown(self)

    def write(self, folder: Path) -> None:
        write_text(folder / "report.json", json.dumps(self.as_dict(), indent=2) + "\n")
        write_text(folder / "junit.xml", self.junit())
        write_text(folder / MARKDOWN_FILE, self.markdown())
        self.folder = folder

    def add_to_step_summary(self, env: Mapping[str, str]) -> None:
        """Append report.md to the file GitHub Actions shows on the run's page, when set."""
        target = env.get(STEP_SUMMARY_ENV)
        if not target:
            return
        with Path(target).open("a", encoding="utf-8") as handle:
            handle.write(self.markdown() + "\n")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip() or "-"


def render_markdown(report: NightlyReport) -> str:
    verdict = "OK" if report.ok else "INTERRUPTED" if report.interrupted \
        else f"FAILED at {report.failed[0].name}" if report.failed else "NOT FINISHED"
    lines = [f"## ovapipe nightly {report.build_id}: {verdict}", "",
             f"Started {report.started}.", "",
             "| stage | target | result | seconds | message |", "|---|---|---|---:|---|"]
    lines += [f"| {_cell(s.stage)} | {_cell(s.target)} | {_cell(s.status)} | "
              f"{s.duration:.1f} | {_cell(s.message)} |" for s in report.stages]
    templates = [s for s in report.stages if s.stage == "publish" and s.status == "ok"]
    if templates:
        lines += ["", "### Templates", "",
                  "| profile/datacenter | template | vmx | firmware | snapshot |",
                  "|---|---|---|---|---|"]
        lines += [f"| {_cell(s.target)} | {_cell(s.artifacts.get('template', ''))} | "
                  f"{_cell(s.artifacts.get('vmx', ''))} | "
                  f"{_cell(s.artifacts.get('firmware', ''))} | "
                  f"{_cell(s.artifacts.get('snapshot', ''))} |" for s in templates]
    gpus = [s for s in report.stages if s.stage == "gpus" and s.status == "ok"]
    if gpus:
        lines += ["", "### GPUs found", ""]
        lines += [f"- {_cell(s.target)}: {_cell(s.message)}" for s in gpus]
    handoff = [(s.target, path) for s in report.stages
               if s.stage in HANDOFF_STAGES and s.status == "ok"
               for _, path in sorted(s.artifacts.items())]
    if handoff:
        lines += ["", "### Hand-off files", ""]
        lines += [f"- {_cell(target)}: `{path}`" for target, path in handoff]
    return "\n".join(lines) + "\n"
