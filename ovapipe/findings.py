"""Findings are data: validators return a Report, tasks render it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "severity": self.severity, "message": self.message}


@dataclass
class Report:
    """The result of validate-ova / validate-template (same JSON shape for both)."""

    path: str
    vmx: str | None = None
    firmware: str | None = None
    secure_boot: bool | None = None
    findings: list[Finding] = field(default_factory=list)
    signature: dict[str, object] | None = None  # an OVA's NAME.cert, when it has one
    sbom: dict[str, object] | None = None  # an OVA's NAME.spdx.json, when it has one
    inspection: dict[str, object] | None = None  # the boot disk's root fs (--inspect)

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    def error(self, rule: str, message: str) -> None:
        self.findings.append(Finding(rule, ERROR, message))

    def warning(self, rule: str, message: str) -> None:
        self.findings.append(Finding(rule, WARNING, message))

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "path": self.path,
            "vmx": self.vmx,
            "firmware": self.firmware,
            "secure_boot": self.secure_boot,
            "findings": [f.as_dict() for f in self.findings],
            **({"signature": self.signature} if self.signature is not None else {}),
            **({"sbom": self.sbom} if self.sbom is not None else {}),
            **({"inspection": self.inspection} if self.inspection is not None else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def render(self) -> str:
        """A readable report for a terminal."""
        verdict = "PASS" if self.ok else "FAIL"
        secure = "unknown" if self.secure_boot is None else ("on" if self.secure_boot else "off")
        lines = [
            f"{verdict}  {self.path}",
            f"  hardware: {self.vmx or 'unknown'}   firmware: {self.firmware or 'unknown'}"
            f"   secure boot: {secure}",
        ]
        if self.signature is not None:
            trusted = {True: "trusted", False: "NOT trusted", None: "trust not checked"}[
                self.signature["trusted"]]  # type: ignore[index]
            lines.append(f"  signed by: {self.signature['signer']} ({trusted})")
        if self.sbom is not None:
            lines.append(f"  SBOM: {self.sbom['member']} ({self.sbom['packages']} packages, "
                         f"sha256 {self.sbom['sha256']})")
        if self.inspection is not None:
            packages = self.inspection["packages"]
            shown = ", ".join(f"{k} {v}" for k, v in packages.items())  # type: ignore[attr-defined]
            verdict = "ok" if self.inspection["ok"] else "FAILED"
            lines.append(f"  image inspection: {verdict} ({shown or 'no packages'})")
        for finding in sorted(self.findings, key=lambda f: f.severity != ERROR):
            lines.append(f"  {finding.severity.upper():7} {finding.rule}: {finding.message}")
        if not self.findings:
            lines.append("  no findings")
        return "\n".join(lines)
