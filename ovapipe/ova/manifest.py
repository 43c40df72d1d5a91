"""OVA manifests (NAME.mf): lines ``SHA256(file)= hex``; SHA1, SHA256 and SHA512 accepted."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

# Manifest name -> hashlib name and hex digest length.
ALGORITHMS: Final[dict[str, tuple[str, int]]] = {
    "SHA1": ("sha1", 40),
    "SHA256": ("sha256", 64),
    "SHA512": ("sha512", 128),
}
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
_LINE_RE = re.compile(r"^\s*([A-Za-z0-9]+)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)\s*$")


class ManifestError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ManifestEntry:
    """The digest a manifest expects for one file."""

    name: str
    algorithm: str  # manifest spelling: SHA1, SHA256, SHA512
    digest: str  # lower-case hex

    @property
    def hashlib_name(self) -> str:
        return ALGORITHMS[self.algorithm][0]

    def new_hash(self) -> hashlib._Hash:
        """A fresh hash object of the right algorithm, for hashing while streaming."""
        return hashlib.new(self.hashlib_name)

    def matches(self, hexdigest: str) -> bool:
        return hexdigest.lower() == self.digest


def parse_manifest(data: bytes) -> dict[str, ManifestEntry]:
    """Manifest bytes -> entries by file name; ManifestError names the bad line."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is {len(data)} bytes; too large to be a manifest")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    entries: dict[str, ManifestEntry] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE_RE.match(line)
        if not match:
            raise ManifestError(f"line {number} is not 'ALGORITHM(file)= hex': {line[:120]!r}")
        algorithm, name, digest = match.group(1).upper(), match.group(2), match.group(3).lower()
        if algorithm not in ALGORITHMS:
            raise ManifestError(
                f"line {number}: algorithm {match.group(1)} is not one of "
                f"{', '.join(ALGORITHMS)}"
            )
        if len(digest) != ALGORITHMS[algorithm][1]:
            raise ManifestError(
                f"line {number}: {algorithm} digest of '{name}' has {len(digest)} hex digits, "
                f"expected {ALGORITHMS[algorithm][1]}"
            )
        if name in entries:
            raise ManifestError(f"line {number}: '{name}' is listed twice")
        entries[name] = ManifestEntry(name, algorithm, digest)
    return entries


def format_manifest(digests: list[tuple[str, str]], algorithm: str = "SHA256") -> bytes:
    """[(file name, hex digest)] -> manifest bytes in the given order."""
    return "".join(f"{algorithm}({name})= {digest}\n" for name, digest in digests).encode()
