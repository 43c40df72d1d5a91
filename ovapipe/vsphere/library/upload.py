"""Upload an OVA into a library item through an update session, streamed from the OVA.

Every member of the OVA (descriptor, manifest, disks, NVRAM) becomes one file of the item,
read in one pass of the file (ovapass.OvaPass: never extracted, memory flat) and checked
twice: against the manifest before each member's last block leaves (as the lease upload
does), and by vCenter against the ``checksum_info`` given when the file was added.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from ovapipe.config import Connection
from ovapipe.errors import CheckFailed, VSphereError
from ovapipe.ova.reader import OvaIndex
from ovapipe.progress import Progress
from ovapipe.vsphere.lease import Target, upload
from ovapipe.vsphere.library import content
from ovapipe.vsphere.library.rest import SESSION_HEADER, RestSession

SESSION_DONE_TIMEOUT: Final = 600.0  # seconds vCenter may take to settle a completed session
SESSION_POLL: Final = 0.2
CHECKSUM_ALGORITHMS: Final = ("SHA1", "SHA256", "SHA512", "MD5")


@dataclass(frozen=True)
class Uploaded:
    files: int
    bytes_sent: int
    ova_sha256: str | None  # the whole file's, when the pass hashed it


def upload_target(url: str, connection: Connection, session_id: str) -> Target:
    """The session's upload endpoint, on the vCenter this session is pinned to.

    vCenter serves update session uploads itself and names itself in the endpoint, by a name
    that may not resolve here (behind a proxy or a NAT): the path is sent to the server we
    talk to, so the bytes only ever go where the pin vouches for.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.path:
        raise VSphereError(f"vCenter handed out an upload endpoint that is not https: "
                           f"{parts.scheme}://{parts.hostname or ''}")
    netloc = connection.server if connection.port != 443 else connection.host
    # The session id goes in a header (the session cookie), never into the URL.
    return Target(url=parts._replace(netloc=netloc).geturl(), import_key="",
                  target_id=parts.path.rsplit("/", 1)[-1], disk=False, file_size=None,
                  connection=connection, cookie=f"{SESSION_HEADER}={session_id}")


def upload_ova(api: RestSession, session_id: str, index: OvaIndex, *,
               progress: Progress, check: Callable[[], None],
               whole_file_sha256: bool) -> Uploaded:
    """Add and upload every member of the OVA to the update session, in file order."""
    from ovapipe.vsphere.ovapass import OvaPass

    members = sorted(index.members, key=lambda m: m.offset)
    for member in members:
        if "/" in member.name or "\\" in member.name or member.name in ("", ".", ".."):
            raise CheckFailed(f"{index.path}: member '{member.name}' is not a plain file name; "
                              "a library item holds plain files only")
    uploads = [(member, index.expected_digest(member.name)) for member in members]
    sent = 0
    with OvaPass(index.path, index.size, uploads,
                 whole_file_sha256=whole_file_sha256) as one_pass:
        for number, (member, expected) in enumerate(uploads):
            check()
            checksum = None
            if expected is not None and expected.algorithm.upper() in CHECKSUM_ALGORITHMS:
                checksum = (expected.algorithm.upper(), expected.digest)
            added = content.add_file(api, session_id, member.name, member.size, checksum)
            target = upload_target(added.upload_url, api.connection, session_id)
            upload(target, one_pass.stream(number), create=True, progress=progress, check=check)
            sent += member.size
        digest = one_pass.finish()
    return Uploaded(len(members), sent, digest)


def complete_session(api: RestSession, session_id: str, check: Callable[[], None],
                     timeout: float = SESSION_DONE_TIMEOUT) -> None:
    """Complete the session and wait until vCenter says DONE (it validates the files first)."""
    content.end_update_session(api, session_id, "complete")
    deadline = time.monotonic() + timeout
    while True:
        check()
        found = content.get_update_session(api, session_id)
        if found is None or found.state == "DONE":
            return
        if found.state in ("ERROR", "CANCELED"):
            raise VSphereError(f"update session ended {found.state}: "
                               f"{found.error or 'no reason given'}")
        if time.monotonic() > deadline:
            raise VSphereError(f"update session still {found.state} {timeout:.0f}s after "
                               "completing it")
        time.sleep(SESSION_POLL)
