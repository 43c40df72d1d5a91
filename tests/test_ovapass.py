"""The publish read: one pass over the OVA, member blocks in order, whole-file sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ovapipe.ova.archive import Member
from ovapipe.ova.manifest import ManifestEntry
from ovapipe.vsphere.lease import DigestMismatch
from ovapipe.vsphere.ovapass import READ_BLOCK as BLOCK_SIZE
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


# -- one read fanned out to several uploads (several datacenters) ---------------------------

def _consume(one_pass: OvaPass, consumer: int, count: int, out: dict[int, list[bytes]],
             stop_after: int | None = None) -> None:
    got: list[bytes] = []
    for index in range(count):
        stream = one_pass.stream(index, consumer)
        for number, block in enumerate(stream):
            if stop_after is not None and number >= stop_after:
                out[consumer] = got
                raise RuntimeError("this datacenter's upload failed")
            got.append(bytes(block))
        stream.verify()
    out[consumer] = got


@pytest.mark.parametrize("consumers", [1, 3])
def test_one_read_feeds_every_consumer(tmp_path: Path, consumers: int) -> None:
    import threading

    path, data, members = layout(tmp_path)
    uploads = [(m, entry(m.name, data[m.offset:m.end])) for m in members]
    out: dict[int, list[bytes]] = {}
    reads: list[int] = []
    one_pass = OvaPass(path, len(data), uploads, consumers=consumers)
    original = one_pass._read_span

    def counting(handle, start, end, member):
        reads.append(end - start)
        return original(handle, start, end, member)

    one_pass._read_span = counting  # type: ignore[method-assign]
    with one_pass:
        threads = [threading.Thread(target=_consume, args=(one_pass, c, 2, out))
                   for c in range(consumers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        digest = one_pass.finish()
    expected = b"".join(data[m.offset:m.end] for m in members)
    assert [b"".join(out[c]) for c in range(consumers)] == [expected] * consumers
    assert digest == hashlib.sha256(data).hexdigest()
    assert sum(reads) == len(data)  # the file is read once, whatever the number of consumers


def test_a_failed_consumer_does_not_stall_the_others(tmp_path: Path) -> None:
    import threading

    path, data, members = layout(tmp_path)
    uploads = [(m, entry(m.name, data[m.offset:m.end])) for m in members]
    out: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    def run(consumer: int, stop_after: int | None) -> None:
        try:
            _consume(one_pass, consumer, 2, out, stop_after)
        except RuntimeError as exc:
            errors.append(exc)

    with OvaPass(path, len(data), uploads, consumers=3) as one_pass:
        threads = [threading.Thread(target=run, args=(0, None)),
                   threading.Thread(target=run, args=(1, 1)),
                   threading.Thread(target=run, args=(2, None))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        one_pass.finish()
    expected = b"".join(data[m.offset:m.end] for m in members)
    assert b"".join(out[0]) == b"".join(out[2]) == expected
    assert len(errors) == 1 and len(out[1]) == 1


def test_memory_stays_bounded_with_several_consumers(tmp_path: Path) -> None:
    """A member of many blocks sent to 3 consumers goes through the same BUFFERS buffers."""
    import threading

    from ovapipe.vsphere.ovapass import BUFFERS

    data = os.urandom(1024) + os.urandom(5 * BUFFERS * BLOCK_SIZE // 2)
    path = tmp_path / "big.ova"
    path.write_bytes(data)
    member = Member("disk.vmdk", 1024, len(data) - 1024)
    seen: list[set[int]] = [set(), set(), set()]
    got: list[list[bytes]] = [[], [], []]

    def consume(consumer: int) -> None:
        for block in one_pass.stream(0, consumer):
            seen[consumer].add(id(block.obj))
            got[consumer].append(bytes(block))

    with OvaPass(path, len(data), [(member, entry(member.name, data[1024:]))],
                 consumers=3) as one_pass:
        threads = [threading.Thread(target=consume, args=(c,)) for c in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        one_pass.finish()
    assert all(b"".join(blocks) == data[1024:] for blocks in got)
    assert len(set().union(*seen)) <= BUFFERS


def test_zero_consumers_is_refused(tmp_path: Path) -> None:
    path, data, members = layout(tmp_path)
    with pytest.raises(ValueError, match="consumers=0"):
        OvaPass(path, len(data), [(members[0], None)], consumers=0)


def test_a_consumer_that_never_reads_can_detach(tmp_path: Path) -> None:
    """A datacenter that has nothing to upload (unchanged, or failed before its import) detaches
    up front; the other consumer still gets every block, beyond the buffer pool's size."""
    from ovapipe.vsphere.ovapass import BUFFERS

    data = os.urandom(512) + os.urandom(2 * BUFFERS * BLOCK_SIZE)
    path = tmp_path / "big.ova"
    path.write_bytes(data)
    member = Member("disk.vmdk", 512, len(data) - 512)
    with OvaPass(path, len(data), [(member, entry(member.name, data[512:]))],
                 consumers=2) as one_pass:
        one_pass.detach(1)
        stream = one_pass.stream(0, 0)
        assert b"".join(bytes(b) for b in stream) == data[512:]
        stream.verify()
        assert one_pass.finish() == hashlib.sha256(data).hexdigest()
