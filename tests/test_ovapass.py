"""The publish read: one pass over the OVA, member blocks in order, whole-file sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ovapipe.ova.archive import Member
from ovapipe.ova.manifest import ManifestEntry
from ovapipe.vsphere.lease import BLOCK_SIZE, DigestMismatch
from ovapipe.vsphere.ovapass import OvaPass


def layout(tmp_path: Path) -> tuple[Path, bytes, list[Member]]:
    head, disk1, gap, disk2, tail = (os.urandom(n) for n in (1536, 3 * BLOCK_SIZE + 5, 512,
                                                             BLOCK_SIZE // 3, 1024))
    data = head + disk1 + gap + disk2 + tail
    path = tmp_path / "x.ova"
    path.write_bytes(data)
    members = [Member("disk1.vmdk", len(head), len(disk1)),
               Member("disk2.vmdk", len(head) + len(disk1) + len(gap), len(disk2))]
    return path, data, members


def entry(name: str, data: bytes) -> ManifestEntry:
    return ManifestEntry(name, "SHA256", hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("whole", [True, False])
def test_members_come_in_order_and_the_whole_file_is_hashed(tmp_path: Path, whole: bool) -> None:
    path, data, members = layout(tmp_path)
    contents = [data[m.offset:m.end] for m in members]
    uploads = [(m, entry(m.name, c)) for m, c in zip(members, contents, strict=True)]
    with OvaPass(path, len(data), list(reversed(uploads)), whole_file_sha256=whole) as one_pass:
        for index, expected in enumerate(contents):
            stream = one_pass.stream(index)
            got = b"".join(bytes(block) for block in stream)
            stream.verify()
            assert got == expected and stream.size == len(expected)
        digest = one_pass.finish()
    assert digest == (hashlib.sha256(data).hexdigest() if whole else None)


def test_a_corrupt_member_fails_verify(tmp_path: Path) -> None:
    path, data, members = layout(tmp_path)
    bad = ManifestEntry(members[0].name, "SHA256", "0" * 64)
    with OvaPass(path, len(data), [(members[0], bad)]) as one_pass:
        stream = one_pass.stream(0)
        for _block in stream:
            pass
        with pytest.raises(DigestMismatch, match=r"disk1.vmdk: SHA256 .* manifest says 0000"):
            stream.verify()


def test_a_truncated_file_is_an_error(tmp_path: Path) -> None:
    path, data, members = layout(tmp_path)
    path.write_bytes(data[: members[0].offset + 100])
    with OvaPass(path, len(data), [(members[0], None)]) as one_pass, \
            pytest.raises(Exception, match="the file ends at"):
        for _block in one_pass.stream(0):
            pass


def test_closing_early_stops_the_threads(tmp_path: Path) -> None:
    path, data, members = layout(tmp_path)
    one_pass = OvaPass(path, len(data), [(members[0], None)])
    one_pass.start()
    one_pass.close()
    assert not one_pass._reader.is_alive() and not one_pass._hasher.is_alive()
