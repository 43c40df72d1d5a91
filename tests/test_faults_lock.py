"""The nightly lock without holes (issue 12 point 5, issue 19 point 1), on the simulator.

Each test is one measured hole: a lock folder without a holder, an unreadable holder, a
heartbeat that overwrote another run's holder, a pid in another PID namespace, a reused pid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from ovapipe.errors import CheckFailed
from ovapipe.paths import REPO_ROOT
from ovapipe.vsphere import lock as nlock
from ovapipe.vsphere.lock import NightlyLock, lock_folder

pytestmark = [pytest.mark.simulator]

PROFILE = "ubuntu-2004-efi"
OTHER = "ubuntu-2204-efi"


def lock_folders(sim: Any) -> dict[str, str]:
    """Every lock folder with its recorded holder value ('' when none)."""
    from ovapipe.vsphere.connect import session

    with session(sim.connection) as service:
        found = {}
        for scope in (PROFILE, OTHER):
            entry = nlock._find(service, lock_folder(scope))
            if entry is not None:
                found[lock_folder(scope)] = entry.raw
        return found


def create_bare_lock(sim: Any, value: str | None = None) -> None:
    """A lock folder as a run killed right after CreateFolder (or with a damaged value) left."""
    from ovapipe.vsphere.connect import session

    with session(sim.connection) as service:
        folder = service.RetrieveContent().rootFolder.CreateFolder(lock_folder(PROFILE))
        if value is not None:
            service.RetrieveContent().customFieldsManager.SetField(
                entity=folder, key=nlock._field_key(service), value=value)


def plant(sim: Any, **changes: Any) -> NightlyLock:
    """Take the lock as another (fake) holder; ``changes`` alter its recorded identity."""
    other = NightlyLock(sim.connection, "other-run", PROFILE)
    other.holder = dataclasses.replace(other.holder, **changes)
    other.acquire()
    return other


def test_two_profiles_lock_independently_and_one_profile_excludes_itself(simulator: Any) -> None:
    first = NightlyLock(simulator.connection, "run-a", PROFILE)
    first.acquire()
    other_profile = NightlyLock(simulator.connection, "run-b", OTHER)
    other_profile.acquire()  # a matrix job of another profile runs at once
    same_profile = NightlyLock(simulator.connection, "run-c", PROFILE)
    with pytest.raises(CheckFailed, match=f"holds the vCenter lock of profile {PROFILE}"):
        same_profile.acquire()
    first.release()
    other_profile.release()
    assert lock_folders(simulator) == {}


def test_a_lock_without_a_holder_is_reclaimed_after_the_bound(simulator: Any) -> None:
    create_bare_lock(simulator)
    fresh = NightlyLock(simulator.connection, "fresh", PROFILE, holderless_bound=0.5)
    fresh.acquire()
    assert json.loads(lock_folders(simulator)[lock_folder(PROFILE)])["token"] == \
        fresh.holder.token
    fresh.release()
    assert lock_folders(simulator) == {}


def test_a_lock_with_an_unreadable_holder_is_reclaimed_after_the_bound(simulator: Any) -> None:
    create_bare_lock(simulator, value="{not json")
    fresh = NightlyLock(simulator.connection, "fresh", PROFILE, holderless_bound=0.5)
    fresh.acquire()
    fresh.release()
    assert lock_folders(simulator) == {}


def test_a_dead_process_on_this_machine_loses_its_lock_at_once(simulator: Any) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)
    plant(simulator, pid=int(dead.stdout))  # never released: the process died
    fresh = NightlyLock(simulator.connection, "fresh", PROFILE)
    fresh.acquire()
    fresh.release()
    assert lock_folders(simulator) == {}


def test_a_reused_pid_does_not_keep_a_dead_runs_lock(simulator: Any) -> None:
    # The recorded pid is alive (it is this test's), but started at another time.
    plant(simulator, pid=os.getpid(), process_start="1")
    fresh = NightlyLock(simulator.connection, "fresh", PROFILE)
    fresh.acquire()
    fresh.release()


def test_a_live_run_in_another_pid_namespace_keeps_its_lock(simulator: Any) -> None:
    # Same host name, a pid that does not exist here: another container's live process.
    plant(simulator, pid=2**22 + 12345, pid_namespace="pid:[1]")
    contender = NightlyLock(simulator.connection, "fresh", PROFILE)
    with pytest.raises(CheckFailed, match="holds the vCenter lock"):
        contender.acquire()


def test_an_old_heartbeat_makes_any_holder_stale(simulator: Any) -> None:
    plant(simulator, pid=os.getpid(), host="elsewhere", heartbeat="2026-01-01T00:00:00+00:00")
    fresh = NightlyLock(simulator.connection, "fresh", PROFILE)
    fresh.acquire()
    fresh.release()


def test_a_heartbeat_never_overwrites_a_lock_that_is_no_longer_ours(simulator: Any) -> None:
    ours = NightlyLock(simulator.connection, "ours", PROFILE)
    ours.acquire()
    nlock.break_lock(simulator.connection, PROFILE)
    theirs = NightlyLock(simulator.connection, "theirs", PROFILE)
    theirs.acquire()

    ours.heartbeat()
    recorded = json.loads(lock_folders(simulator)[lock_folder(PROFILE)])
    assert recorded["token"] == theirs.holder.token
    with pytest.raises(CheckFailed, match="taken over"):
        ours.check()
    ours.release()  # must not remove their lock
    assert lock_folder(PROFILE) in lock_folders(simulator)
    theirs.release()


def test_heartbeats_run_on_a_timer_through_a_long_stage(simulator: Any) -> None:
    ours = NightlyLock(simulator.connection, "ours", PROFILE)
    ours.acquire()
    ours.holder = dataclasses.replace(ours.holder, heartbeat="2026-01-01T00:00:00+00:00")
    ours.start_heartbeats(interval=0.05)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            beat = json.loads(lock_folders(simulator)[lock_folder(PROFILE)])["heartbeat"]
            if not beat.startswith("2026-01-01"):
                break
        assert not beat.startswith("2026-01-01"), "no heartbeat was written by the timer"
    finally:
        ours.release()
    assert lock_folders(simulator) == {}


def test_unlock_shows_the_holder_and_breaks_only_when_asked(simulator: Any) -> None:
    holder = plant(simulator, pid=2**22 + 12345, pid_namespace="pid:[1]")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSPHERE_")}
    env.update(simulator.env)
    argv = [sys.executable, "-m", "invoke", "nightly", "--profile", PROFILE, "--unlock"]
    shown = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"held by {holder.holder.describe()}" in shown.stdout and "--yes" in shown.stdout
    assert lock_folder(PROFILE) in lock_folders(simulator)

    broken = subprocess.run([*argv, "--yes"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert broken.returncode == 0, broken.stdout + broken.stderr
    assert "broken" in broken.stdout
    assert lock_folders(simulator) == {}
