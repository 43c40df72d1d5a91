"""The nightly CI workflow: its structure (secrets, pins, artifacts, inputs) and actionlint."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from ovapipe.build import BUILD_JSON, PACKER_LOG
from ovapipe.clustertemplate import CUDA_TEST_POD, GPU_OPERATOR_SCRIPT
from ovapipe.varfiles import PACKER_VARS_FILE

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github/workflows/nightly-image.yml"
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# The nightly task through stock Invoke or ovapipe's own program (exit 2 for usage errors).
NIGHTLY_COMMAND = re.compile(r"(?:\binvoke|-m ovapipe) nightly\b")


def load() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(WORKFLOW.read_text())
    return data


def steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def expressions(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in the document with where it sits (jobs.image.steps.2.env.X)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from expressions(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from expressions(value, f"{path}.{index}")
    elif isinstance(node, str):
        yield path, node


def nightly_step(workflow: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    found = [(i, s) for i, s in enumerate(workflow["jobs"]["image"]["steps"])
             if NIGHTLY_COMMAND.search(s.get("run", ""))]
    assert len(found) == 1, "one step runs the nightly task"
    return found[0]


def upload_step(workflow: dict[str, Any]) -> dict[str, Any]:
    (step,) = [s for _, s in steps(workflow)
               if s.get("uses", "").startswith("actions/upload-artifact@")]
    return step


def test_secrets_reach_only_the_nightly_step() -> None:
    workflow = load()
    index, _ = nightly_step(workflow)
    allowed = f"jobs.image.steps.{index}.env."
    uses = [path for path, text in expressions(workflow) if "secrets." in text]
    assert uses, "the workflow reads the vCenter secrets"
    assert [p for p in uses if not p.startswith(allowed)] == []
    assert {p.removeprefix(allowed) for p in uses} == {
        "VSPHERE_SERVER", "VSPHERE_USERNAME", "VSPHERE_PASSWORD", "VSPHERE_TLS_THUMBPRINT"}


def test_actions_are_pinned_by_commit_with_the_tag_beside_it() -> None:
    workflow = load()
    used = [step["uses"] for _, step in steps(workflow) if "uses" in step]
    assert used
    assert [u for u in used if not PINNED.match(u)] == []
    lines = WORKFLOW.read_text().splitlines()
    for action in used:
        (line,) = [line for line in lines if f"uses: {action}" in line]
        assert re.search(r"#\s*v\d+(\.\d+)*\s*$", line), f"{action}: no '# vX.Y.Z' tag comment"


def test_checkout_keeps_no_credentials() -> None:
    (checkout,) = [s for _, s in steps(load()) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False


def test_setup_is_the_runtime_one() -> None:
    runs = [s.get("run", "") for _, s in steps(load())]
    setups = [r for r in runs if "setup" in r.split()[:3]]
    assert setups == ["./run setup --runtime"]


def test_artifacts_expire_and_cover_the_report_logs_and_hand_off_files() -> None:
    workflow = load()
    step = upload_step(workflow)
    assert step["if"] == "always()"
    assert isinstance(step["with"]["retention-days"], int) and step["with"]["retention-days"] > 0
    profile, image = "ubuntu-2004-efi", "ubuntu-2004-efi-20261203-021700-1a2b3c4-9f8e"
    patterns = step["with"]["path"].replace("${{ matrix.profile }}", profile).split()
    wanted = [
        f"output/report-{profile}/report.md",
        f"output/{image}.{PACKER_LOG}",  # a failed build's kept log
        f"output/{image}/{PACKER_LOG}",
        f"output/{image}/{BUILD_JSON}",
        f"output/{image}/{PACKER_VARS_FILE}",
        f"output/{image}/{image}.ova.sha256",
        f"output/{image}/publish-DC0.json",
        f"output/{image}/cluster-template-DC0.yaml",
        f"output/{image}/{GPU_OPERATOR_SCRIPT}",
        f"output/{image}/{CUDA_TEST_POD}",
    ]

    def uploaded(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or (p.endswith("/") and path.startswith(p))
                   for p in patterns)

    assert [p for p in wanted if not uploaded(p)] == []
    assert not uploaded(f"output/{image}/{image}.ova"), "the OVA itself stays on the runner"


def test_the_profile_list_is_a_dispatch_input_that_feeds_the_matrix(tmp_path: Path) -> None:
    workflow = load()
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["profiles"]["type"] == "string"
    image = workflow["jobs"]["image"]
    assert image["needs"] == "plan"
    assert image["strategy"]["matrix"]["profile"] == (
        "${{ fromJSON(needs.plan.outputs.profiles) }}")

    (step,) = workflow["jobs"]["plan"]["steps"]
    assert step["env"]["PROFILES"] == "${{ github.event.inputs.profiles }}"

    def plan(profiles: str) -> str:
        output = tmp_path / "output"
        output.write_text("")
        env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), "PROFILES": profiles,
               "DEFAULT_PROFILES": workflow["env"]["DEFAULT_PROFILES"]}
        subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], env=env, check=True,
                       timeout=30)
        return output.read_text().strip()

    assert plan("a, b  c") == 'profiles=["a", "b", "c"]'
    assert plan("") == 'profiles=["ubuntu-2004-efi", "ubuntu-2204-efi"]'
    for profile in workflow["env"]["DEFAULT_PROFILES"].split():
        assert (ROOT / "vars" / "os" / f"{profile}.json").is_file()


@pytest.fixture
def actionlint() -> str:
    assert ACTIONLINT, "actionlint not installed: the test extra provides it"
    return ACTIONLINT


def test_nightly_workflow_passes_actionlint(actionlint: str) -> None:
    result = subprocess.run([actionlint, "-color=false"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_actionlint_catches_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    workflow = tmp_path / ".github" / "workflows" / "bad.yml"
    workflow.parent.mkdir(parents=True)
    text = WORKFLOW.read_text()
    workflow.write_text(text.replace("${{ matrix.profile }}", "${{ matrix.flavour }}"))
    result = subprocess.run([actionlint, "-color=false", str(workflow)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "flavour" in result.stdout
