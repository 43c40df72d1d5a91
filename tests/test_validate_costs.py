"""validate-ova's fixed costs: what it imports, how often it scans, how much disk it reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ovapipe.validators.ova import validate_ova

import ovapipe.ova.reader as reader


def test_the_validator_imports_no_writer_and_no_heavy_library() -> None:
    code = ("import sys, ovapipe.validators.ova; "
            "print(' '.join(sorted(m for m in sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert "ovapipe.validators.ova" in loaded
    for heavy in ("ovapipe.ova.assemble", "pyVmomi", "hcl2", "ruamel", "jsonschema",
                  "dissect", "invoke", "cryptography"):
        assert not {m for m in loaded if m == heavy or m.startswith(heavy + ".")}, heavy


def test_one_tar_scan_and_a_small_part_of_the_disk(
    efi_ova: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[int] = []
    original_scan = reader.scan_tar

    def counting_scan(handle: Any) -> Any:
        scans.append(1)
        return original_scan(handle)

    monkeypatch.setattr(reader, "scan_tar", counting_scan)
    read: list[int] = []
    original_preadv = os.preadv
    original_pread = os.pread

    def counting_preadv(fd: int, buffers: Any, offset: int) -> int:
        count = original_preadv(fd, buffers, offset)
        read.append(count)
        return count

    def counting_pread(fd: int, length: int, offset: int) -> bytes:
        data = original_pread(fd, length, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "preadv", counting_preadv)
    monkeypatch.setattr(os, "pread", counting_pread)
    no_hash = validate_ova(efi_ova, check_digests=False)
    assert no_hash.ok, no_hash.render()
    assert len(scans) == 1
    # Without hashing, the checks (header, descriptor, manifest, EFI boot) read a few percent.
    assert sum(read) < efi_ova.stat().st_size // 10, (sum(read), efi_ova.stat().st_size)


def test_an_unsigned_ova_without_an_sbom_loads_neither_reader(efi_ova: Path) -> None:
    """The signature and SBOM checks load cryptography and ovapipe.sbom only when the OVA has
    such a member."""
    code = ("import sys; from ovapipe.validators.ova import validate_ova; "
            f"assert validate_ova({str(efi_ova)!r}).ok; "
            "print(' '.join(sorted(m for m in sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert "ovapipe.validators.ova" in loaded
    for reader_module in ("cryptography", "ovapipe.ova.signing", "ovapipe.sbom"):
        assert not {m for m in loaded if m == reader_module or m.startswith(reader_module + ".")}
