"""The project's own checks: lint, types, shell scripts, and what the package installs."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command):
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_clean():
    result = run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean():
    result = run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_covers_every_package():
    """Measured: mypy checked none of validators/ (a deliberately broken line there passed)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(config["tool"]["mypy"]["packages"])
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk <= packages, f"mypy does not check {sorted(on_disk - packages)}"


def test_shell_scripts_pass_shellcheck():
    scripts = ["run", "scripts/setup", ".ci/run", *map(str, ROOT.glob("packer/**/*.sh"))]
    result = run("shellcheck", *scripts)
    assert result.returncode == 0, result.stdout


def test_the_wheel_installs_only_the_ovapipe_top_level_package(tmp_path):
    # Built from a copy, so setuptools' build/ folder is not left in the repository.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("ovapipe", "validators"):
        shutil.copytree(ROOT / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    result = run(str(BIN / "python"), "-m", "pip", "wheel", "--no-deps",
                 "-q", "-w", str(tmp_path), str(source))
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("ovapipe-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top_level = {name.split("/")[0] for name in archive.namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"ovapipe"}
    with zipfile.ZipFile(wheel) as archive:
        assert "ovapipe/validators/__init__.py" in archive.namelist()


def test_validators_folder_is_ovapipe_validators():
    import ovapipe.validators

    assert Path(ovapipe.validators.__file__).parent == ROOT / "validators"
    # A fresh interpreter outside the repo: no top-level `validators` module is installed.
    result = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('validators'))"],
        cwd="/", capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "None", result.stdout + result.stderr
