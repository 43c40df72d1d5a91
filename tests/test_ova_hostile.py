"""Unusual OVAs from other tools: compressed archives, descriptor encodings, several types."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest
from ovapipe.validators.ova import validate_ova


def _zstd(data: bytes) -> bytes:
    if shutil.which("zstd"):
        return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True,
                              check=True).stdout
    return b"\x28\xb5\x2f\xfd" + data[:4096]  # the frame magic is all the check looks at


@pytest.mark.parametrize(
    ("name", "compress"),
    [("gzip", lambda data: gzip.compress(data, 1)),
     ("xz", lambda data: lzma.compress(data[: 1 << 20])), ("zstd", _zstd)],
)
def test_compressed_ova_is_named_as_such(tmp_path: Path, efi_ova: Path, name: str,
                                         compress) -> None:
    """Measured: a gzip-compressed OVA was reported as a tar checksum mismatch."""
    packed = tmp_path / f"image.ova.{name}"
    packed.write_bytes(compress(efi_ova.read_bytes()))
    report = validate_ova(packed)
    (finding,) = [f for f in report.findings if f.rule == "archive.unreadable"]
    assert f"the file is {name}-compressed, not a tar archive" in finding.message
    assert "checksum mismatch" not in finding.message
