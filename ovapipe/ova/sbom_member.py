"""The SBOM member of an OVA (NAME.spdx.json), read in place like every member."""

from __future__ import annotations

import os
from pathlib import Path

from ovapipe.errors import CheckFailed
from ovapipe.ova.members import SBOM_SUFFIX
from ovapipe.ova.reader import open_file, read_member_bytes, whole_members
from ovapipe.sbom import MAX_SBOM_BYTES, SbomError, summarize


def read_sbom_member(path: Path | str) -> bytes:
    """The SBOM's bytes; CheckFailed (exit 1) when the OVA has none or it is not SPDX."""
    path = Path(path)
    fd = open_file(path)
    try:
        member = next((m for m in whole_members(fd, path) if m.name.lower().endswith(SBOM_SUFFIX)
                       and m.kind == "file"), None)
        if member is None:
            raise CheckFailed(f"{path} holds no SBOM (no *{SBOM_SUFFIX} member); OVAs built by "
                              "ovapipe carry one")
        try:
            data = read_member_bytes(fd, member, MAX_SBOM_BYTES)
            summarize(member.name, data)
        except SbomError as exc:
            raise CheckFailed(f"{path}: {exc.message}") from None
        except ValueError as exc:
            raise CheckFailed(f"{path}: {member.name}: {exc}") from None
        return data
    finally:
        os.close(fd)
