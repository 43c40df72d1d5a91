"""The users' nightly CI workflow is linted with actionlint (and shellcheck for run: steps)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent))


@pytest.fixture
def actionlint():
    assert ACTIONLINT, "actionlint not installed: the test extra provides it"
    return ACTIONLINT


def test_nightly_workflow_passes_actionlint(actionlint):
    result = subprocess.run([actionlint, "-color=false"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path):
    workflow = tmp_path / ".github" / "workflows" / "bad.yml"
    workflow.parent.mkdir(parents=True)
    text = (ROOT / ".github/workflows/nightly-image.yml").read_text()
    workflow.write_text(text.replace("${{ matrix.profile }}", "${{ matrix.flavour }}"))
    result = subprocess.run([actionlint, "-color=false", str(workflow)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "flavour" in result.stdout


def test_workflow_runs_nightly_with_secrets_and_uploads_the_report():
    text = (ROOT / ".github/workflows/nightly-image.yml").read_text()
    assert "schedule:" in text and "workflow_dispatch:" in text
    assert "invoke nightly" in text and "upload-artifact" in text
    assert "secrets.VSPHERE_PASSWORD" in text and "matrix:" in text
