"""Waiting for vSphere tasks, with faults turned into VSphereError messages."""

from __future__ import annotations

import time
from typing import Any

from ovapipe.errors import VSphereError


def fault_message(fault: Any) -> str:
    """The most specific human text a vSphere fault (or MethodFault wrapper) carries."""
    if fault is None:
        return "unknown error"
    text = getattr(fault, "localizedMessage", None) or getattr(fault, "msg", None)
    for message in getattr(fault, "faultMessage", None) or []:
        text = text or getattr(message, "message", None)
    inner = getattr(fault, "fault", None)
    if not text and inner is not None:
        text = getattr(inner, "msg", None) or type(inner).__name__
    if text:
        return str(text)
    from pyVmomi.VmomiSupport import DataObject

    # A vSphere fault without text would print as a multi-line dump of its fields.
    if isinstance(fault, DataObject):
        return type(fault).__name__
    return str(fault) or type(fault).__name__


def wait_for_task(task: Any, description: str, *, timeout: float = 3600, poll: float = 0.1) -> Any:
    """Wait for ``task``; return its result or raise VSphereError naming ``description``."""
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise VSphereError(f"{description}: {fault_message(info.error)}")
        if time.monotonic() > deadline:
            raise VSphereError(f"{description}: task {task._moId} still {info.state} "
                               f"after {timeout:.0f} s")
        time.sleep(poll)
        poll = min(poll * 1.5, 2.0)
