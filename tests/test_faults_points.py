"""The fault-injection points themselves: inert by default, each action does what it says."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from ovapipe import faults


def test_plan_parses_points_and_ignores_malformed_entries():
    assert faults.plan("a=kill, b=wait:/x ,junk,=int,c=") == {"a": "kill", "b": "wait:/x"}


def test_checkpoint_is_inert_without_the_variable(monkeypatch):
    monkeypatch.delenv(faults.ENV_FAULT, raising=False)
    faults.checkpoint("anything")


def test_fail_raises_once_per_process(monkeypatch):
    monkeypatch.setenv(faults.ENV_FAULT, "test.fail-once=fail")
    with pytest.raises(faults.InjectedFault, match=r"test\.fail-once"):
        faults.checkpoint("test.fail-once")
    faults.checkpoint("test.fail-once")


def test_wait_blocks_until_the_release_file_exists(monkeypatch, tmp_path):
    release = tmp_path / "go"
    monkeypatch.setenv(faults.ENV_FAULT, f"test.wait=wait:{release}")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (faults.checkpoint("test.wait"), done.set()))
    worker.start()
    assert not done.wait(0.2)
    release.touch()
    worker.join(10)
    assert done.is_set()


@pytest.mark.parametrize(("action", "signum"), [("kill", signal.SIGKILL), ("term", signal.SIGTERM)])
def test_signal_actions_end_the_process_at_the_point(action, signum):
    code = "from ovapipe import faults; faults.checkpoint('p'); print('after')"
    env = {**os.environ, faults.ENV_FAULT: f"p={action}"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == -signum
    assert "after" not in result.stdout
