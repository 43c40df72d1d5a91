"""Cleanups are bounded and a second Ctrl-C exits at once (issue 12.3).

Before the fix cleanups ran with Ctrl-C deferred and their calls blocked with a stopped
vCenter: Ctrl-C at +120 s and +150 s was ignored. Here a cleanup that never returns stands in
for a call to a server that stopped answering.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ovapipe.paths import REPO_ROOT

PROCESS_BOUND = 60

SCRIPT = """
import sys, threading
from pathlib import Path
from ovapipe import steps
from ovapipe.steps import Run, Step, run_steps

steps.CLEANUP_BOUND = float(sys.argv[2])
started = Path(sys.argv[1])

def hangs():
    started.touch()
    threading.Event().wait()  # a cleanup call to a server that never answers

def create(state, run):
    run.on_failure("delete the imported VM vm-42", lambda: None)
    run.on_failure("abort the lease", hangs)
    raise KeyboardInterrupt

try:
    run_steps([Step("import", create)], None)
except Exception as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(getattr(exc, "exit_code", 1))
"""


def start(tmp_path: Path, bound: float) -> tuple[subprocess.Popen[str], Path]:
    marker = tmp_path / "cleanup-started"
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker), str(bound)],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    return process, marker


def test_a_cleanup_that_never_returns_is_abandoned_after_its_bound(tmp_path: Path) -> None:
    process, _ = start(tmp_path, bound=1)
    _, stderr = process.communicate(timeout=PROCESS_BOUND)
    assert process.returncode == 130, stderr
    assert "cleanup 'abort the lease' failed: still running after 1 s" in stderr
    assert "cleanup: delete the imported VM vm-42" in stderr  # the others still ran


def test_a_second_ctrl_c_during_cleanup_exits_at_once_and_says_what_is_left(
        tmp_path: Path) -> None:
    process, started = start(tmp_path, bound=3600)
    try:
        deadline = time.monotonic() + PROCESS_BOUND
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting for the event (the file), not standing in for it
        assert started.exists(), "the cleanup never started"
        os.kill(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=PROCESS_BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert ("interrupted again (SIGINT) during cleanup: exiting now; may be left: abort the "
            "lease; delete the imported VM vm-42") in stderr
