"""Waiting for vSphere tasks, with faults turned into VSphereError messages."""

from __future__ import annotations

import http.client
import time
from typing import Any, Final

from ovapipe.errors import OvapipeError, VSphereError

# Fields that name what a fault is about, most specific first (FileFault.file, DuplicateName.
# object/name, ManagedObjectNotFound.obj, InvalidDatastorePath.datastorePath, ...).
_SUBJECT_FIELDS: Final = ("file", "datastorePath", "obj", "object", "entity", "name", "host",
                          "datastore", "property")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _subject(fault: Any) -> str:
    for name in _SUBJECT_FIELDS:
        value = getattr(fault, name, None)
        if value is None or (isinstance(value, str) and not value):
            continue
        moid = getattr(value, "_moId", None)
        if moid is not None:
            return f"{getattr(value, '_wsdlName', type(value).__name__)}:{moid}"
        return str(value)
    return ""


def _text(fault: Any) -> str:
    text = getattr(fault, "localizedMessage", None) or getattr(fault, "msg", None)
    for message in getattr(fault, "faultMessage", None) or []:
        text = text or getattr(message, "message", None)
    return str(text or "")


def fault_message(fault: Any) -> str:
    """One line for a vSphere fault or a failed request: type, what it is about, the message.

    ``FileAlreadyExists [LocalDS_0] node/node.vmdk: Cannot complete the operation ...``;
    never pyVmomi's multi-line dump of the fault's fields.
    """
    if fault is None:
        return "unknown error"
    if isinstance(fault, OvapipeError):
        return fault.message
    inner = getattr(fault, "fault", None)
    if inner is not None and not _text(fault):
        return fault_message(inner)  # a LocalizedMethodFault wrapper without text of its own
    from pyVmomi.VmomiSupport import DataObject

    if isinstance(fault, DataObject):
        kind = getattr(fault, "_wsdlName", None) or type(fault).__name__
        subject, text = _subject(fault), _text(fault)
        head = f"{kind} {subject}" if subject and subject not in text else kind
        return _one_line(f"{head}: {text}" if text else head)
    if isinstance(fault, TimeoutError):
        return "no answer from the server (timed out)"
    if isinstance(fault, OSError):
        return _one_line(f"connection lost: {fault.strerror or fault or type(fault).__name__}")
    if isinstance(fault, http.client.HTTPException):
        return _one_line(f"connection lost: {fault or type(fault).__name__}")
    text = _one_line(_text(fault) or str(fault))
    return text or type(fault).__name__


def wait_for_task(task: Any, description: str, *, timeout: float = 3600, poll: float = 0.1) -> Any:
    """Wait for ``task``; return its result or raise VSphereError naming ``description``.

    Each poll is a request bounded by the session's VSPHERE_TIMEOUT; the whole wait by
    ``timeout``. A server that stops answering is reported as such, with what was waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = task.info
        except (OSError, http.client.HTTPException) as exc:
            raise VSphereError(f"{description}: waiting for task {task._moId}: "
                               f"{fault_message(exc)}") from None
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise VSphereError(f"{description}: {fault_message(info.error)}")
        if time.monotonic() > deadline:
            raise VSphereError(f"{description}: task {task._moId} still {info.state} "
                               f"after {timeout:.0f} s")
        time.sleep(poll)
        poll = min(poll * 1.5, 2.0)


def vsphere_fault(exc: BaseException) -> VSphereError | None:
    """A vSphere fault that escaped unwrapped, as a one-line VSphereError; None otherwise."""
    import sys

    if "pyVmomi" not in sys.modules:  # no vSphere call was made: it cannot be a fault
        return None
    from pyVmomi import vmodl

    if isinstance(exc, vmodl.MethodFault):
        return VSphereError(f"vCenter: {fault_message(exc)}")
    return None
