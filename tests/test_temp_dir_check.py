"""The suite checks itself that it leaves nothing in the temporary directory (issue 17)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")


def test_this_session_has_a_private_temp_folder() -> None:
    here = Path(tempfile.gettempdir())
    assert here.name.startswith("ovapipe-tests-")
    assert os.environ["TMPDIR"] == str(here)


def _inner_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(CONFTEST, project / "conftest.py")
    (project / "test_inner.py").write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(project), str(project)],
        cwd=project, capture_output=True, text=True, timeout=120,
    )


def test_a_leftover_fails_the_session_and_is_named(tmp_path: Path) -> None:
    leaky = _inner_session(tmp_path, (
        "import subprocess, tempfile\n"
        "def test_leaks(tmp_path):\n"
        "    (tmp_path / 'fine').write_text('pytest cleans its own tmp_path')\n"
        "    tempfile.mkstemp(prefix='leak-')\n"
        "    subprocess.run(['mktemp', '-d', '--tmpdir', 'child-XXXX'], check=True)\n"
    ))
    assert leaky.returncode == 1, leaky.stdout + leaky.stderr
    assert "the test suite left 2 item(s) in its temporary directory: child-" in leaky.stdout
    assert "leak-" in leaky.stdout


def test_a_clean_session_passes(tmp_path: Path) -> None:
    clean = _inner_session(tmp_path, "def test_clean(tmp_path):\n    assert tmp_path.exists()\n")
    assert clean.returncode == 0, clean.stdout + clean.stderr
