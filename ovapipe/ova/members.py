"""The names of the members an OVA carries beside its descriptor, manifest and disks."""

from __future__ import annotations

from typing import Final

CERT_SUFFIX: Final = ".cert"  # NAME.cert: the manifest's signature and certificates (ovftool)
SBOM_SUFFIX: Final = ".spdx.json"  # NAME.spdx.json: the image's SBOM, listed in the manifest
