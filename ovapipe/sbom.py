"""The node image's SBOM: SPDX 2.3 JSON of the packages dpkg installed on the shipped disk.

The package list is read from the exported boot disk itself (ovapipe.rootfs), not from what the
build meant to install. The document is deterministic for one disk and build time; it goes into
the OVA as ``NAME.spdx.json``, listed in the manifest, so the signature covers it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from ovapipe import __version__
from ovapipe.rootfs import Package

SPDX_VERSION: Final = "SPDX-2.3"
MAX_SBOM_BYTES: Final = 32 * 1024 * 1024
_NAMESPACE: Final = uuid.UUID("6f766170-6970-6500-8000-73626f6d0000")
_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9.-]")


@dataclass(frozen=True)
class DiskSbom:
    """The SBOM of a boot disk and the packages it lists (for build.json)."""

    document: bytes
    packages: tuple[Package, ...]
    distro: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.document).hexdigest()


def disk_sbom(disk: Path, image: str, *, created: dt.datetime, disk_sha256: str) -> DiskSbom:
    """Read the dpkg status from ``disk``'s root file system; RootFsError says why not."""
    from ovapipe.ext4 import Ext4Error
    from ovapipe.ova.grains import WindowFile
    from ovapipe.rootfs import installed_packages, open_root_fs

    with disk.open("rb") as handle:
        root = open_root_fs(WindowFile(handle))
        packages = installed_packages(root)
        try:
            os_release = root.volume.read_file("/etc/os-release", 64 * 1024) or b""
        except Ext4Error:
            os_release = b""
    distro = next((line.split("=", 1)[1].strip().strip('"') for line in
                   os_release.decode("utf-8", "replace").splitlines()
                   if line.startswith("ID=")), "debian")
    document = spdx_document(image, packages, distro=distro, created=created,
                             disk_sha256=disk_sha256)
    return DiskSbom(document, tuple(packages), distro)


class SbomError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _spdx_id(kind: str, name: str, index: int) -> str:
    return f"SPDXRef-{kind}-{index}-{_ID_UNSAFE.sub('-', name)[:60]}"


def _purl(distro: str, package: Package) -> str:
    qualifiers = f"?arch={quote(package.architecture)}" if package.architecture else ""
    return (f"pkg:deb/{quote(distro.lower() or 'debian')}/{quote(package.name)}@"
            f"{quote(package.version, safe='.-_~+')}{qualifiers}")


def spdx_document(
    image: str,
    packages: Sequence[Package],
    *,
    distro: str,
    created: dt.datetime,
    disk_sha256: str,
) -> bytes:
    """SPDX 2.3 JSON: the image as one package that CONTAINS each installed dpkg package."""
    image_id = "SPDXRef-Image"
    entries: list[dict[str, object]] = [{
        "SPDXID": image_id, "name": image, "versionInfo": image,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "checksums": [{"algorithm": "SHA256", "checksumValue": disk_sha256}],
        "comment": "the boot disk as exported from vCenter (streamOptimized VMDK)",
        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION", "supplier": "Organization: ovapipe",
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": image_id}]
    for index, package in enumerate(packages, start=1):
        package_id = _spdx_id("Package-deb", package.name, index)
        entry: dict[str, object] = {
            "SPDXID": package_id, "name": package.name, "versionInfo": package.version,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "supplier": f"Organization: {package.maintainer}" if package.maintainer
            else "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": _purl(distro, package)}],
        }
        if package.homepage:
            entry["homepage"] = package.homepage
        if package.source:
            entry["sourceInfo"] = f"built from the {package.source} source package"
        entries.append(entry)
        relationships.append({"spdxElementId": image_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": package_id})
    namespace = uuid.uuid5(_NAMESPACE, f"{image}/{disk_sha256}")
    document = {
        "spdxVersion": SPDX_VERSION, "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image} node image", "documentNamespace":
        f"https://spdx.org/spdxdocs/ovapipe-{image}-{namespace}",
        "creationInfo": {
            "created": created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [f"Tool: ovapipe-{__version__}"],
            "comment": "packages read offline from /var/lib/dpkg/status of the shipped disk",
        },
        "packages": entries, "relationships": relationships,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


@dataclass(frozen=True)
class SbomSummary:
    member: str
    sha256: str
    packages: int  # dpkg packages (the image's own entry not counted)
    name: str

    def as_dict(self) -> dict[str, object]:
        return {"member": self.member, "sha256": self.sha256, "packages": self.packages,
                "name": self.name}


def summarize(member: str, data: bytes) -> SbomSummary:
    """What validate-ova reports about an SBOM member; SbomError when it is not SPDX 2.3."""
    if len(data) > MAX_SBOM_BYTES:
        raise SbomError(f"{member} is {len(data)} bytes; more than {MAX_SBOM_BYTES}")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SbomError(f"{member} is not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("spdxVersion") != SPDX_VERSION:
        raise SbomError(f"{member} is not an {SPDX_VERSION} document (spdxVersion "
                        f"{document.get('spdxVersion') if isinstance(document, dict) else None!r})")
    packages = document.get("packages")
    if not isinstance(packages, list):
        raise SbomError(f"{member} has no packages list")
    count = sum(1 for p in packages if isinstance(p, dict) and p.get("SPDXID") != "SPDXRef-Image")
    return SbomSummary(member, hashlib.sha256(data).hexdigest(), count,
                       str(document.get("name") or ""))
