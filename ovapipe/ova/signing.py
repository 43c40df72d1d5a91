"""OVA signatures as ovftool and open-vmdk's ova-compose write them: the ``NAME.cert`` member.

The member holds one line ``SHA256(NAME.mf)= <hex>``, the RSA PKCS#1 v1.5 signature over the
exact bytes of the manifest (what ``openssl dgst -sha256 -sign key.pem NAME.mf`` makes),
followed by the signer's PEM certificate and any intermediates. Because the manifest lists a
digest of every other member, the signature covers the whole OVA.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ovapipe.errors import ConfigError

if TYPE_CHECKING:
    from ovapipe.config import SigningSettings

# Manifest spelling -> hash; signing refuses SHA-1 (collisions are practical), reading accepts
# it because older ovftool releases signed with it.
SIGN_ALGORITHMS: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "SHA256": hashes.SHA256, "SHA512": hashes.SHA512,
}
VERIFY_ALGORITHMS: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    **SIGN_ALGORITHMS, "SHA1": hashes.SHA1,
}
DEFAULT_ALGORITHM: Final = "SHA256"
MAX_CERT_MEMBER_BYTES: Final = 1024 * 1024
MAX_CHAIN_DEPTH: Final = 8
MIN_RSA_BITS: Final = 2048
DEFAULT_KEY_ENV: Final = "OVAPIPE_SIGNING_KEY"
_SIGNATURE_LINE: Final = re.compile(
    rb"^\s*([A-Za-z0-9]+)\s*\(([^)\r\n]+)\)\s*=\s*([0-9A-Fa-f]+)\s*$"
)
PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
PEM_END: Final = b"-----END CERTIFICATE-----"
MAX_CHAIN_CERTIFICATES: Final = 16


class SignatureFormatError(Exception):
    """A ``.cert`` member that is not a signature line followed by PEM certificates."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _pem_blocks(data: bytes, where: str) -> list[bytes]:
    """Each BEGIN..END CERTIFICATE block, found in one linear pass."""
    blocks: list[bytes] = []
    position = 0
    while (start := data.find(PEM_BEGIN, position)) >= 0:
        end = data.find(PEM_END, start)
        if end < 0:
            break
        blocks.append(data[start:end + len(PEM_END)] + b"\n")
        if len(blocks) > MAX_CHAIN_CERTIFICATES:
            raise SignatureFormatError(f"{where} holds more than {MAX_CHAIN_CERTIFICATES} "
                                       "certificates")
        position = end + len(PEM_END)
    return blocks


def _load_certificates(data: bytes, where: str) -> tuple[x509.Certificate, ...]:
    blocks = _pem_blocks(data, where)
    if not blocks:
        raise SignatureFormatError(f"{where} holds no PEM certificate")
    certificates = []
    for number, block in enumerate(blocks, start=1):
        try:
            certificates.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise SignatureFormatError(f"{where}: certificate {number} is unreadable ({exc})"
                                       ) from None
    return tuple(certificates)


