"""The OVA side of publish: validate-ova's rules, and its sha256 (recomputed or a bound sidecar)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ovapipe.errors import CheckFailed, ConfigError
from ovapipe.files import sha256_file
from ovapipe.findings import Report
from ovapipe.ova.descriptor_read import descriptor_text
from ovapipe.ova.reader import OvaIndex, read_ova
from ovapipe.progress import Progress
from ovapipe.vsphere.publish.records import OvaProvenance

ProgressFactory = Callable[[str, int | None], Progress]


@dataclass
class CheckedOva:
    """An OVA that passed validate-ova's rules (digests are checked during the upload)."""

    index: OvaIndex
    descriptor_text: str
    name: str
    sha256: str | None  # known before the upload only from a sidecar bound to this file
    provenance: OvaProvenance = field(default_factory=OvaProvenance)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hashed: bool = False

    def identity(self, progress: ProgressFactory) -> str:
        """The OVA's sha256, hashing the file now if no bound .sha256 file gave it."""
        with self._lock:
            if self.sha256 is None:
                self.sha256 = hash_file(self.index.path, progress)
                self._hashed = True
            return self.sha256

    def content_sha256(self, progress: ProgressFactory) -> str:
        """The sha256 of the bytes now in the file, never taken from a sidecar (--replace)."""
        with self._lock:
            if not self._hashed:
                self.sha256 = hash_file(self.index.path, progress)
                self._hashed = True
            assert self.sha256 is not None
            return self.sha256


    def learned(self, digest: str) -> None:
        """The upload read the whole file and hashed it: that is its content's sha256."""
        with self._lock:
            self.sha256, self._hashed = digest, True


def hash_file(path: Path, progress: ProgressFactory) -> str:
    with progress(f"sha256 {path.name}", path.stat().st_size) as bar:
        return sha256_file(path, bar)


def sidecar_sha256(path: Path) -> str | None:
    """The digest in NAME.ova.sha256 (written by build-ova) if it is bound to the OVA as it is.

    Bound means written after the OVA's inode last changed (its ctime): ``cp -p``, ``rsync -t``
    and ``tar x`` can set an old mtime, but every write, copy or rename sets the ctime to now,
    so a replaced or rewritten OVA is never taken for the one the sidecar describes.
    """
    sidecar = path.with_name(path.name + ".sha256")
    try:
        if sidecar.stat().st_mtime_ns < path.stat().st_ctime_ns:
            return None
        first = sidecar.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    if first and len(first[0]) == 64 and all(c in "0123456789abcdef" for c in first[0].lower()):
        return first[0].lower()
    return None


def check_ova(path: Path, *, min_vmx: int, firmware: str, name: str | None,
              require_signature: bool = False, trust: Path | None = None) -> CheckedOva:
    """validate-ova's rules without the full-content digests, which the upload verifies."""
    from ovapipe.validators.ova import validate_ova

    if not path.exists():  # validate_ova names what else is wrong (a directory, a pipe)
        raise ConfigError(f"{path}: no such OVA file")
    report = validate_ova(path, min_vmx=min_vmx, firmware=firmware, check_digests=False,
                          require_signature=require_signature, trust=trust)
    if not report.ok:
        details = "\n".join(f"  - {f.rule}: {f.message}" for f in report.errors)
        raise CheckFailed(f"{path} fails validate-ova (run `invoke validate-ova --path "
                          f"{path}` for the full report):\n{details}")
    index = read_ova(path)
    with open(path, "rb") as handle:
        handle.seek(index.descriptor_member.offset)
        descriptor = handle.read(index.descriptor_member.size)
    expected = index.expected_digest(index.descriptor_member.name)
    if expected is not None:
        seen = hashlib.new(expected.hashlib_name, descriptor).hexdigest()
        if not expected.matches(seen):
            raise CheckFailed(f"{path}: {index.descriptor_member.name} does not match its "
                              f"{expected.algorithm} in the manifest; the OVA is corrupt")
    template_name = name or path.name.removesuffix(".ova")
    return CheckedOva(index, descriptor_text(descriptor), template_name, sidecar_sha256(path),
                      provenance_of(report))


def provenance_of(report: Report) -> OvaProvenance:
    signature = report.signature or {}
    sbom = report.sbom or {}
    trusted = signature.get("trusted")
    return OvaProvenance(
        signer=str(signature["signer"]) if signature else None,
        signer_fingerprint=str(signature["fingerprint_sha256"]) if signature else None,
        signer_trusted=trusted if isinstance(trusted, bool) else None,
        sbom=str(sbom["member"]) if sbom else None,
        sbom_sha256=str(sbom["sha256"]) if sbom else None,
    )


def disks_needed(index: OvaIndex) -> int:
    total = 0
    for disk, member in index.disks():
        total += disk.populated_size or (member.size if member else 0) or 0
    nvram = index.nvram_member
    return total + (nvram.size if nvram else 0)
