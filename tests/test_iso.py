"""ISO authenticity: SHA256SUMS signed by a key the site pins, checked with gpgv, offline.

The tests make their own OpenPGP keys in a private GNUPGHOME and sign their own SHA256SUMS,
as Ubuntu's release team does for each release (a detached binary signature, SHA256SUMS.gpg).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ovapipe.errors import ConfigError
from ovapipe.iso import NOT_CHECKED, IsoSettings, iso_file_name, iso_settings, verify_iso

ISO = "ubuntu-20.04.6-live-server-amd64.iso"


@dataclass(frozen=True)
class Keys:
    home: Path
    good: str  # fingerprints
    other: str

    def gpg(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes",
                               "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              check=True, capture_output=True, timeout=60)

    def sign(self, key: str, sums: Path) -> Path:
        signature = sums.with_name(sums.name + ".gpg")
        self.gpg("--local-user", key, "--detach-sign", "--output", str(signature), str(sums))
        return signature

    def export(self, key: str, out: Path) -> Path:
        out.write_bytes(self.gpg("--export", key).stdout)
        return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    made = Keys(home, "", "")
    fingerprints = []
    for uid in ("Test CD Image Signing Key <cdimage@test.invalid>", "Someone Else <x@test>"):
        made.gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = made.gpg("--with-colons", "--list-keys", uid).stdout.decode()
        fingerprints.append(next(line.split(":")[9] for line in listing.splitlines()
                                 if line.startswith("fpr:")))
    try:
        yield Keys(home, *fingerprints)
    finally:  # gpg started an agent for this home: stop it, leave no process behind
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, timeout=30, check=False)


@pytest.fixture
def release(tmp_path: Path, keys: Keys) -> IsoSettings:
    iso = tmp_path / ISO
    iso.write_bytes(b"an installer image stand-in\n" * 1000)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64} *ubuntu-20.04.6-desktop-amd64.iso\n"
                    f"{hashlib.sha256(iso.read_bytes()).hexdigest()} *{ISO}\n")
    keys.sign(keys.good, sums)
    keyring = keys.export(keys.good, tmp_path / "ubuntu-cdimage.gpg")
    return IsoSettings(sha256sums=sums, keyring=keyring, local_iso=iso)


def test_good_release_verifies_offline(release: IsoSettings, keys: Keys) -> None:
    result = verify_iso(release, ISO)
    assert result.ok and result.checked, result.summary()
    assert result.signer == keys.good
    assert result.sha256 == hashlib.sha256(release.local_iso.read_bytes()).hexdigest()  # type: ignore[union-attr]
    assert "signed by" in result.summary()
    by_checksum = verify_iso(replace(release, local_iso=None), ISO, f"sha256:{result.sha256}")
    assert by_checksum.ok


def _rules(settings: IsoSettings, checksum: str | None = None) -> set[str]:
    return {f.rule for f in verify_iso(settings, ISO, checksum).findings}


def test_tampered_iso(release: IsoSettings) -> None:
    assert release.local_iso is not None
    with release.local_iso.open("ab") as handle:
        handle.write(b"backdoor")
    assert _rules(release) == {"iso.checksum-mismatch"}
    assert _rules(replace(release, local_iso=None), "sha256:" + "1" * 64) == {
        "iso.checksum-mismatch"}


def test_tampered_sha256sums(release: IsoSettings) -> None:
    assert release.sha256sums is not None
    text = release.sha256sums.read_text()
    release.sha256sums.write_text(text.replace("0" * 64, "1" * 64))
    assert _rules(release) == {"iso.bad-signature"}


def test_wrong_key(release: IsoSettings, keys: Keys, tmp_path: Path) -> None:
    assert release.sha256sums is not None
    keys.sign(keys.other, release.sha256sums)
    assert _rules(release) == {"iso.unknown-key"}
    both = keys.export(keys.other, tmp_path / "other.gpg")
    assert _rules(replace(release, keyring=both)) == set()  # pinning the other key accepts it


def test_missing_keyring_is_an_error_unless_allowed(release: IsoSettings, tmp_path: Path) -> None:
    for keyring in (None, tmp_path / "absent.gpg"):
        with pytest.raises(ConfigError, match=r"iso\.no-keyring"):
            verify_iso(replace(release, keyring=keyring), ISO)
    allowed = verify_iso(replace(release, keyring=None, allow_unverified=True), ISO)
    assert allowed.ok and not allowed.checked
    assert allowed.summary().startswith(NOT_CHECKED)


def test_not_listed_and_unreadable(release: IsoSettings, tmp_path: Path) -> None:
    assert {f.rule for f in verify_iso(release, "other.iso").findings} == {"iso.not-listed"}
    assert _rules(replace(release, signature=tmp_path / "none.gpg")) == {"iso.unreadable"}


def test_settings_and_names() -> None:
    parsed = iso_settings({"iso": {"sha256sums": "s", "keyring": "k"}})
    assert parsed.keyring == Path("k") and parsed.signature is None
    with pytest.raises(ConfigError, match=r"ovapipe\.iso\.key is not a setting"):
        iso_settings({"iso": {"key": "x"}})
    assert iso_file_name({"iso_url": f"https://releases.ubuntu.com/20.04.6/{ISO}"}) == ISO
    assert iso_file_name({"iso_paths": [f"[LocalDS_0] iso/{ISO}"]}) == ISO
