"""An offline site: profiles need no internet to check, and every ISO source resolves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovapipe.paths import VARS_DIR
from ovapipe.varfiles import resolve

ENV = {"VSPHERE_PASSWORD": "not-written"}
PLACEMENT = VARS_DIR / "site" / "example.json"


@pytest.mark.parametrize("profile", sorted(p.stem for p in (VARS_DIR / "os").glob("*.json")))
def test_profiles_pin_the_iso_checksum_instead_of_downloading_it(profile: str) -> None:
    values = resolve(profile, [PLACEMENT], env=ENV).values
    checksum = str(values["iso_checksum"])
    assert checksum.startswith("sha256:") and len(checksum) == len("sha256:") + 64


@pytest.mark.parametrize("source", [
    {"iso_url": "file:///srv/iso/ubuntu-20.04.6-live-server-amd64.iso",
     "iso_checksum": "file:/srv/iso/SHA256SUMS"},
    {"iso_url": "", "iso_checksum": "",
     "iso_paths": ["[LocalDS_0] iso/ubuntu-20.04.6-live-server-amd64.iso"]},
    json.loads((VARS_DIR / "site" / "offline-mirror.json").read_text()),
], ids=["local-path", "datastore-path", "site-mirror"])
def test_an_iso_from_a_local_path_a_datastore_or_a_mirror_resolves(
    source: dict[str, object], tmp_path: Path
) -> None:
    site = tmp_path / "iso.json"
    site.write_text(json.dumps(source))
    values = resolve("ubuntu-2004-efi", [PLACEMENT, site], env=ENV).values
    for key, value in source.items():
        assert values[key] == value
