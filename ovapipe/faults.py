"""Named fault-injection points for the crash-safety tests; a no-op in normal runs.

Production code calls ``checkpoint("publish.after-import")`` at the places where a process may
die. A test sets ``OVAPIPE_FAULT`` to ``POINT=ACTION`` (several separated by ``,``) and runs the
real command; when the process reaches POINT, ACTION happens:

- ``kill``: SIGKILL this process (nothing runs after it: a real crash);
- ``int`` / ``term``: send SIGINT / SIGTERM to this process (Ctrl-C, a CI cancel);
- ``fail``: raise ``InjectedFault`` (an ordinary error at that line);
- ``wait:PATH``: block until PATH exists (at most ``WAIT_BOUND`` seconds), so a test can hold
  a process at a point, act on the inventory, then let it go by creating PATH.

Each point fires once per process. Points are plain strings; the ones that exist are listed
with their outcomes in docs/faults.md.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Final

ENV_FAULT: Final = "OVAPIPE_FAULT"
WAIT_BOUND: Final = 120.0

_fired: set[str] = set()
_lock = threading.Lock()


class InjectedFault(RuntimeError):
    """Raised at a point whose action is ``fail``."""


def plan(text: str | None = None) -> dict[str, str]:
    """``OVAPIPE_FAULT`` parsed into {point: action}; malformed entries are ignored."""
    text = os.environ.get(ENV_FAULT, "") if text is None else text
    actions: dict[str, str] = {}
    for entry in text.split(","):
        point, sep, action = entry.strip().partition("=")
        if sep and point and action:
            actions[point] = action
    return actions


def checkpoint(point: str) -> None:
    """Act on ``point`` if the test plan names it (once per process); otherwise return at once."""
    if ENV_FAULT not in os.environ:
        return
    action = plan().get(point)
    if action is None:
        return
    with _lock:
        if point in _fired:
            return
        _fired.add(point)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "int":
        os.kill(os.getpid(), signal.SIGINT)
    elif action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    elif action == "fail":
        raise InjectedFault(f"fault injected at {point}")
    elif action.startswith("wait:"):
        release = Path(action.removeprefix("wait:"))
        deadline = time.monotonic() + WAIT_BOUND
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
