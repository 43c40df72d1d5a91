"""build-ova refuses bad input before it touches Packer or vCenter."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovapipe.build import BuildRequest, build_ova
from ovapipe.errors import ConfigError

ENV = {
    "PATH": "/nonexistent",  # any attempt to run packer would fail differently
    "VSPHERE_SERVER": "127.0.0.1:1",
    "VSPHERE_USERNAME": "user",
    "VSPHERE_PASSWORD": "pw",
    "VSPHERE_TLS_THUMBPRINT": ":".join(["AB"] * 20),
    "VSPHERE_DATACENTER": "DC0",
    "VSPHERE_CLUSTER": "DC0_C0",
    "VSPHERE_DATASTORE": "LocalDS_0",
    "VSPHERE_NETWORK": "VM Network",
}


def test_unknown_on_error_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_ova(BuildRequest(out=tmp_path, on_error="ask"), env=ENV)
    assert excinfo.value.message == "--on-error 'ask': expected cleanup or abort"


def test_bad_variables_stop_the_build_with_exit_2(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_ova(BuildRequest(out=tmp_path, sets=("firmware=bios",)), env=ENV)
    assert excinfo.value.exit_code == 2
    assert 'firmware (from --set): got "bios"' in excinfo.value.message
    assert not tmp_path.joinpath("ubuntu-2004-efi-kube.packer.log").exists()


def test_an_unpinned_vcenter_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "VSPHERE_TLS_THUMBPRINT"}
    with pytest.raises(ConfigError, match="VSPHERE_TLS_THUMBPRINT not set"):
        build_ova(BuildRequest(out=tmp_path), env=env)
