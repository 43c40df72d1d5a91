"""One nightly run among others: a build id no other run shares, and a report folder of its own.

The id ends with CI's run id when there is one (GITHUB_RUN_ID and its attempt, or
OVAPIPE_RUN_ID), else with a random suffix, so two runs started in the same second differ.
The report folder is held with an advisory ``flock`` for the whole run; the kernel drops it
when the process dies, so a crashed run never leaves a stale lock. A run that finds the folder
held writes its reports to a subfolder named after its own build id instead, never over the
other run's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Final, TextIO

from ovapipe.errors import ConfigError

RUN_ID_VARIABLES: Final = ("OVAPIPE_RUN_ID", "GITHUB_RUN_ID")
LOCK_FILE: Final = ".ovapipe-run.lock"
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9]{1,24}$")


def run_suffix(env: Mapping[str, str]) -> str:
    """CI's run id (with GitHub's attempt number), else 8 random hex digits."""
    for name in RUN_ID_VARIABLES:
        value = env.get(name, "").strip()
        if not value:
            continue
        if not _RUN_ID_RE.match(value):
            raise ConfigError(f"{name}={value!r}: a run id is 1 to 24 letters or digits")
        attempt = env.get("GITHUB_RUN_ATTEMPT", "").strip() if name == "GITHUB_RUN_ID" else ""
        return f"{value}-{attempt}" if attempt.isdigit() and attempt != "1" else value
    return secrets.token_hex(4)


class FolderLock:
    """An exclusive, non-blocking hold on a folder for this process's lifetime."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: TextIO | None = None

    def try_acquire(self, holder: str) -> bool:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = (self.folder / LOCK_FILE).open("a+", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"report folder {self.folder}: {exc.strerror}; pass --report "
                              "a folder this user can write") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(f"{holder} pid {os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def holder(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / LOCK_FILE).read_text(encoding="utf-8").strip()
        return "another run"

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


def claim_report_folder(folder: Path, build_id: str) -> tuple[Path, FolderLock, str]:
    """The folder this run writes its reports to, held; and a note when it is not ``folder``."""
    lock = FolderLock(folder)
    if lock.try_acquire(build_id):
        return folder, lock, ""
    busy = lock.holder()
    own = FolderLock(folder / build_id)
    if not own.try_acquire(build_id):  # the id is unique: only this process can hold it
        raise ConfigError(f"report folder {own.folder} is held by another process")
    return own.folder, own, (f"report folder {folder} is in use by {busy}: this run's "
                             f"reports go to {own.folder}")


def kube_name(vm_name: str, kubernetes_version: str) -> str:
    """image-builder's ``<os>-kube-v<semver>`` from a profile's ``<os>-kube``: CAPV users
    select templates by it."""
    semver = "v" + kubernetes_version.strip().removeprefix("v")
    return vm_name if vm_name.endswith(f"-{semver}") else f"{vm_name}-{semver}"


def kube_image_name(vm_name: str, kubernetes_version: str, build_id: str) -> str:
    """A nightly image: ``<os>-kube-v<semver>``, then this run's id."""
    return f"{kube_name(vm_name, kubernetes_version)}-{build_id}"
