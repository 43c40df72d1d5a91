"""A grep-level check (issue 12.6): no blocking call in ovapipe without a timeout.

Parsed with ``ast`` rather than grepped, so ``", ".join(x)`` is not a thread join and a
``timeout=`` on the next line still counts. Each rule names the call that can block forever.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from ovapipe.paths import REPO_ROOT

PACKAGES = ("ovapipe", "validators")
# Calls that block until the other side acts, and need ``timeout=``.
NEEDS_TIMEOUT = {
    "run": "subprocess.run", "check_output": "subprocess.check_output",
    "check_call": "subprocess.check_call", "call": "subprocess.call",
    "communicate": "Popen.communicate", "create_connection": "socket.create_connection",
    "get_server_certificate": "ssl.get_server_certificate", "urlopen": "urllib urlopen",
    "HTTPSConnection": "http.client.HTTPSConnection",
    "HTTPConnection": "http.client.HTTPConnection",
}
# Calls that block forever when given no argument at all (thread join, process/event wait).
NEEDS_ARGUMENT = {"join", "wait"}
# Never used: pyVmomi's SmartConnect asks the server its API versions without any timeout.
FORBIDDEN = {"SmartConnect": "pyVim.connect.SmartConnect (unbounded version probe)"}


def _name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _receiver(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return ""


def unbounded_calls() -> Iterator[str]:
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = _name(node)
                where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
                keywords = {k.arg for k in node.keywords}
                if name in FORBIDDEN:
                    yield f"{where}: {FORBIDDEN[name]}"
                elif name in NEEDS_TIMEOUT and "timeout" not in keywords and (
                        name != "run" or _receiver(node) == "subprocess"):
                    yield f"{where}: {NEEDS_TIMEOUT[name]} without timeout="
                elif name in NEEDS_ARGUMENT and not node.args and not node.keywords and \
                        isinstance(node.func, ast.Attribute):
                    yield f"{where}: .{name}() without a timeout"


# Local work that waits on no network peer: (file, finding) -> why it may stay unbounded.
# Owners of these files may still add bounds; a new finding anywhere else fails the test.
LOCAL_ONLY = {
    ("ovapipe/simulator.py", "subprocess.run without timeout="):
        "go build / go env of the simulator: local compilation",
    ("ovapipe/simulator.py", ".wait() without a timeout"): "wait after SIGKILL",
    ("ovapipe/testdisk.py", "subprocess.run without timeout="): "qemu-img/mtools on local files",
    ("ovapipe/vsphere/ovapass.py", ".join() without a timeout"):
        "the OVA reader/hasher threads read a local file",
}


def test_no_blocking_call_without_a_timeout() -> None:
    found = [f for f in unbounded_calls()
             if (f.split(":", 1)[0], f.split(": ", 1)[1]) not in LOCAL_ONLY]
    assert found == []


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    source = ("import subprocess, threading\nsubprocess.run(['x'])\nthreading.Thread().join()\n"
              "', '.join(['a'])\nsubprocess.run(['x'], timeout=5)\n")
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    flagged = [c.lineno for c in calls
               if (_name(c) == "run" and not c.keywords)
               or (_name(c) in NEEDS_ARGUMENT and not c.args and not c.keywords)]
    assert flagged == [2, 3]
