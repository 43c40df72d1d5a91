"""A build-ova run's marker, and the recovery of what a killed run left behind.

While a build runs, ``<out>/.<name>.<token>.run.json`` records who runs it (pid, boot id, PID
namespace, process start, a random token) and what it made: Packer's process group, the build
VM's name and datacenter, the staging folder, Packer's temporary folder and the seed ISO on the
datastore. The marker is removed as the last step of a build that ended (success, failure or
Ctrl-C, cleanups done). A SIGKILLed run leaves it; the next build-ova or nightly in the same
output folder finds it, sees that its process is gone, and removes exactly what it names:
Packer's group (SIGKILL, only if its start time still matches), the build VM, the seed ISO,
the staging and temporary folders.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final, TextIO

from ovapipe.files import write_json
from ovapipe.vsphere.lock import boot_id, pid_namespace, process_start

MARKER_SUFFIX: Final = ".run.json"
SEED_UPLOAD: Final = re.compile(r"Uploading (\S+\.iso) to (packer_cache/\S+\.iso)")


def marker_path(out: Path, marker: RunMarker) -> Path:
    """One per run (a new run of the same name must not overwrite a killed run's marker)."""
    return out / f".{marker.name}.{marker.token}{MARKER_SUFFIX}"


@dataclass(frozen=True)
class RunMarker:
    name: str
    datacenter: str
    datastore: str
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    boot_id: str = field(default_factory=boot_id)
    pid_namespace: str = field(default_factory=pid_namespace)
    process_start: str = field(default_factory=lambda: process_start(os.getpid()))
    staging: str = ""
    temp_dir: str = ""
    packer_pid: int = 0
    packer_start: str = ""
    seed_iso: str = ""  # datastore path relative to the datastore: packer_cache/packerN.iso
    cache_folder_new: bool = False  # packer_cache did not exist before: remove it when empty

    @classmethod
    def read(cls, path: Path) -> RunMarker | None:
        try:
            data = json.loads(path.read_text())
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        """The run's process still runs (checked only where its pid means the same process)."""
        if not (self.host == socket.gethostname() and self.boot_id == boot_id()
                and self.pid_namespace == pid_namespace()):
            return True  # another machine or container: never judged from here
        started = process_start(self.pid)
        return bool(started) and started == self.process_start


class MarkedRun:
    """The marker of the running build, rewritten whenever it learns of a new leftover."""

    def __init__(self, out: Path, marker: RunMarker) -> None:
        self.path = marker_path(out, marker)
        self.marker = marker

    def update(self, **changes: Any) -> None:
        self.marker = replace(self.marker, **changes)
        write_json(self.path, asdict(self.marker))

    def packer_started(self, pid: int) -> None:
        self.update(packer_pid=pid, packer_start=process_start(pid))

    def packer_line(self, line: str) -> None:
        match = SEED_UPLOAD.search(line)
        if match and not self.marker.seed_iso:
            self.update(seed_iso=match.group(2))

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _group_members(pgid: int, started_at: str) -> list[int]:
    """Processes of group ``pgid`` started no earlier than its leader (``started_at``).

    Packer's plugins live in its group and can outlive a Packer that died (SIGPIPE once
    ovapipe was gone); a later, unrelated group with the same id started before nothing of it.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # Group (field 5) or session (field 6): Packer runs as a session leader, and a
        # plugin that made a group of its own is still in that session.
        if len(rest) > 19 and rest[0] != "Z" and str(pgid) in (rest[2], rest[3]) \
                and int(rest[19]) >= int(started_at):
            members.append(int(entry.name))
    return members


def _kill_packer(marker: RunMarker) -> None:
    if not (marker.packer_pid and marker.packer_start):
        return
    deadline = time.monotonic() + 10
    # Its folders are removed next: wait (bounded) until no process of it can write there.
    while (members := _group_members(marker.packer_pid, marker.packer_start)) and \
            time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def delete_seed_iso(service: Any, datacenter_name: str, datastore: str, iso: str,
                    *, remove_folder: bool) -> None:
    """Delete ``[datastore] iso`` (and its packer_cache folder if new and now empty)."""
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import datacenter

    dc = datacenter(service, datacenter_name)
    manager = service.RetrieveContent().fileManager
    with contextlib.suppress(vim.fault.FileNotFound):
        _wait_state(service, manager.DeleteDatastoreFile_Task(name=f"[{datastore}] {iso}",
                                                              datacenter=dc.obj),
                    f"delete the seed ISO [{datastore}] {iso}")
    if remove_folder:
        folder = iso.rsplit("/", 1)[0]
        if not _datastore_folder_files(service, dc.obj, datastore, folder):
            with contextlib.suppress(vim.fault.FileNotFound):
                _wait_state(service, manager.DeleteDatastoreFile_Task(
                    name=f"[{datastore}] {folder}", datacenter=dc.obj),
                    f"delete the empty folder [{datastore}] {folder}")


def _wait_state(service: Any, task: Any, description: str, timeout: float = 60) -> None:
    """Wait for a FileManager task by its state alone.

    Its ``info.entity`` is the FileManager, which the simulator sends although the field is
    typed ManagedEntity; reading the whole ``info`` fails to decode there.
    """
    import time

    from ovapipe.errors import VSphereError
    from ovapipe.vsphere.inventory import properties
    from ovapipe.vsphere.tasks import fault_message

    deadline = time.monotonic() + timeout
    while True:
        props = properties(service, task, ["info.state", "info.error"])
        state = props.get("info.state")
        if state == "success":
            return
        if state == "error":
            error = props.get("info.error")
            if error is not None and type(error).__name__.endswith("FileNotFound"):
                raise error
            raise VSphereError(f"{description}: {fault_message(error)}")
        if time.monotonic() > deadline:
            raise VSphereError(f"{description}: still {state} after {timeout:.0f} s")
        time.sleep(0.1)


def _datastore_folder_files(service: Any, dc: Any, datastore: str, folder: str) -> list[str]:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve
    from ovapipe.vsphere.tasks import wait_for_task

    stores = [d.obj for d in retrieve(service, vim.Datastore, ["name"], dc) if d.name == datastore]
    if not stores:
        return []
    try:
        result = wait_for_task(stores[0].browser.SearchDatastore_Task(
            datastorePath=f"[{datastore}] {folder}",
            searchSpec=vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"])),
            f"list [{datastore}] {folder}", timeout=60)
    except Exception:
        return ["?"]  # cannot tell: keep the folder
    return [f.path for f in (result.file or [])]


def datastore_folder_exists(service: Any, datacenter_name: str, datastore: str,
                            folder: str) -> bool:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import datacenter, retrieve
    from ovapipe.vsphere.tasks import wait_for_task

    dc = datacenter(service, datacenter_name).obj
    stores = [d.obj for d in retrieve(service, vim.Datastore, ["name"], dc) if d.name == datastore]
    if not stores:
        return False
    try:
        wait_for_task(stores[0].browser.SearchDatastore_Task(
            datastorePath=f"[{datastore}] {folder}"), f"look for [{datastore}] {folder}",
            timeout=60)
    except Exception:
        return False
    return True


def remove_tree(folder: Path) -> None:
    """rmtree, again while a process that is ending still drops files in (bounded): Packer's
    plugins may still write their logs there for a moment after Packer itself exits."""
    deadline = time.monotonic() + 10
    shutil.rmtree(folder, ignore_errors=True)
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
        shutil.rmtree(folder, ignore_errors=True)


def dead_runs(out: Path) -> Iterator[tuple[Path, RunMarker]]:
    """Markers in ``out`` whose run is gone."""
    if not out.is_dir():
        return
    for path in sorted(out.glob(f".*{MARKER_SUFFIX}")):
        marker = RunMarker.read(path)
        if marker is not None and not marker.alive():
            yield path, marker


def recover(out: Path, service: Any, log: TextIO,
            destroy_vm: Callable[[Any, str, str], bool]) -> list[str]:
    """Remove what killed builds in ``out`` left; returns what was removed, for the log."""
    removed: list[str] = []
    for path, marker in dead_runs(out):
        _kill_packer(marker)
        if destroy_vm(service, marker.name, marker.datacenter):
            removed.append(f"build VM {marker.name}")
        if marker.seed_iso:
            delete_seed_iso(service, marker.datacenter, marker.datastore, marker.seed_iso,
                            remove_folder=marker.cache_folder_new)
            removed.append(f"seed ISO [{marker.datastore}] {marker.seed_iso}")
        for folder in (marker.staging, marker.temp_dir):
            if folder and Path(folder).exists():
                remove_tree(Path(folder))
                removed.append(f"folder {folder}")
        path.unlink(missing_ok=True)
        log.write(f"recovered a killed build (pid {marker.pid}, {marker.name}): removed "
                  f"{', '.join(removed) or 'nothing left'}\n")
    return removed
