"""invoke vars: layering, schema, template keys, GPU rules, secrets, output formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe import hardware
from ovapipe.errors import ConfigError
from ovapipe.paths import REPO_ROOT
from ovapipe.template import read_template, template_dir
from ovapipe.varfiles import (
    coerce,
    image_builder_vars,
    load_schema,
    parse_set,
    resolve,
    write_vars,
)

PASSWORD = "pa55-Wörd;$(touch /tmp/x)"
ENV = {
    "VSPHERE_SERVER": "https://vc.example.com:8443/sdk",
    "VSPHERE_USERNAME": "packer@vsphere.local",
    "VSPHERE_PASSWORD": PASSWORD,
    "VSPHERE_DATACENTER": "DC0",
    "VSPHERE_CLUSTER": "DC0_C0",
    "VSPHERE_DATASTORE": "LocalDS_0",
    "VSPHERE_NETWORK": "VM Network",
}


def problems(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    lines = excinfo.value.message.splitlines()
    return [line.strip() for line in lines[1:]]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- layering -----------------------------------------------------------------------------


def test_layers_later_wins_and_sources_are_recorded(tmp_path: Path) -> None:
    site = write(tmp_path, "site.json", json.dumps({"cpus": 4, "datacenter": "DC1"}))
    resolved = resolve("ubuntu-2004-efi", [site], ["cpus=8"], env=ENV)
    assert resolved.values["cpus"] == 8
    assert resolved.sources["cpus"] == "--set"
    assert resolved.values["datacenter"] == "DC1"  # the var file wins over the environment
    assert resolved.sources["datacenter"] == str(site)
    assert resolved.values["memory"] == 4096
    assert resolved.sources["memory"] == "vars/defaults.json"
    assert resolved.values["vmx_version"] == 17
    assert resolved.sources["vmx_version"] == "vars/os/ubuntu-2004-efi.json"
    assert resolved.values["vcenter_server"] == "vc.example.com:8443"
    assert resolved.sources["vcenter_server"] == "environment"


def test_both_profiles_resolve() -> None:
    for profile in ("ubuntu-2004-efi", "ubuntu-2204-efi"):
        resolved = resolve(profile, env=ENV)
        assert resolved.values["firmware"] == hardware.FIRMWARE_EFI
        assert resolved.values["vmx_version"] >= hardware.GPU_MIN_VMX


def test_unknown_profile_lists_available() -> None:
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-1804", env=ENV)
    assert excinfo.value.message == (
        "profile 'ubuntu-1804' not found in vars/os/; available: ubuntu-2004-efi, ubuntu-2204-efi"
    )


def test_example_site_file_shows_every_vsphere_field() -> None:
    example = json.loads((REPO_ROOT / "vars/site/example.json").read_text())
    from ovapipe.varfiles import ENV_VARIABLES

    fields = set(ENV_VARIABLES.values()) - {"password"}
    assert fields <= set(example)
    assert "password" not in example
    resolve("ubuntu-2004-efi", ["vars/site/example.json"], env={"VSPHERE_PASSWORD": "x"})


# --- each error with its exact message ------------------------------------------------------


def test_schema_errors_name_key_layer_and_expectation_all_at_once(tmp_path: Path) -> None:
    site = write(
        tmp_path,
        "site.json",
        json.dumps({"cpus": "four", "memory": 10, "insecure_connection": "yes",
                    "iso_paths": ["ubuntu.iso"]}),
    )
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", [site], ["kubernetes_version=latest"], env=ENV)
    assert excinfo.value.exit_code == 2
    assert excinfo.value.message.startswith("invalid variables (5 problems):\n")
    assert problems(excinfo) == [
        f'cpus (from {site}): got "four"; expected an integer from 1 to 768',
        f'insecure_connection (from {site}): got "yes"; expected true or false',
        f'iso_paths (from {site}): got ["ubuntu.iso"]; expected a list of strings '
        '(datastore paths such as "[datastore1] iso/ubuntu.iso")',
        'kubernetes_version (from --set): got "latest"; expected a string '
        "(a release such as 1.30.5)",
        f"memory (from {site}): got 10; expected an integer from 1024 to 25165824",
    ]


def test_vmx_versions_come_from_hardware_module() -> None:
    assert load_schema()["properties"]["vmx_version"]["enum"] == list(hardware.ESXI_VMX_VERSIONS)
    expected = " or ".join(str(v) for v in hardware.ESXI_VMX_VERSIONS)
    # issue 17: vmx 99 (and 12, which only Workstation creates) were accepted
    for number in (12, 99):
        with pytest.raises(ConfigError) as excinfo:
            resolve("ubuntu-2004-efi", sets=[f"vmx_version={number}"], env=ENV)
        assert problems(excinfo) == [f"vmx_version (from --set): got {number}; expected {expected}"]


def test_firmware_enum_comes_from_hardware_module(tmp_path: Path) -> None:
    assert load_schema()["properties"]["firmware"]["enum"] == list(hardware.FIRMWARES)
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", sets=["firmware=uefi"], env=ENV)
    assert problems(excinfo) == [
        'firmware (from --set): got "uefi"; expected "efi" or "bios"',
    ]


def test_unknown_key_suggests_the_closest_variable(tmp_path: Path) -> None:
    site = write(tmp_path, "site.json", json.dumps({"datastor": "ds1", "zzz": 1}))
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", [site], env=ENV)
    assert problems(excinfo) == [
        f"{site}: unknown key 'datastor' (not a variable of packer/ubuntu-2004-efi); "
        "did you mean 'datastore'?",
        f"{site}: unknown key 'zzz' (not a variable of packer/ubuntu-2004-efi)",
    ]


def test_template_variable_without_default_or_value_is_an_error() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("VSPHERE_DATASTORE", "VSPHERE_PASSWORD")}
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", env=env)
    assert problems(excinfo) == [
        "datastore: no value in any layer and no default in packer/ubuntu-2004-efi; "
        "set it in a var file, --set datastore=... or env VSPHERE_DATASTORE",
        "password: no value in any layer and no default in packer/ubuntu-2004-efi; "
        "set it in the environment (VSPHERE_PASSWORD)",
    ]


def test_bad_layer_json_names_file_line_and_column(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", '{\n  "cpus": 4\n  "memory": 8192\n}\n')
    also_bad = write(tmp_path, "list.json", "[1, 2]")
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", [bad, also_bad], ["cpus=0"], env=ENV)
    assert problems(excinfo) == [
        f"{bad}: line 3, column 3: invalid JSON: Expecting ',' delimiter",
        f"{also_bad}: expected a JSON object of variables, got list",
        "cpus (from --set): got 0; expected an integer from 1 to 768",
    ]


def test_duplicate_key_in_a_layer_is_an_error(tmp_path: Path) -> None:
    dup = write(tmp_path, "dup.json", '{"cpus": 2, "cpus": 4}')
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", [dup], env=ENV)
    assert problems(excinfo) == [f"{dup}: duplicate key 'cpus': each variable may appear once"]


def test_gpu_profile_refuses_lower_vmx_and_bios_with_the_reason(tmp_path: Path) -> None:
    site = write(tmp_path, "site.json", json.dumps({"firmware": "bios"}))
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", [site], ["vmx_version=vmx-15"], env=ENV)
    assert problems(excinfo) == [
        "vmx_version (from --set): got 15; GPU profile ubuntu-2004-efi needs 17 or newer: "
        + hardware.GPU_MIN_VMX_REASON,
        f'firmware (from {site}): got "bios"; GPU profile ubuntu-2004-efi needs "efi": '
        + hardware.GPU_FIRMWARE_REASON,
    ]
    assert "Dynamic DirectPath I/O" in excinfo.value.message
    assert "64-bit MMIO" in excinfo.value.message


def test_higher_vmx_is_fine_for_gpu_profiles() -> None:
    assert resolve("ubuntu-2004-efi", sets=["vmx_version=19"], env=ENV).values["vmx_version"] == 19


def test_secret_in_a_var_file_or_set_is_refused(tmp_path: Path) -> None:
    site = write(tmp_path, "site.json", json.dumps({"password": "hunter2"}))
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", [site], ["password=hunter2"], env=ENV)
    assert problems(excinfo) == [
        f"{site}: 'password' is a secret and is never read from files or --set: "
        "set VSPHERE_PASSWORD in the environment",
        "--set: 'password' is a secret and is never read from files or --set: "
        "set VSPHERE_PASSWORD in the environment",
    ]


def test_set_syntax_and_type_errors() -> None:
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", sets=["cpus", "memory=lots", "insecure_connection=maybe"],
                env=ENV)
    assert problems(excinfo) == [
        "--set 'cpus': expected KEY=VALUE, e.g. --set cpus=4",
        "--set memory=lots: expected an integer",
        "--set insecure_connection=maybe: expected true or false",
    ]


def test_iso_source_rules() -> None:
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", sets=["iso_url=", "iso_checksum="], env=ENV)
    assert problems(excinfo) == [
        "iso_url and iso_paths are both empty; expected iso_url (with iso_checksum) or "
        "iso_paths on a datastore",
    ]
    with pytest.raises(ConfigError) as excinfo:
        resolve("ubuntu-2004-efi", sets=["iso_checksum="], env=ENV)
    assert problems(excinfo) == [
        "iso_checksum (from --set): empty while iso_url (from vars/os/ubuntu-2004-efi.json) "
        "is set; expected TYPE:HEX or file:URL",
    ]


# --- schema and template agree --------------------------------------------------------------


def test_schema_describes_exactly_the_template_variables() -> None:
    schema = load_schema()
    template = read_template(template_dir("ubuntu-2004-efi"))
    assert set(schema["properties"]) == set(template.variables)
    without_default = {n for n, v in template.variables.items() if not v.has_default}
    assert set(schema["required"]) == without_default
    assert template.secrets == {"password"}
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema)


# --- outputs ----------------------------------------------------------------------------------


def test_packer_vars_json_is_sorted_deterministic_and_secret_free(tmp_path: Path) -> None:
    resolved = resolve("ubuntu-2004-efi", env=ENV)
    first = write_vars(resolved, tmp_path / "a").read_bytes()
    second = write_vars(resolve("ubuntu-2004-efi", env=ENV), tmp_path / "b").read_bytes()
    assert first == second
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert "password" not in data
    assert PASSWORD.encode() not in first
    assert resolved.packer_env() == {"PKR_VAR_password": PASSWORD}
    assert PASSWORD not in repr(resolved)


def test_image_builder_format_uses_its_names(tmp_path: Path) -> None:
    resolved = resolve("ubuntu-2004-efi", sets=["cpus=4"], env=ENV)
    path = write_vars(resolved, tmp_path, "image-builder")
    assert path.name == "image-builder-vars.json"
    data = json.loads(path.read_text())
    assert data["vmx_version"] == "17"
    assert data["firmware"] == "efi"
    assert data["vcenter_server"] == "vc.example.com:8443"
    assert data["username"] == "packer@vsphere.local"
    assert data["insecure_connection"] == "false"
    assert data["cpu"] == "4"
    assert data["kubernetes_semver"] == "v1.30.5"
    assert data["kubernetes_series"] == "v1.30"
    assert all(isinstance(v, str) for v in data.values())
    assert "password" not in data
    assert "iso_url" not in data  # image-builder takes the ISO from its own OS files
    assert PASSWORD not in path.read_text()
    assert image_builder_vars({"insecure_connection": True})["insecure_connection"] == "true"


def run_invoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )


def test_invoke_vars_writes_file_and_exits_2_on_config_errors(tmp_path: Path) -> None:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("VSPHERE_")}
    ok = run_invoke("vars", "--out", str(tmp_path), "--set", "cpus=4", env={**clean_env, **ENV})
    assert ok.returncode == 0, ok.stderr
    written = (tmp_path / "packer-vars.json").read_text()
    assert json.loads(written)["cpus"] == 4
    for text in (written, ok.stdout, ok.stderr):
        assert PASSWORD not in text
    bad = run_invoke("vars", "--out", str(tmp_path / "x"), "--set", "vmx_version=15",
                     env={**clean_env, **ENV})
    assert bad.returncode == 2
    assert "vmx_version (from --set): got 15" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "x").exists()


# --- --set parsing (property-based) -----------------------------------------------------------

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)


@given(key=keys, value=st.text())
def test_parse_set_splits_at_the_first_equals_sign(key: str, value: str) -> None:
    assert parse_set(f"{key}={value}") == (key, value)


@given(st.text().filter(lambda s: "=" not in s))
def test_parse_set_without_equals_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_set(text)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_coerce_integer_roundtrip(number: int) -> None:
    assert coerce(f" {number} ", {"type": "integer"}) == number


@given(st.sampled_from(["true", "TRUE", "yes", "1", "on", "false", "No", "0", "off"]))
def test_coerce_boolean_words(word: str) -> None:
    assert coerce(word, {"type": "boolean"}) is (word.lower() in ("true", "yes", "1", "on"))


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters=",[", min_codepoint=33),
                        min_size=1), max_size=5))
def test_coerce_array_forms(items: list[str]) -> None:
    assert coerce(json.dumps(items), {"type": "array"}) == items
    # The comma form strips each item and drops empty ones (U+0085 and U+00A0 are whitespace).
    assert coerce(",".join(items), {"type": "array"}) == [i.strip() for i in items if i.strip()]


@given(st.integers(min_value=1, max_value=99))
def test_coerce_vmx_names(number: int) -> None:
    if number in hardware.VMX_MIN_ESXI:
        assert coerce(f"vmx-{number}", {"type": "integer"}, "vmx_version") == number
    else:
        with pytest.raises(ValueError, match="not a hardware version any ESXi release creates"):
            coerce(f"vmx-{number}", {"type": "integer"}, "vmx_version")
