"""The installer ISO is authentic before a build: SHA256SUMS signed by a pinned key, then hashes.

Ubuntu publishes ``SHA256SUMS`` and its detached signature ``SHA256SUMS.gpg`` beside each
release's ISOs. ``gpgv`` (GnuPG's verify-only tool, no keyring of its own, no network) checks
the signature against the one keyring file the site pins; the ISO's SHA-256 (a local file, or
the ``iso_checksum`` Packer enforces) must then be the one the signed file lists for its name.
Everything works offline from local files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from ovapipe.errors import CheckFailed, ConfigError
from ovapipe.files import sha256_file
from ovapipe.findings import ERROR, Finding

MAX_SUMS_BYTES: Final = 1024 * 1024
GPGV_TIMEOUT: Final = 60.0
NOT_CHECKED: Final = "ISO authenticity: not checked"
_SUM_LINE: Final = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")

RULES: Final[dict[str, str]] = {
    "iso.not-configured": "no ovapipe.iso settings: the build records 'not checked'",
    "iso.no-keyring": "no pinned keyring to verify SHA256SUMS.gpg with",
    "iso.bad-signature": "SHA256SUMS.gpg is not a good signature over SHA256SUMS",
    "iso.unknown-key": "SHA256SUMS is signed by a key that is not in the pinned keyring",
    "iso.not-listed": "the ISO's file name is not in SHA256SUMS",
    "iso.checksum-mismatch": "the ISO's SHA-256 differs from the one SHA256SUMS lists",
    "iso.unreadable": "SHA256SUMS, its signature or the ISO cannot be read",
}


@dataclass(frozen=True)
class IsoSettings:
    """invoke.yaml ``ovapipe.iso`` (or build vars): where the checksums and the key are."""

    sha256sums: Path | None = None
    signature: Path | None = None  # default: SHA256SUMS.gpg beside sha256sums
    keyring: Path | None = None  # the site-pinned keyring (gpg --export of the signing key)
    local_iso: Path | None = None  # a local copy to hash; else the vars' iso_checksum is used
    allow_unverified: bool = False

    @property
    def configured(self) -> bool:
        return self.sha256sums is not None


@dataclass
class IsoAuthenticity:
    iso_name: str
    checked: bool
    sha256: str | None = None
    signer: str | None = None  # primary key fingerprint gpgv reported
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def summary(self) -> str:
        if not self.checked:
            return f"{NOT_CHECKED} ({self.findings[0].message if self.findings else 'off'})"
        if not self.ok:
            return "ISO authenticity: FAILED: " + "; ".join(
                f"{f.rule}: {f.message}" for f in self.findings)
        return (f"ISO authenticity: {self.iso_name} sha256 {self.sha256} is listed in "
                f"SHA256SUMS signed by {self.signer}")

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "iso": self.iso_name, "sha256": self.sha256,
                "signer": self.signer, "summary": self.summary(),
                "findings": [f.as_dict() for f in self.findings]}


def iso_settings(settings: Mapping[str, Any]) -> IsoSettings:
    section = settings.get("iso") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("invoke.yaml: ovapipe.iso must be a mapping")
    known = {"sha256sums", "signature", "keyring", "local_iso", "allow_unverified"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"invoke.yaml: ovapipe.iso.{unknown[0]} is not a setting "
                          f"(known: {', '.join(sorted(known))})")

    def path(key: str) -> Path | None:
        return Path(str(section[key])) if section.get(key) else None

    allow = section.get("allow_unverified", False)
    if not isinstance(allow, bool):
        raise ConfigError("invoke.yaml: ovapipe.iso.allow_unverified must be true or false")
    return IsoSettings(path("sha256sums"), path("signature"), path("keyring"),
                       path("local_iso"), allow)


def parse_sums(data: bytes, where: str) -> dict[str, str]:
    """``sha256sum`` output -> {file name: hex digest}."""
    if len(data) > MAX_SUMS_BYTES:
        raise CheckFailed(f"{where}: {len(data)} bytes, too large for a SHA256SUMS file")
    sums: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        match = _SUM_LINE.match(line.strip())
        if match:
            sums[match.group(2).strip()] = match.group(1).lower()
    return sums


def _gpgv(keyring: Path, signature: Path, sums: Path) -> tuple[str | None, list[str]]:
    """(fingerprint of a good signature, gpgv status lines)."""
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise ConfigError("`gpgv` not found: install Debian's gpgv package")
    try:
        result = subprocess.run(
            [gpgv, "--status-fd", "1", "--keyring", str(keyring.resolve()), str(signature),
             str(sums)], capture_output=True, text=True, timeout=GPGV_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"gpgv did not finish within {GPGV_TIMEOUT:.0f} s") from None
    status = [line.removeprefix("[GNUPG:] ") for line in result.stdout.splitlines()
              if line.startswith("[GNUPG:] ")]
    valid = [line.split() for line in status if line.startswith("VALIDSIG ")]
    if result.returncode == 0 and valid:
        fields = valid[0]
        return (fields[-1] if len(fields) >= 11 else fields[1]), status
    return None, status


def verify_iso(settings: IsoSettings, iso_name: str, iso_checksum: str | None = None
               ) -> IsoAuthenticity:
    """Check the signed checksums, then the ISO's digest (a local file or ``iso_checksum``).

    A missing keyring is a ConfigError unless ``allow_unverified``; then nothing is checked
    and the result says so.
    """
    result = IsoAuthenticity(iso_name, checked=True)

    def fail(rule: str, message: str) -> IsoAuthenticity:
        result.findings.append(Finding(rule, ERROR, message))
        return result

    keyring = settings.keyring
    if keyring is None or not keyring.is_file():
        why = ("no keyring is pinned (ovapipe.iso.keyring)" if keyring is None
               else f"the pinned keyring {keyring} does not exist")
        if settings.allow_unverified:
            return IsoAuthenticity(iso_name, checked=False,
                                   findings=[Finding("iso.no-keyring", "warning", why)])
        raise ConfigError(f"iso.no-keyring: {why}; pin the release signing key (README "
                          "'Supply chain'), or set ovapipe.iso.allow_unverified: true to "
                          f"build with '{NOT_CHECKED}' in the report")
    sums_path = settings.sha256sums
    if sums_path is None:
        raise ConfigError("ovapipe.iso.sha256sums is not set: name the release's SHA256SUMS")
    signature = settings.signature or sums_path.with_name(sums_path.name + ".gpg")
    for needed in (sums_path, signature):
        if not needed.is_file():
            return fail("iso.unreadable", f"{needed} does not exist")
    signer, status = _gpgv(keyring, signature, sums_path)
    if signer is None:
        if any(line.startswith(("NO_PUBKEY", "ERRSIG")) for line in status):
            key = next((line.split()[1] for line in status
                        if line.startswith("NO_PUBKEY")), "unknown")
            return fail("iso.unknown-key", f"{signature} is signed by key {key}, which is not "
                        f"in the pinned keyring {keyring}")
        return fail("iso.bad-signature", f"{signature} is not a good signature over "
                    f"{sums_path} by a key in {keyring}: the file was changed or the "
                    "signature belongs to another file")
    result.signer = signer
    sums = parse_sums(sums_path.read_bytes(), str(sums_path))
    expected = sums.get(iso_name)
    if expected is None:
        return fail("iso.not-listed", f"{iso_name} is not listed in {sums_path} "
                    f"({len(sums)} files listed)")
    if settings.local_iso is not None:
        if not settings.local_iso.is_file():
            return fail("iso.unreadable", f"{settings.local_iso} does not exist")
        actual = sha256_file(settings.local_iso)
        what = str(settings.local_iso)
    elif iso_checksum:
        actual = iso_checksum.lower().removeprefix("sha256:")
        what = "iso_checksum"
    else:
        return fail("iso.unreadable", "no local ISO (ovapipe.iso.local_iso) and no sha256 "
                    "iso_checksum to compare with SHA256SUMS")
    result.sha256 = actual
    if actual != expected:
        return fail("iso.checksum-mismatch", f"{what}: sha256 {actual}, but {sums_path} "
                    f"(signed by {signer}) lists {expected} for {iso_name}")
    return result


def iso_file_name(values: Mapping[str, Any]) -> str:
    """The ISO's file name from iso_url or the first of iso_paths ("[ds] iso/x.iso")."""
    url = str(values.get("iso_url") or "")
    paths = values.get("iso_paths") or []
    source = url or (str(paths[0]).split("]", 1)[-1].strip() if paths else "")
    return PurePosixPath(source.split("?", 1)[0]).name
