"""The Packer template (validated by Debian's Packer 1.6.6), its scripts, and ovapipe.packer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ovapipe import packer
from ovapipe.errors import BuildError, ConfigError
from ovapipe.paths import PACKER_DIR
from ovapipe.varfiles import resolve, write_vars

TEMPLATE = PACKER_DIR / "ubuntu-2004-efi"
SCRIPTS = sorted((PACKER_DIR / "scripts").glob("*.sh"))
ENV = {
    "VSPHERE_SERVER": "127.0.0.1:8989",
    "VSPHERE_USERNAME": "user",
    "VSPHERE_PASSWORD": "s3cret-Pa55",
    "VSPHERE_DATACENTER": "DC0",
    "VSPHERE_CLUSTER": "DC0_C0",
    "VSPHERE_DATASTORE": "LocalDS_0",
    "VSPHERE_NETWORK": "VM Network",
}
OFFLINE_ISO = ["iso_url=", "iso_checksum=", 'iso_paths=["[LocalDS_0] iso/ubuntu.iso"]']

needs_packer = pytest.mark.packer  # scripts/setup installs Debian's packer


@pytest.mark.packer
@needs_packer
def test_template_passes_packer_validate(tmp_path: Path) -> None:
    for profile in ("ubuntu-2004-efi", "ubuntu-2204-efi"):
        resolved = resolve(profile, sets=OFFLINE_ISO, env=ENV)
        var_file = write_vars(resolved, tmp_path / profile)
        info = packer.find_packer()
        packer.validate(info, TEMPLATE, var_file, packer.packer_env(resolved.packer_env()))


@pytest.mark.packer
@needs_packer
def test_packer_validate_reports_a_broken_variable(tmp_path: Path) -> None:
    resolved = resolve("ubuntu-2004-efi", sets=OFFLINE_ISO, env=ENV)
    var_file = write_vars(resolved, tmp_path)
    env = packer.packer_env({})  # no PKR_VAR_password: Packer itself must refuse
    with pytest.raises(BuildError) as excinfo:
        packer.validate(packer.find_packer(), TEMPLATE, var_file, env)
    assert 'Unset variable "password"' in excinfo.value.message


def test_template_settings_that_let_it_finish_without_ssh() -> None:
    source = (TEMPLATE / "source.pkr.hcl").read_text()
    for setting in ('communicator     = "none"', "vm_version    = var.vmx_version",
                    "firmware      = var.firmware", 'boot_order = "disk,cdrom"',
                    'cd_label = "cidata"', '["pvscsi"]', '"vmxnet3"',
                    "shutdown_timeout = var.shutdown_timeout"):
        assert setting in source
    user_data = (TEMPLATE / "autoinstall" / "user-data").read_text()
    assert "shutdown: poweroff" in user_data
    assert "late-commands.sh" in user_data


def test_required_plugins_live_outside_every_template_folder() -> None:
    """Packer 1.6.6 loads every *.pkr.hcl of a folder and rejects required_plugins."""
    block = re.compile(r"^\s*required_plugins\s*\{", re.MULTILINE)
    for path in PACKER_DIR.glob("*/*.pkr.hcl"):
        if path.parent.name == "plugins":
            assert block.search(path.read_text())
        else:
            assert not block.search(path.read_text()), path


def test_scripts_pass_shellcheck() -> None:
    assert SCRIPTS
    result = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_late_commands_run_every_provisioning_script() -> None:
    text = (PACKER_DIR / "scripts" / "late-commands.sh").read_text()
    for script in ("install-containerd.sh", "install-kubernetes.sh", "enable-guestinfo.sh",
                   "clean-image.sh"):
        assert (PACKER_DIR / "scripts" / script).is_file()
        assert script in text
    clean = (PACKER_DIR / "scripts" / "clean-image.sh").read_text()
    for must in ("cloud-init clean", "/etc/machine-id", "/etc/ssh/ssh_host_", "/var/log"):
        assert must in clean


# --- ovapipe.packer with a stand-in packer binary -------------------------------------------


def fake_packer(tmp_path: Path, build_body: str) -> Path:
    script = tmp_path / "packer"
    script.write_text("\n".join([
        "#!/bin/bash",
        'if [ "$1" = version ]; then echo "Packer v1.6.6"; exit 0; fi',
        f"printf '%s\\n' \"$@\" > '{tmp_path}/argv'",
        f"env > '{tmp_path}/env'",
        build_body,
        "",
    ]))
    script.chmod(0o755)
    return script


def test_find_packer_reads_the_version(tmp_path: Path) -> None:
    script = fake_packer(tmp_path, "exit 0")
    info = packer.find_packer({"PATH": os.environ["PATH"], packer.PACKER_ENV: str(script)})
    assert info.version == "1.6.6"
    assert not info.needs_plugins
    assert packer.PackerInfo(script, "1.11.2").needs_plugins


def test_missing_packer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="packer not found"):
        packer.find_packer({"PATH": "/nonexistent"})


def test_a_wrong_ovapipe_packer_is_named() -> None:
    env = {"PATH": os.environ["PATH"], packer.PACKER_ENV: "/nonexistent/packer"}
    with pytest.raises(ConfigError, match=r"^packer not found: OVAPIPE_PACKER="
                       r"'/nonexistent/packer' is not an executable file"):
        packer.find_packer(env)


@pytest.mark.packer
def test_a_packer_that_cannot_start_is_named_with_its_own_words(tmp_path: Path) -> None:
    """Packer 1.6.6 prints nothing on stdout when TMPDIR does not exist: the error must carry
    its stderr, not an empty answer."""
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path / "missing")}
    with pytest.raises(BuildError, match=r"Couldn't setup logging tempfile.*\(exit 1\)"):
        packer.find_packer(env)


def test_build_streams_log_and_passes_secrets_only_by_env(tmp_path: Path) -> None:
    script = fake_packer(tmp_path, 'echo "building with $PKR_VAR_password"; exit 0')
    info = packer.PackerInfo(script, "1.6.6")
    log = tmp_path / "packer.log"
    echo = tmp_path / "echo.txt"
    with echo.open("w") as stream:
        packer.build(info, TEMPLATE, tmp_path / "vars.json",
                     packer.packer_env({"PKR_VAR_password": "s3cret-Pa55"}), log,
                     secrets=["s3cret-Pa55"], echo=stream)
    assert "s3cret-Pa55" not in (tmp_path / "argv").read_text()
    assert "PKR_VAR_password=s3cret-Pa55" in (tmp_path / "env").read_text()
    assert log.read_text() == "building with <sensitive>\n"
    assert echo.read_text() == "building with <sensitive>\n"
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:2] == ["build", "-color=false"]
    assert "-on-error=cleanup" in argv


def test_build_failure_names_packers_error(tmp_path: Path) -> None:
    body = 'echo "==> Some builds didn\'t complete"; echo "--> vsphere-iso.node: boom"; exit 1'
    info = packer.PackerInfo(fake_packer(tmp_path, body), "1.6.6")
    with pytest.raises(BuildError) as excinfo, open(os.devnull, "w") as sink:
        packer.build(info, TEMPLATE, tmp_path / "v.json", {}, tmp_path / "p.log", echo=sink)
    assert excinfo.value.message == (
        f"packer build failed (exit 1): vsphere-iso.node: boom (log: {tmp_path / 'p.log'})"
    )


def test_ctrl_c_sends_sigint_to_packer_and_waits_for_its_cleanup(tmp_path: Path) -> None:
    body = textwrap.dedent(f"""\
        trap 'echo "cleaning up"; sleep 1; echo cleaned > "{tmp_path}/cleaned"; exit 1' INT
        echo started
        while true; do sleep 0.1; done
        """)
    info = packer.PackerInfo(fake_packer(tmp_path, body), "1.6.6")
    log = tmp_path / "p.log"

    def interrupt_when_started() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if log.exists() and "started" in log.read_text():
                break
            time.sleep(0.05)
        signal.raise_signal(signal.SIGINT)  # delivered to the main thread, like Ctrl-C

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt), open(os.devnull, "w") as sink:
        packer.build(info, TEMPLATE, tmp_path / "v.json", {"PATH": os.environ["PATH"]}, log,
                     echo=sink)
    assert (tmp_path / "cleaned").read_text() == "cleaned\n"
    assert "cleaning up" in log.read_text()


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="process groups and signals as on Linux")


def _signal_when(log: Path, text: str) -> None:
    """SIGINT to this process once ``text`` appears in Packer's log (the event itself)."""
    def watch() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if log.exists() and text in log.read_text():
                break
            time.sleep(0.05)
        signal.raise_signal(signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def test_packer_gets_a_temp_dir_of_its_own(tmp_path: Path) -> None:
    info = packer.PackerInfo(fake_packer(tmp_path, "exit 0"), "1.6.6")
    own = tmp_path / "packer-tmp"
    own.mkdir()
    with open(os.devnull, "w") as sink:
        packer.build(info, TEMPLATE, tmp_path / "v.json", {"PATH": os.environ["PATH"]},
                     tmp_path / "p.log", echo=sink, temp_dir=own)
    assert f"TMPDIR={own}" in (tmp_path / "env").read_text().splitlines()


def test_a_packer_build_that_overruns_its_bound_is_stopped(tmp_path: Path) -> None:
    body = 'trap "echo stopped; exit 1" INT\nwhile true; do sleep 0.1; done'
    info = packer.PackerInfo(fake_packer(tmp_path, body), "1.6.6")
    env = {"PATH": os.environ["PATH"], packer.BUILD_TIMEOUT_ENV: "1"}
    with pytest.raises(BuildError, match="did not finish within 1 s"), \
            open(os.devnull, "w") as sink:
        packer.build(info, TEMPLATE, tmp_path / "v.json", env, tmp_path / "p.log", echo=sink)


def test_a_second_ctrl_c_kills_a_packer_that_does_not_stop(tmp_path: Path) -> None:
    """Before: a second Ctrl-C was ignored for up to 600 s while Packer 'cleaned up'."""
    body = textwrap.dedent("""\
        trap 'echo ignoring' INT
        echo started
        while true; do sleep 0.1; done
        """)
    info = packer.PackerInfo(fake_packer(tmp_path, body), "1.6.6")
    log = tmp_path / "p.log"
    _signal_when(log, "started")
    _signal_when(log, "ignoring")
    with pytest.raises(KeyboardInterrupt), open(os.devnull, "w") as sink:
        packer.build(info, TEMPLATE, tmp_path / "v.json", {"PATH": os.environ["PATH"]}, log,
                     echo=sink)
