"""The command-line surface: every task listed, every flag documented, errors as exit codes."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INVOKE = [sys.executable, "-m", "invoke"]
TASKS = ["vars", "build-ova", "validate-ova", "sign-ova", "sbom", "verify-iso", "publish",
         "validate-template", "gpus", "pci-id", "cluster-template", "nightly", "sim", "test-disk",
         "demo"]


def invoke(*args, env=None):
    return subprocess.run([*INVOKE, *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)


def test_list_shows_every_task_with_a_help_line():
    result = invoke("--list")
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()
              and not line.startswith("      ")}
    for name in TASKS:
        assert name in listed, name


def load_tasks():
    spec = importlib.util.spec_from_file_location("ovapipe_tasks", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_flag_has_help():
    tasks = load_tasks()

    for name, task in tasks.namespace.tasks.items():
        for arg in task.get_arguments():
            assert arg.help, f"invoke {name}: flag --{arg.name} has no help"


@pytest.mark.parametrize("flag", ["--nonexistent-flag"])
def test_unknown_flag_is_a_usage_error(flag):
    result = invoke("vars", flag)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("nightly", "--keep", "abc"), "error: --keep 'abc': expected a whole number"),
    (("nightly", "--keep", "0"), "error: --keep 0: must be at least 1"),
    (("test-disk", "--size-mb", "lots"), "error: --size-mb 'lots': expected a whole number"),
    (("sim", "--port", "http"), "error: --port 'http': expected a whole number"),
])
def test_numeric_flags_are_usage_errors_not_tracebacks(args, message):
    result = invoke(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
