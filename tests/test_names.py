"""Safe VM and template names: vCenter's rules, checked before any connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe.errors import ConfigError
from ovapipe.names import check_name, child, name_problem, template_name
from ovapipe.paths import REPO_ROOT

HOSTILE = ["", ".", "..", "a/b", "../../../../../x", "a\\b", "100%", "x" * 81, "tab\there",
           "nul\0", "bell\x07", "del\x7f", "c1\x85"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="a VM or template name needs 1 to 80 characters"):
        check_name(name)


@pytest.mark.parametrize("name", ["ubuntu-2004-efi-v1.30.5", "a", "x" * 80, "Ünïcode név",
                                  "with space", "...dots", ".hidden"])
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name) == name


def test_the_template_name_from_the_file_name_is_checked_too() -> None:
    assert template_name(None, Path("/x/node.ova")) == "node"
    with pytest.raises(ConfigError, match=r"OVA's file name \(\.\.\.ova; pass --name\)"):
        template_name(None, Path("/x/...ova"))
    with pytest.raises(ConfigError, match="--name '' is empty"):
        template_name("", Path("/x/node.ova"))


@given(st.text(max_size=120))
def test_a_path_from_an_accepted_name_stays_in_its_folder(name: str) -> None:
    base = Path("/srv/output")
    if name_problem(name) is not None:
        with pytest.raises(ConfigError):
            child(base, name)
        return
    for path in (child(base, name), child(base, name, ".packer.log"),
                 child(base, name, ".partial-1", prefix="."),
                 child(base, name) / "publish-DC0.json"):
        normal = Path(os.path.normpath(path))
        assert normal.is_relative_to(base) and normal != base, path
        assert normal.relative_to(base).parts[0] == path.relative_to(base).parts[0]


@given(st.text(max_size=120), st.text(max_size=40))
def test_publish_records_of_accepted_names_stay_in_the_output_folder(name: str, dc: str) -> None:
    from ovapipe.vsphere.publish.records import record_path

    base = Path("/srv/output")
    if name_problem(name) is not None:
        return
    record = Path(os.path.normpath(record_path(base, name, dc)))
    assert record.parent == base / name


@pytest.mark.parametrize("name", ["../../../../../x", "a/b", "x" * 81, "", ".."])
def test_publish_refuses_a_bad_name_before_connecting(name: str, tmp_path: Path) -> None:
    # No vCenter at all: a name error must come first.
    env = {**os.environ, "VSPHERE_SERVER": "127.0.0.1:9", "VSPHERE_USERNAME": "u",
           "VSPHERE_PASSWORD": "p", "VSPHERE_TLS_THUMBPRINT": "00" * 20}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "publish", "--ova", str(tmp_path / "x.ova"),
         "--datacenter", "DC0", "--name", name],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "a VM or template name needs" in result.stderr
    assert "Traceback" not in result.stderr
