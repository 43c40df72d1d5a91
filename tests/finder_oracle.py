"""govmomi's own finder as a test oracle: simulator/finder/ovapipe-find, built on demand.

Built the way ovapipe.simulator builds the simulator: Debian's Go, GOPATH mode, offline,
against Debian's golang-github-vmware-govmomi-dev; rebuilt when its source changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from ovapipe.paths import SIMULATOR_SRC
from ovapipe.simulator import SIM_CACHE

SOURCE: Final = SIMULATOR_SRC / "finder" / "ovapipe-find"
BINARY: Final = SIM_CACHE / "bin" / "ovapipe-find"


def build() -> Path:
    SIM_CACHE.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    for source in sorted(SOURCE.glob("*.go")):
        digest.update(source.read_bytes())
    digest.update(subprocess.run(["go", "version"], capture_output=True, check=True).stdout)
    stamp = BINARY.with_name(BINARY.name + ".stamp")
    with open(SIM_CACHE / "finder.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if BINARY.exists() and stamp.exists() and stamp.read_text() == digest.hexdigest():
            return BINARY
        BINARY.parent.mkdir(parents=True, exist_ok=True)
        partial = BINARY.with_name(BINARY.name + ".partial")
        subprocess.run(
            ["go", "build", "-o", str(partial), "./finder/ovapipe-find"],
            cwd=SIMULATOR_SRC, check=True, capture_output=True,
            env={**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
                 "GOCACHE": str(SIM_CACHE / "gocache"), "GOFLAGS": "", "CGO_ENABLED": "0"},
        )
        partial.replace(BINARY)
        stamp.write_text(digest.hexdigest())
    return BINARY


def ask(env: Mapping[str, str], queries: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    """What the finder resolves for each {kind, datacenter, path} query."""
    result = subprocess.run(
        [str(build())], input=json.dumps(list(queries)), capture_output=True, text=True,
        env={**os.environ, **env}, timeout=120, check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"ovapipe-find failed: {result.stderr}")
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers
