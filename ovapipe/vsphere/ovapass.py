"""One sequential read of an OVA for publishing: member blocks for the uploads, all hashed.

The file is read front to back exactly once. Blocks of the members being uploaded go to the
uploader (hashed first with the manifest's algorithm, so the upload can stop before its last
block on a mismatch); every block, including tar headers and the descriptor, also feeds the
whole-file sha256 recorded on the template. Hashing runs on two threads beside the sender:
hashlib, file reads and TLS writes all release the GIL.

With ``consumers=N`` (publishing to N datacenters) the same read feeds N uploads: each block
is read and hashed once and handed to every consumer; it returns to the pool of BUFFERS
blocks when the last one has sent it, so memory stays bounded and the slowest upload sets
the pace. A consumer whose upload stops early is detached (its blocks are released, later
ones skip it), so one failed datacenter never stalls the others. A consumer that will not
read at all (its datacenter has nothing to upload) must call ``detach`` before the others
fill the pool, or they wait for it.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ovapipe.errors import VSphereError
from ovapipe.ova.archive import Member
from ovapipe.ova.manifest import ManifestEntry
from ovapipe.vsphere.lease import DigestMismatch

# 1 MiB blocks: one preadv, one hash update and one TLS sendall each. 4 MiB measured slower
# (a block no longer stays in cache between the read, the hash and the send). BUFFERS bounds
# memory to 8 MiB in flight whatever the OVA size and the number of consumers.
READ_BLOCK: Final = 1 << 20
BUFFERS: Final = 8


@dataclass
class _Block:
    buffer: bytearray
    count: int
    users: int

    @property
    def view(self) -> memoryview:
        return memoryview(self.buffer)[: self.count]


class MemberStream:
    """The blocks of one uploaded member, in order; a lease.BlockStream."""

    def __init__(self, owner: OvaPass, index: int, member: Member,
                 expected: ManifestEntry | None, consumer: int = 0,
                 shared: MemberStream | None = None) -> None:
        self._owner = owner
        self._index = index
        self._consumer = consumer
        self.name = member.name
        self.size = member.size
        self.expected = expected
        # One hash per member, updated by the reader before any consumer sees the block.
        self.hash: hashlib._Hash | None = (
            shared.hash if shared else expected.new_hash() if expected else None)

    def __iter__(self) -> Iterator[memoryview]:
        return self._owner._blocks_of(self._index, self._consumer)

    def verify(self) -> None:
        if self.expected is None or self.hash is None:
            return
        seen = self.hash.hexdigest()
        if not self.expected.matches(seen):
            raise DigestMismatch(
                f"{self.name}: {self.expected.algorithm} of the bytes read is {seen}, the "
                f"manifest says {self.expected.digest}; the OVA is corrupt (upload stopped "
                "before the last block)"
            )


class OvaPass:
    """Read ``path`` once; ``stream(i)`` yields member ``i``'s blocks; ``finish`` the sha256.

    Members must be consumed in file order (the order given, sorted by offset).
    """

    def __init__(
        self,
        path: Path,
        file_size: int,
        uploads: Sequence[tuple[Member, ManifestEntry | None]],
        *,
        whole_file_sha256: bool = True,
        consumers: int = 1,
    ) -> None:
        if consumers < 1:
            raise ValueError(f"consumers={consumers}: at least one upload reads the pass")
        self.path = path
        self.file_size = file_size
        ordered = sorted(uploads, key=lambda item: item[0].offset)
        self.streams = [MemberStream(self, i, m, e) for i, (m, e) in enumerate(ordered)]
        self._fanned = [self.streams] + [
            [MemberStream(self, i, m, e, c, self.streams[i]) for i, (m, e) in enumerate(ordered)]
            for c in range(1, consumers)
        ]
        self._members = [m for m, _ in ordered]
        self._whole = hashlib.sha256() if whole_file_sha256 else None
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(BUFFERS):
            self._free.put(bytearray(READ_BLOCK))
        self._lock = threading.Lock()
        self._to_send: list[queue.Queue[tuple[int, _Block] | BaseException]] = [
            queue.Queue() for _ in range(consumers)]
        self._detached: set[int] = set()
        self._to_hash: queue.Queue[_Block | None] = queue.Queue()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._reader = threading.Thread(target=self._read, name="ova-reader", daemon=True)
        self._hasher = threading.Thread(target=self._hash_whole, name="ova-sha256", daemon=True)
        self._started = False

    def __enter__(self) -> OvaPass:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._reader.start()
            if self._whole is not None:
                self._hasher.start()

    def stream(self, index: int, consumer: int = 0) -> MemberStream:
        """Member ``index`` (in file order) as consumer ``consumer`` receives it."""
        return self._fanned[consumer][index]

    def detach(self, consumer: int) -> None:
        """Consumer ``consumer`` takes no more blocks: release what waits for it."""
        with self._lock:
            if consumer in self._detached:
                return
            self._detached.add(consumer)
        pending = self._to_send[consumer]
        while True:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                return
            if not isinstance(item, BaseException):
                self._release(item[1])

    # -- reader thread --------------------------------------------------------------------
    def _take_buffer(self) -> bytearray | None:
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def _release(self, block: _Block) -> None:
        with self._lock:
            block.users -= 1
            done = block.users == 0
        if done:
            self._free.put(block.buffer)

    def _read_span(self, handle: io.FileIO, start: int, end: int, member: int | None) -> bool:
        """Read [start, end); send member blocks to the uploader, all blocks to the hasher."""
        position = start
        stream = self.streams[member] if member is not None else None
        while position < end:
            buffer = self._take_buffer()
            if buffer is None:
                return False
            view = memoryview(buffer)[: min(len(buffer), end - position)]
            count = handle.readinto(view) or 0
            if count == 0:
                raise VSphereError(
                    f"{self.path}: the file ends at {position} bytes, before "
                    f"{'member ' + stream.name if stream else 'the archive'} does"
                )
            if stream is not None and stream.hash is not None:
                stream.hash.update(view[:count])
            position += count
            with self._lock:
                receivers = [c for c in range(len(self._to_send)) if c not in self._detached] \
                    if stream is not None else []
                users = len(receivers) + (1 if self._whole is not None else 0)
                block = _Block(buffer, count, users)
                # Under the lock: a consumer detaching now either gets this block (and its
                # drain releases it) or is not among the receivers.
                if member is not None:
                    for consumer in receivers:
                        self._to_send[consumer].put((member, block))
            if self._whole is not None:
                self._to_hash.put(block)
            if users == 0:
                self._free.put(buffer)
        return True

    def _read(self) -> None:
        try:
            with open(self.path, "rb", buffering=0) as handle:
                position = 0
                for index, member in enumerate(self._members):
                    if member.offset > position:
                        if self._whole is None:
                            handle.seek(member.offset)
                        elif not self._read_span(handle, position, member.offset, None):
                            return
                    if not self._read_span(handle, member.offset, member.end, index):
                        return
                    position = member.end
                if self._whole is not None and not self._read_span(
                    handle, position, self.file_size, None
                ):
                    return
        except BaseException as exc:
            self._error = exc
            for pending in self._to_send:
                pending.put(exc)
        finally:
            self._to_hash.put(None)

    # -- hasher thread --------------------------------------------------------------------
    def _hash_whole(self) -> None:
        assert self._whole is not None
        while True:
            block = self._to_hash.get()
            if block is None:
                return
            self._whole.update(block.view)
            self._release(block)

    # -- consumer side ----------------------------------------------------------------------
    def _blocks_of(self, index: int, consumer: int = 0) -> Iterator[memoryview]:
        self.start()
        left = self.streams[index].size
        pending = self._to_send[consumer]
        finished = False
        try:
            while left > 0:
                item = pending.get()
                if isinstance(item, BaseException):
                    raise item
                member, block = item
                if member != index:
                    self._release(block)
                    raise RuntimeError(f"OvaPass: members must be sent in file order ({index})")
                left -= block.count
                try:
                    yield block.view
                finally:
                    self._release(block)
            finished = True
        finally:
            if not finished:
                self.detach(consumer)

    def finish(self) -> str | None:
        """After the uploads: read to the end of the file; the whole file's sha256 (hex)."""
        self.start()
        self._reader.join()
        if self._error is not None:
            raise self._error
        if self._whole is None:
            return None
        self._hasher.join()
        return self._whole.hexdigest()

    def close(self) -> None:
        self._stop.set()
        if self._reader.is_alive():
            self._reader.join(timeout=5)
        self._to_hash.put(None)
        if self._hasher.is_alive():
            self._hasher.join(timeout=5)
