"""OVA signatures (NAME.cert): ovapipe signs and verifies them, and so does openssl's CLI.

Every key and certificate is made here, per test; OVAs signed by ``openssl dgst -sign`` and
packed by Python's tarfile check that the format is ovftool's, not only self-consistent.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ovafactory import Entry, write_tar
from ovafactory import read_members as _members
from ovapipe.validators.ova import RULES, validate_ova
from pki import DAY, NOW, Identity, issue, new_key

from ovapipe.config import SigningSettings, signing_settings
from ovapipe.errors import ConfigError
from ovapipe.findings import Report
from ovapipe.ova import assemble_ova
from ovapipe.ova.resign import sign_ova
from ovapipe.ova.signing import (
    SignatureFormatError,
    Signer,
    load_signer,
    parse_cert_member,
    signer_from,
)
from ovapipe.paths import REPO_ROOT

NAME = "ubuntu-2004-efi-test"


@pytest.fixture(scope="module")
def ca() -> Identity:
    return issue("ovapipe test CA", ca=True)


@pytest.fixture(scope="module")
def signer_id(ca: Identity) -> Identity:
    return issue("image signer", ca)


@pytest.fixture
def pem_files(tmp_path: Path, ca: Identity, signer_id: Identity) -> dict[str, Path]:
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(ca.cert_pem())
    key, cert = signer_id.write(tmp_path, "signer")
    return {"ca": ca_pem, "key": key, "cert": cert}


def _signer(identity: Identity, *extra: Identity, algorithm: str = "SHA256") -> Signer:
    return Signer(identity.key, (identity.cert, *(e.cert for e in extra)), algorithm)


def _by_name(entries: list[Entry], suffix: str) -> Entry:
    (entry,) = [e for e in entries if e.name.endswith(suffix)]
    return entry


def _errors(report: Report) -> set[str]:
    return {f.rule for f in report.errors}


@pytest.fixture
def signed_ova(tmp_path: Path, efi_vmdk: Path, build_facts: object, signer_id: Identity) -> Path:
    return assemble_ova(tmp_path / "out", NAME, [efi_vmdk], build_facts,  # type: ignore[arg-type]
                        signer=_signer(signer_id)).path


# ---- round trip --------------------------------------------------------------------------


def test_assembled_signed_ova_verifies_against_its_ca(signed_ova: Path, pem_files: dict[str, Path]
                                                      ) -> None:
    names = [e.name for e in _members(signed_ova)]
    assert names[:3] == [f"{NAME}.ovf", f"{NAME}.mf", f"{NAME}.cert"]
    assert names[3].endswith(".vmdk")
    report = validate_ova(signed_ova, require_signature=True, trust=pem_files["ca"])
    assert report.ok, report.render()
    assert report.findings == []
    assert report.signature is not None and report.signature["trusted"] is True
    assert report.signature["signer"] == "CN=image signer"
    assert "signed by: CN=image signer (trusted)" in report.render()


def test_signature_is_what_openssl_verifies(signed_ova: Path, tmp_path: Path,
                                            signer_id: Identity) -> None:
    entries = _members(signed_ova)
    manifest, cert = _by_name(entries, ".mf"), _by_name(entries, ".cert")
    line, _, pem = cert.data.partition(b"\n")
    assert line.startswith(f"SHA256({NAME}.mf)= ".encode())
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    (tmp_path / "m.mf").write_bytes(manifest.data)
    (tmp_path / "sig").write_bytes(bytes.fromhex(line.split(b"= ")[1].decode()))
    (tmp_path / "pub.pem").write_bytes(pem)
    subprocess.run(["openssl", "x509", "-in", tmp_path / "pub.pem", "-pubkey", "-noout",
                    "-out", tmp_path / "key.pub"], check=True, capture_output=True)
    verified = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", tmp_path / "key.pub", "-signature",
         tmp_path / "sig", tmp_path / "m.mf"], capture_output=True, text=True)
    assert verified.stdout.strip() == "Verified OK"


def _openssl_signed(tmp_path: Path, source: Path, key: Path, chain_pem: bytes,
                    digest: str = "sha256", order: str = "ovftool") -> Path:
    """``source``'s members re-packed by tarfile with a .cert that openssl's CLI signed."""
    entries = [e for e in _members(source) if not e.name.endswith(".cert")]
    manifest = _by_name(entries, ".mf")
    (tmp_path / "sign.mf").write_bytes(manifest.data)
    subprocess.run(["openssl", "dgst", f"-{digest}", "-sign", key, "-out", tmp_path / "sig",
                    tmp_path / "sign.mf"], check=True, capture_output=True)
    signature = (tmp_path / "sig").read_bytes().hex()
    cert = Entry(manifest.name.replace(".mf", ".cert"),
                 f"{digest.upper()}({manifest.name})= {signature}\n".encode() + chain_pem)
    position = 2 if order == "ovftool" else len(entries)
    entries.insert(position, cert)
    return write_tar(tmp_path / "openssl.ova", entries)


def test_ova_signed_by_openssl_with_an_intermediate(tmp_path: Path, efi_ova: Path,
                                                   ca: Identity) -> None:
    intermediate = issue("intermediate CA", ca, ca=True)
    leaf = issue("release signer", intermediate)
    key, _ = leaf.write(tmp_path, "leaf")
    ova = _openssl_signed(tmp_path, efi_ova, key, leaf.cert_pem() + intermediate.cert_pem())
    trust = tmp_path / "root.pem"
    trust.write_bytes(ca.cert_pem())
    report = validate_ova(ova, require_signature=True, trust=trust)
    assert report.ok and report.findings == [], report.render()
    assert report.signature is not None and report.signature["signer"] == "CN=release signer"


def test_sha512_signs_and_sha1_is_read_but_never_written(tmp_path: Path, efi_ova: Path,
                                                         signer_id: Identity,
                                                         pem_files: dict[str, Path]) -> None:
    ova = tmp_path / "s.ova"
    shutil.copy(efi_ova, ova)
    sign_ova(ova, _signer(signer_id, algorithm="SHA512"))
    report = validate_ova(ova, require_signature=True, trust=pem_files["ca"])
    assert report.ok and report.signature is not None
    assert report.signature["algorithm"] == "SHA512"
    with pytest.raises(ConfigError, match="SHA1 is refused"):
        load_signer(certificate=pem_files["cert"], key_file=pem_files["key"], algorithm="SHA1")
    old = _openssl_signed(tmp_path, efi_ova, pem_files["key"], signer_id.cert_pem(), "sha1")
    report = validate_ova(old, require_signature=True, trust=pem_files["ca"])
    assert report.ok and report.rules() == {"signature.weak-digest"}, report.render()


def test_sign_ova_in_place_replaces_a_previous_signature(tmp_path: Path, efi_ova: Path,
                                                         signer_id: Identity, ca: Identity,
                                                         pem_files: dict[str, Path]) -> None:
    ova = tmp_path / f"{NAME}.ova"
    shutil.copy(efi_ova, ova)
    (tmp_path / f"{NAME}.ova.sha256").write_text("0" * 64 + f"  {NAME}.ova\n")
    other = issue("second signer", ca)
    sign_ova(ova, _signer(other))
    signed = sign_ova(ova, _signer(signer_id))
    names = [e.name for e in _members(ova)]
    assert names.count(f"{NAME}.cert") == 1 and names[2] == f"{NAME}.cert"
    assert signed.sha256 == hashlib.sha256(ova.read_bytes()).hexdigest()
    assert (tmp_path / f"{NAME}.ova.sha256").read_text().split()[0] == signed.sha256
    unsigned = {e.name: e.data for e in _members(efi_ova)}
    assert {e.name: e.data for e in _members(ova) if not e.name.endswith(".cert")} == unsigned
    report = validate_ova(ova, require_signature=True, trust=pem_files["ca"])
    assert report.ok and report.signature is not None
    assert report.signature["signer"] == "CN=image signer"


def test_pinned_self_signed_certificate(tmp_path: Path, efi_ova: Path) -> None:
    pinned = issue("site signer")  # self-signed, not a CA: trusted only because it is pinned
    ova = tmp_path / "p.ova"
    shutil.copy(efi_ova, ova)
    sign_ova(ova, _signer(pinned))
    trust = tmp_path / "pin.pem"
    trust.write_bytes(pinned.cert_pem())
    assert validate_ova(ova, require_signature=True, trust=trust).ok
    trust.write_bytes(issue("another pin").cert_pem())
    assert _errors(validate_ova(ova, trust=trust)) == {"signature.untrusted"}


# ---- rejections, each with its rule --------------------------------------------------------

Case = Callable[[Path, Path, Identity, Identity], Path]


def _repack(tmp_path: Path, source: Path, edit: Callable[[list[Entry]], list[Entry]]) -> Path:
    return write_tar(tmp_path / "edited.ova", edit(_members(source)))


def _tamper_descriptor(entries: list[Entry]) -> list[Entry]:
    return [Entry(e.name, e.data.replace(b"ovapipe", b"0vapipe")) if e.name.endswith(".ovf")
            else e for e in entries]


def _tamper_manifest_too(entries: list[Entry]) -> list[Entry]:
    entries = _tamper_descriptor(entries)
    ovf = _by_name(entries, ".ovf")
    old = _by_name(entries, ".mf")
    lines = [f"SHA256({ovf.name})= {hashlib.sha256(ovf.data).hexdigest()}".encode()
             if line.startswith(f"SHA256({ovf.name})".encode()) else line
             for line in old.data.splitlines()]
    return [Entry(e.name, b"\n".join(lines) + b"\n") if e is old else e for e in entries]


def _signed_copy(tmp_path: Path, efi_ova: Path, signer: Signer) -> Path:
    ova = tmp_path / "signed.ova"
    shutil.copy(efi_ova, ova)
    sign_ova(ova, signer)
    return ova


CASES: dict[str, tuple[Case, set[str]]] = {
    "tampered descriptor": (
        lambda t, o, ca, s: _repack(t, _signed_copy(t, o, _signer(s)), _tamper_descriptor),
        {"manifest.mismatch"},
    ),
    "tampered manifest": (
        lambda t, o, ca, s: _repack(t, _signed_copy(t, o, _signer(s)), _tamper_manifest_too),
        {"signature.bad"},
    ),
    "wrong key": (
        lambda t, o, ca, s: _signed_copy(t, o, Signer(new_key(), (s.cert,))),
        {"signature.bad"},
    ),
    "expired certificate": (
        lambda t, o, ca, s: _signed_copy(t, o, _signer(issue(
            "old signer", ca, not_before=NOW - 400 * DAY, not_after=NOW - DAY))),
        {"signature.expired"},
    ),
    "certificate not yet valid": (
        lambda t, o, ca, s: _signed_copy(t, o, _signer(issue(
            "future signer", ca, not_before=NOW + DAY, not_after=NOW + 9 * DAY))),
        {"signature.expired"},
    ),
    "untrusted issuer": (
        lambda t, o, ca, s: _signed_copy(t, o, _signer(issue(
            "stranger", issue("other CA", ca=True)))),
        {"signature.untrusted"},
    ),
    "issued by a non-CA certificate": (
        lambda t, o, ca, s: _signed_copy(t, o, _signer(issue("sub", s), s)),
        {"signature.untrusted"},
    ),
    "cert after the disks": (
        lambda t, o, ca, s: _repack(t, _signed_copy(t, o, _signer(s)),
                                    lambda e: [e[0], e[1], *e[3:], e[2]]),
        {"signature.order"},
    ),
    "unsigned": (lambda t, o, ca, s: o, {"signature.unsigned"}),
    "garbage .cert": (
        lambda t, o, ca, s: _repack(t, _signed_copy(t, o, _signer(s)), lambda e: [
            Entry(x.name, b"SHA256(x.mf)= zz\n") if x.name.endswith(".cert") else x
            for x in e]),
        {"signature.invalid"},
    ),
    "signature over another manifest name": (
        lambda t, o, ca, s: _repack(t, _signed_copy(t, o, _signer(s)), lambda e: [
            Entry(x.name, x.data.replace(f"({NAME}.mf)".encode(), b"(other.mf)", 1))
            if x.name.endswith(".cert") else x for x in e]),
        {"signature.invalid"},
    ),
    ".cert without a manifest": (
        lambda t, o, ca, s: _repack(t, _signed_copy(t, o, _signer(s)),
                                    lambda e: [x for x in e if not x.name.endswith(".mf")]),
        {"signature.no-manifest"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejection_names_its_rule(case: str, tmp_path: Path, efi_ova: Path, ca: Identity,
                                  signer_id: Identity, pem_files: dict[str, Path]) -> None:
    build, expected = CASES[case]
    ova = build(tmp_path, efi_ova, ca, signer_id)
    report = validate_ova(ova, require_signature=True, trust=pem_files["ca"])
    assert not report.ok
    assert _errors(report) == expected, report.render()
    for finding in report.findings:
        assert RULES[finding.rule][0] == finding.severity and finding.message


def test_every_signature_rule_has_a_case() -> None:
    tripped = set().union(*(rules for _, rules in CASES.values()))
    tripped |= {"signature.weak-digest", "signature.signer-unchecked"}  # warnings, above/below
    assert {r for r in RULES if r.startswith("signature.")} <= tripped


def test_without_require_a_signature_is_still_checked(tmp_path: Path, efi_ova: Path,
                                                      signer_id: Identity) -> None:
    ova = _signed_copy(tmp_path, efi_ova, _signer(signer_id))
    report = validate_ova(ova)
    assert report.ok and report.rules() == {"signature.signer-unchecked"}
    assert "fingerprint" in report.findings[0].message
    assert validate_ova(efi_ova).findings == []  # unsigned and not required: nothing to say
    bad = _repack(tmp_path, ova, _tamper_manifest_too)
    assert _errors(validate_ova(bad)) == {"signature.bad"}


def test_require_signature_without_trust_is_a_usage_error(efi_ova: Path) -> None:
    with pytest.raises(ConfigError, match="--trust"):
        validate_ova(efi_ova, require_signature=True)


# ---- keys: from a file or a variable, never kept around -------------------------------------


def test_key_from_variable_is_removed_from_the_environment(pem_files: dict[str, Path],
                                                           signer_id: Identity) -> None:
    env = {"SITE_KEY": signer_id.key_pem().decode(), "OTHER": "x"}
    signer = load_signer(certificate=pem_files["cert"], key_env="SITE_KEY", env=env)
    assert env == {"OTHER": "x"}
    assert "PRIVATE" not in repr(signer) and "key=" not in repr(signer)
    with pytest.raises(ConfigError, match="SITE_KEY is not set"):
        load_signer(certificate=pem_files["cert"], key_env="SITE_KEY", env=env)


def test_bad_keys_are_clear_errors(tmp_path: Path, pem_files: dict[str, Path]) -> None:
    other = issue("not the signer")
    other_key, _ = other.write(tmp_path, "other")
    with pytest.raises(ConfigError, match="is not the signing key file"):
        load_signer(certificate=pem_files["cert"], key_file=other_key)
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM private key"):
        load_signer(certificate=pem_files["cert"], key_file=junk)
    with pytest.raises(ConfigError, match="exactly one"):
        load_signer(certificate=pem_files["cert"])
    with pytest.raises(ConfigError, match="certificate"):
        signer_from(SigningSettings(key_file=pem_files["key"]))


def test_invoke_yaml_signing_section(tmp_path: Path) -> None:
    parsed = signing_settings({"signing": {"certificate": "c.pem", "key_env": "K",
                                           "require": "yes", "trust": "ca.pem"}})
    assert parsed.require and parsed.trust == Path("ca.pem") and parsed.key_env == "K"
    with pytest.raises(ConfigError, match="never a setting"):
        signing_settings({"signing": {"key": "-----BEGIN"}})
    with pytest.raises(ConfigError, match=r"ovapipe.signing.keyfile is not a setting"):
        signing_settings({"signing": {"keyfile": "x"}})


# ---- the command line ----------------------------------------------------------------------


def _invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "invoke"), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_sign_and_gate(tmp_path: Path, efi_ova: Path, signer_id: Identity,
                           pem_files: dict[str, Path]) -> None:
    ova = tmp_path / "cli.ova"
    shutil.copy(efi_ova, ova)
    key = signer_id.key_pem().decode()
    signed = _invoke("sign-ova", "--path", str(ova), "--certificate", str(pem_files["cert"]),
                     env={"OVAPIPE_SIGNING_KEY": key})
    assert signed.returncode == 0, signed.stderr
    assert "CN=image signer" in signed.stdout and "PRIVATE KEY" not in signed.stdout + signed.stderr
    gate = ["validate-ova", "--path", str(ova), "--require-signature"]
    assert _invoke(*gate, "--trust", str(pem_files["ca"])).returncode == 0
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(issue("stranger CA", ca=True).cert_pem())
    refused = _invoke(*gate, "--trust", str(stranger), "--json")
    assert refused.returncode == 1 and '"signature.untrusted"' in refused.stdout
    usage = _invoke(*gate)
    assert usage.returncode == 2 and "--trust" in usage.stderr and "Traceback" not in usage.stderr
    sha1 = _invoke("sign-ova", "--path", str(ova), "--certificate", str(pem_files["cert"]),
                   "--key-file", str(pem_files["key"]), "--algorithm", "SHA1")
    assert sha1.returncode == 2 and "SHA1 is refused" in sha1.stderr


# ---- hostile .cert members -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600) | st.builds(
    lambda a, n, h, rest: f"{a}({n})= {h}\n".encode() + rest,
    st.sampled_from(["SHA256", "SHA1", "MD5", "sha512"]), st.text(max_size=20),
    st.text("0123456789abcdefg", max_size=40),
    st.sampled_from([b"", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]),
))
def test_any_cert_member_parses_or_names_the_problem(data: bytes) -> None:
    try:
        parse_cert_member(data, "x.cert")
    except SignatureFormatError as exc:
        assert "x.cert" in exc.message


def test_publish_refuses_an_unsigned_ova_before_connecting(efi_ova: Path,
                                                            pem_files: dict[str, Path]) -> None:
    from ovapipe.config import Connection
    from ovapipe.errors import CheckFailed
    from ovapipe.vsphere.publish import PublishOptions, publish

    options = PublishOptions(ova=efi_ova, datacenters=("DC0",), require_signature=True,
                             trust=pem_files["ca"])
    nowhere = Connection("127.0.0.1", 9, "user", "pass", insecure=True, timeout=1)
    with pytest.raises(CheckFailed, match=r"signature\.unsigned"):
        publish(options, nowhere)


@pytest.mark.timeout(20)
def test_a_hostile_cert_member_is_refused_quickly() -> None:
    line = b"SHA256(x.mf)= " + b"ab" * 256 + b"\n"
    for body in (b"-----BEGIN CERTIFICATE-----\n" * 35_000,
                 (b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n") * 100):
        with pytest.raises(SignatureFormatError):
            parse_cert_member(line + body, "x.cert")