def _read_small(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_CERT_MEMBER_BYTES:
            raise ConfigError(f"{what} {path}: {size} bytes, too large for a PEM file")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: {exc.strerror}") from None


def load_trust(path: Path) -> tuple[x509.Certificate, ...]:
    """The CA certificate(s) or pinned signer certificate(s) in a PEM file (--trust)."""
    data = _read_small(Path(path), "trust file")
    try:
        return _load_certificates(data, f"trust file {path}")
    except SignatureFormatError as exc:
        raise ConfigError(exc.message) from None


def subject_of(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "(empty subject)"


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


# ---- signing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """A private key and its certificate chain (signer first); the key never leaves memory."""

    key: rsa.RSAPrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...]
    algorithm: str = DEFAULT_ALGORITHM

    @property
    def subject(self) -> str:
        return subject_of(self.chain[0])

    def sign(self, manifest: bytes) -> bytes:
        return self.key.sign(manifest, padding.PKCS1v15(), SIGN_ALGORITHMS[self.algorithm]())

    def cert_member(self, manifest_name: str, manifest: bytes) -> bytes:
        """The ``NAME.cert`` member's bytes for this manifest."""
        line = f"{self.algorithm}({manifest_name})= {self.sign(manifest).hex()}\n".encode()
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        return line + pem


def signing_algorithm(text: str) -> str:
    algorithm = text.strip().upper().replace("-", "")
    if algorithm == "SHA1":
        raise ConfigError("signing algorithm SHA1 is refused (SHA-1 collisions are practical); "
                          "use SHA256 (default) or SHA512")
    if algorithm not in SIGN_ALGORITHMS:
        raise ConfigError(f"signing algorithm {text!r}: expected SHA256 or SHA512")
    return algorithm


def load_signer(
    *,
    certificate: Path,
    key_file: Path | None = None,
    key_env: str | None = None,
    algorithm: str = DEFAULT_ALGORITHM,
    env: MutableMapping[str, str] | None = None,
) -> Signer:
    """The signing key from a PEM file or from an environment variable (then removed from it).

    The variable is removed once read so that no child process (Packer, gpgv) inherits the key.
    """
    env = os.environ if env is None else env
    if (key_file is None) == (key_env is None):
        raise ConfigError("signing needs exactly one of a key file (ovapipe.signing.key_file) "
                          "or a key variable (ovapipe.signing.key_env)")
    if key_file is not None:
        where = f"signing key file {key_file}"
        key_bytes = _read_small(Path(key_file), "signing key file")
    else:
        assert key_env is not None
        where = f"signing key variable {key_env}"
        text = env.pop(key_env, None)
        if not text:
            raise ConfigError(f"{key_env} is not set: export the PEM private key in it, or "
                              "name a key file")
        key_bytes = text.encode()
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if "encrypted" in str(exc).lower() or isinstance(
            exc, TypeError) else "not a PEM private key"
        raise ConfigError(f"{where}: cannot load the key ({reason})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: an OVA signature is RSA; this is a "
                          f"{type(key).__name__.removeprefix('_')} key")
    if key.key_size < MIN_RSA_BITS:
        raise ConfigError(f"{where}: {key.key_size}-bit RSA; at least {MIN_RSA_BITS} bits")
    try:
        chain = _load_certificates(_read_small(Path(certificate), "signing certificate"),
                                   f"signing certificate {certificate}")
    except SignatureFormatError as exc:
        raise ConfigError(exc.message) from None
    if chain[0].public_key() != key.public_key():
        raise ConfigError(f"signing certificate {certificate}: its first certificate "
                          f"({subject_of(chain[0])}) is not the {where}'s")
    return Signer(key, chain, signing_algorithm(algorithm))


# ---- reading and verifying -----------------------------------------------------------------


@dataclass(frozen=True)
class CertMember:
    algorithm: str
    manifest_name: str
    signature: bytes
    chain: tuple[x509.Certificate, ...]


def parse_cert_member(data: bytes, member_name: str) -> CertMember:
    if len(data) > MAX_CERT_MEMBER_BYTES:
        raise SignatureFormatError(f"{member_name} is {len(data)} bytes; too large")
    first, _, rest = data.partition(b"\n")
    match = _SIGNATURE_LINE.match(first)
    if not match:
        raise SignatureFormatError(
            f"{member_name}: the first line is not 'ALGORITHM(NAME.mf)= hex signature'"
        )
    algorithm = match.group(1).decode().upper()
    if algorithm not in VERIFY_ALGORITHMS:
        raise SignatureFormatError(f"{member_name}: signature algorithm {algorithm} is not one "
                                   f"of {', '.join(VERIFY_ALGORITHMS)}")
    hex_text = match.group(3)
    if len(hex_text) % 2:
        raise SignatureFormatError(f"{member_name}: the signature has an odd number of digits")
    return CertMember(
        algorithm=algorithm,
        manifest_name=match.group(2).decode("utf-8", "replace"),
        signature=bytes.fromhex(hex_text.decode()),
        chain=_load_certificates(rest, member_name),
    )


@dataclass(frozen=True)
class SignatureProblem:
    rule: str
    message: str


@dataclass(frozen=True)
class SignatureCheck:
    """What validate-ova reports about a signature, and why it fails (if it does)."""

    signer: str
    fingerprint: str
    algorithm: str
    not_after: str
    trusted: bool | None  # None: no trust anchor was given
    problems: tuple[SignatureProblem, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"signer": self.signer, "fingerprint_sha256": self.fingerprint,
                "algorithm": self.algorithm, "not_after": self.not_after,
                "trusted": self.trusted, "valid": not self.problems}


def _validity_problem(certificate: x509.Certificate, now: dt.datetime) -> str | None:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < start:
        return f"certificate {subject_of(certificate)} is not valid before {start.isoformat()}"
    if now > end:
        return f"certificate {subject_of(certificate)} expired on {end.isoformat()}"
    return None


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    if child.issuer != issuer.subject or not _is_ca(issuer):
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def trust_path(chain: tuple[x509.Certificate, ...], trust: tuple[x509.Certificate, ...]
               ) -> list[x509.Certificate] | None:
    """Signer .. anchor when the chain reaches a trusted CA (or the signer is pinned)."""
    pinned = {fingerprint(c) for c in trust}
    path = [chain[0]]
    for _ in range(MAX_CHAIN_DEPTH):
        current = path[-1]
        if fingerprint(current) in pinned:
            return path
        anchor = next((c for c in trust if _issued_by(current, c)), None)
        if anchor is not None:
            return [*path, anchor]
        issuer = next((c for c in chain[1:] if c not in path and _issued_by(current, c)), None)
        if issuer is None:
            return None
        path.append(issuer)
    return None


def verify(
    cert: CertMember,
    manifest_name: str,
    manifest: bytes,
    trust: tuple[x509.Certificate, ...] | None,
    now: dt.datetime | None = None,
) -> SignatureCheck:
    """Check the signature over the manifest bytes, the chain and the validity dates."""
    now = now or dt.datetime.now(tz=dt.UTC)
    leaf = cert.chain[0]
    problems: list[SignatureProblem] = []
    if cert.manifest_name != manifest_name:
        problems.append(SignatureProblem(
            "signature.invalid",
            f"the signature is over '{cert.manifest_name}', but the manifest is '{manifest_name}'",
        ))
    public_key = leaf.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        problems.append(SignatureProblem(
            "signature.invalid", f"the signer's key is {type(public_key).__name__}, not RSA"))
    else:
        try:
            public_key.verify(cert.signature, manifest, padding.PKCS1v15(),
                              VERIFY_ALGORITHMS[cert.algorithm]())
        except InvalidSignature:
            problems.append(SignatureProblem(
                "signature.bad",
                f"the {cert.algorithm} signature over {manifest_name} does not verify with the "
                f"key of {subject_of(leaf)}: the manifest was changed or another key signed it",
            ))
    trusted: bool | None = None
    dated = [leaf, *cert.chain[1:]]
    if trust is not None:
        path = trust_path(cert.chain, trust)
        trusted = path is not None
        if path is None:
            problems.append(SignatureProblem(
                "signature.untrusted",
                f"signer {subject_of(leaf)} (issued by {leaf.issuer.rfc4514_string()}) is "
                "neither a pinned certificate nor issued by a trusted CA",
            ))
        else:
            dated = path
    for certificate in dated:
        reason = _validity_problem(certificate, now)
        if reason:
            problems.append(SignatureProblem("signature.expired", reason))
    return SignatureCheck(
        signer=subject_of(leaf), fingerprint=fingerprint(leaf), algorithm=cert.algorithm,
        not_after=leaf.not_valid_after_utc.isoformat(), trusted=trusted,
        problems=tuple(problems),
    )


def signer_from(settings: SigningSettings, env: MutableMapping[str, str] | None = None
                ) -> Signer:
    """The Signer invoke.yaml's ``ovapipe.signing`` describes (key variable by default)."""
    if settings.certificate is None:
        raise ConfigError("signing needs a certificate: set ovapipe.signing.certificate in "
                          "invoke.yaml or pass --certificate PEM")
    key_env = settings.key_env
    if settings.key_file is None and key_env is None:
        key_env = DEFAULT_KEY_ENV
    return load_signer(certificate=settings.certificate, key_file=settings.key_file,
                       key_env=key_env if settings.key_file is None else None,
                       algorithm=settings.algorithm, env=env)
