"""The typed records publish's stages pass on: options in, handoff records out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ovapipe.files import write_json
from ovapipe.hardware import FIRMWARE_EFI, GPU_MIN_VMX
from ovapipe.paths import OUTPUT_DIR


@dataclass(frozen=True)
class PublishOptions:
    ova: Path
    datacenters: tuple[str, ...]
    cluster: str | None = None
    resource_pool: str | None = None
    datastore: str | None = None
    folder: str | None = None
    network: str | None = None
    name: str | None = None
    replace: bool = False
    snapshot: bool = True
    concurrency: int = 2
    output_dir: Path = OUTPUT_DIR
    min_vmx: int = GPU_MIN_VMX
    firmware: str = FIRMWARE_EFI
    # This site's pipeline id (invoke.yaml ovapipe.pipeline_id), recorded on the template:
    # retention deletes only templates that carry it.
    pipeline_id: str | None = None
    # Extra facts recorded on the template beside the OVA's build facts (e.g. nightly marks).
    facts: Mapping[str, str] = field(default_factory=dict)
    # invoke.yaml ovapipe.signing.require / trust: only OVAs a trusted signer signed.
    require_signature: bool = False
    trust: Path | None = None
    # --library NAME: upload once into this content library, deploy its item everywhere.
    library: str | None = None
    library_datastore: str | None = None  # default: --datastore in the first datacenter
    library_publish: bool = False  # make the library published (subscription URL printed)


@dataclass(frozen=True)
class OvaProvenance:
    """Who signed the published OVA and which SBOM it carries (None: unsigned / none)."""

    signer: str | None = None  # the signing certificate's subject
    signer_fingerprint: str | None = None  # SHA-256 of that certificate
    signer_trusted: bool | None = None  # None: checked without a trust anchor
    sbom: str | None = None  # the SBOM member's name
    sbom_sha256: str | None = None


@dataclass(frozen=True)
class LibrarySource:
    """--library: the content library item every datacenter deploys."""

    library_id: str
    library_name: str
    item_id: str
    item_name: str
    publish_url: str | None


@dataclass(frozen=True)
class PublishRecord:
    """The handoff record (output/NAME/publish-DC.json) that cluster-template and nightly read."""

    datacenter: str
    template: str
    inventory_path: str
    moref: str
    instance_uuid: str | None
    vmx: str | None
    firmware: str | None
    secure_boot: bool
    snapshot: str | None
    ova_sha256: str | None
    provenance: OvaProvenance = field(default_factory=OvaProvenance)
    library_id: str | None = None  # --library: the content library and item deployed from
    library_item_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_path(output_dir: Path, name: str, datacenter: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in datacenter)
    return output_dir / name / f"publish-{safe}.json"


def write_record(output_dir: Path, name: str, record: PublishRecord) -> None:
    write_json(record_path(output_dir, name, record.datacenter), record.as_dict())
