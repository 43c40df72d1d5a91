"""Network faults (issue 12.3/12.6): a proxy that stalls, drops or resets; a SIGSTOPped server.

Every case ends with a clear error within the configured bound (VSPHERE_TIMEOUT), and the same
command against the healthy server then ends rc 0. Before the fix a server that accepted and
never answered hung `--insecure` logins forever (pyVmomi's version probe has no timeout), and a
SIGSTOPped simulator hung every call until it was resumed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from faultproxy import FaultProxy

from ovapipe import config
from ovapipe.errors import VSphereError
from ovapipe.paths import REPO_ROOT

pytestmark = [pytest.mark.simulator]

BOUND = 2  # VSPHERE_TIMEOUT of these tests, in seconds
PROCESS_BOUND = 60  # a command must end within this (a subprocess timeout, not an assertion)


@pytest.fixture
def proxy(simulator: Any) -> Iterator[FaultProxy]:
    proxied = FaultProxy(simulator.connection.port)
    try:
        yield proxied
    finally:
        proxied.close()


def gpus_env(simulator: Any, port: int | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSPHERE_")}
    env.update(simulator.env)
    if port is not None:
        env[config.ENV_SERVER] = f"127.0.0.1:{port}"
    env[config.ENV_TIMEOUT] = str(BOUND)
    env.update(extra)
    return env


def invoke_gpus(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "gpus", "--datacenter", "DC0", *args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=PROCESS_BOUND)


def test_a_server_that_accepts_and_never_answers_fails_within_the_timeout(
        simulator: Any, proxy: FaultProxy) -> None:
    proxy.fail_after(0, "stall")
    env = gpus_env(simulator, proxy.port)
    del env[config.ENV_THUMBPRINT]
    stalled = invoke_gpus(env, "--insecure")
    assert stalled.returncode == 1, stalled.stderr
    assert f"no answer within {BOUND} s while logging in (VSPHERE_TIMEOUT)" in stalled.stderr
    assert "Traceback" not in stalled.stderr
    assert invoke_gpus(gpus_env(simulator)).returncode == 0


@pytest.mark.parametrize("mode", ["stall", "drop", "reset"])
def test_a_connection_that_fails_mid_session_gives_a_bounded_one_line_error(
        simulator: Any, proxy: FaultProxy, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ovapipe.vsphere import connect
    from ovapipe.vsphere.gpus import list_gpus

    monkeypatch.setattr(connect, "CLEANUP_TIMEOUT", 1)
    through = dataclasses.replace(simulator.connection, port=proxy.port, timeout=BOUND)
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            with connect.session(through) as service:
                proxy.fail_after(100, mode)
                list_gpus(service, "DC0", None)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=PROCESS_BOUND)
    assert not worker.is_alive(), f"{mode}: the call did not end within {PROCESS_BOUND} s"
    (error,) = outcome
    assert isinstance(error, OSError | VSphereError), repr(error)
    from ovapipe.vsphere.tasks import fault_message

    text = fault_message(error)
    assert "\n" not in text and ("connection lost" in text or "no answer" in text), text
    if mode == "stall":  # the error names the request that was waited for
        assert f"no answer within {BOUND} s to RetrievePropertiesEx" in text or \
            f"no answer within {BOUND} s to RetrieveServiceContent" in text, text


def test_a_stopped_server_fails_within_the_timeout_and_the_rerun_succeeds(simulator: Any) -> None:
    assert simulator.pid is not None
    os.kill(simulator.pid, signal.SIGSTOP)
    try:
        stopped = invoke_gpus(gpus_env(simulator))
    finally:
        os.kill(simulator.pid, signal.SIGCONT)
    assert stopped.returncode == 1, stopped.stderr
    assert "no answer" in stopped.stderr or "timed out" in stopped.stderr, stopped.stderr
    assert "Traceback" not in stopped.stderr
    again = invoke_gpus(gpus_env(simulator))
    assert again.returncode == 0, again.stderr


def test_a_simulator_gone_mid_upload_is_not_called_a_server_side_abort() -> None:
    from ovapipe.vsphere.lease import KeepAlive

    class Gone:
        def HttpNfcLeaseProgress(self, percent: int) -> None:
            raise ConnectionRefusedError(111, "Connection refused")

    class Progress:
        total, done = 100, 50

    keepalive = KeepAlive(Gone(), Progress(), 1.0)  # type: ignore[arg-type]
    with pytest.raises(VSphereError) as raised:
        keepalive.check_now()
    assert "stopped answering" in raised.value.message
    assert "aborted" not in raised.value.message
