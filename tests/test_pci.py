"""PCI ID parsing, signed-short conversion and pci.ids lookups."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe import pci
from ovapipe.capv import describe_pci_id, pci_device_entry, pci_id_warnings
from ovapipe.errors import ConfigError
from ovapipe.paths import REPO_ROOT
from ovapipe.pci import (
    PciDatabase,
    PciId,
    PciName,
    parse_hex_pair,
    resolve,
    unsigned16,
)

ids16 = st.integers(min_value=0, max_value=0xFFFF)


def signed16(value: int) -> int:
    """How the vSphere API (xsd:short) carries an ID above 0x7fff."""
    return value - 0x10000 if value > 0x7FFF else value

FIXTURE_IDS = """\
# a tiny pci.ids
0010  Allied Telesis, Inc (Wrong ID)
10b7  3Com Corporation
\t9056  3c905B-T4 Fast EtherLink XL [Cyclone]
10de  NVIDIA Corporation
\t1eb8  TU104GL [Tesla T4]
\t\t10de 12a2  TU104GL [Tesla T4]
\t20b1  GA100 [A100 PCIe 40GB]
\t20f1  GA100 [A100 PCIe 40GB]
\t26b1  AD102GL [L6000 / RTX 6000 Ada Generation]
8086  Intel Corporation
\t1572  Ethernet Controller X710 for 10GbE SFP+
C 03  Display controller
\t00  VGA compatible controller
"""


@pytest.fixture
def db(tmp_path: Path) -> PciDatabase:
    path = tmp_path / "pci.ids"
    path.write_text(FIXTURE_IDS)
    return PciDatabase(path)


@given(ids16, ids16)
def test_hex_forms_round_trip(vendor: int, device: int) -> None:
    expected = PciId(vendor, device)
    for text in (
        f"{vendor:04x}:{device:04x}",
        f"{vendor:04X}:{device:04X}",
        f"0x{vendor:04x} 0x{device:04x}",
        f"0x{vendor:x}:0x{device:x}",
        f"  {vendor:x} : {device:x} ",
        f"{vendor:04x} {device:04x}",
    ):
        assert parse_hex_pair(text) == expected
    assert parse_hex_pair(expected.hex) == expected
    assert pci_device_entry(expected) == {"deviceId": device, "vendorId": vendor}


@given(ids16)
def test_signed_short_round_trip(value: int) -> None:
    signed = signed16(value)
    assert -0x8000 <= signed <= 0x7FFF
    assert unsigned16(signed) == value
    assert unsigned16(value) == value


def test_vsphere_signed_vendor_ids() -> None:
    assert unsigned16(-32634) == 0x8086 == 32902  # Intel, as vSphere sends it
    assert unsigned16(4318) == 0x10DE
    assert unsigned16(-1) == 0xFFFF
    with pytest.raises(ValueError):
        unsigned16(-0x8001)
    with pytest.raises(ValueError):
        unsigned16(0x10000)


@given(st.text(min_size=1, max_size=12))
def test_parser_never_crashes(text: str) -> None:
    try:
        pci_id = parse_hex_pair(text)
    except ConfigError as exc:
        assert repr(text) in exc.message or "not a PCI ID pair" in exc.message
    else:
        assert 0 <= pci_id.vendor <= 0xFFFF and 0 <= pci_id.device <= 0xFFFF


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10dg:1eb8", "vendor ID '10dg' is not hexadecimal"),
        ("10de:xyz", "device ID 'xyz' is not hexadecimal"),
        ("1ffff:1eb8", "out of range"),
        ("10de:12345", "out of range"),
        ("0x10de", "not a PCI ID pair"),
        ("10de:1eb8:1", "not a PCI ID pair"),
    ],
)
def test_bad_hex(text: str, message: str, db: PciDatabase) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(text, db)


def test_names(db: PciDatabase) -> None:
    t4 = resolve("Tesla T4", db)
    assert isinstance(t4, PciName) and t4.pci_id == PciId(0x10DE, 0x1EB8)
    assert resolve("nvidia tesla t4", db) == t4
    assert resolve("10DE:1EB8", db) == t4
    intel = resolve("8086:1572", db)
    assert isinstance(intel, PciName) and intel.pci_id.vendor == 32902
    assert resolve("RTX 6000 Ada Generation", db).pci_id == PciId(0x10DE, 0x26B1)  # type: ignore[union-attr]
    unnamed = resolve("1234:5678", db)
    assert unnamed == PciId(0x1234, 0x5678)


def test_ambiguous_name_lists_candidates(db: PciDatabase) -> None:
    with pytest.raises(ConfigError) as info:
        resolve("A100 PCIe 40GB", db)
    assert "matches 2 devices" in info.value.message
    assert "10de:20b1" in info.value.message and "10de:20f1" in info.value.message
    with pytest.raises(ConfigError, match="T4' matches 2 devices"):
        resolve("T4", db)  # the 3Com NIC and the Tesla T4


def test_unknown_name(db: PciDatabase) -> None:
    with pytest.raises(ConfigError, match="neither a hex VENDOR:DEVICE pair"):
        resolve("Quantum Flux 9000", db)
    with pytest.raises(ConfigError, match="'A100' matches 2 devices"):
        resolve("A100", db)  # whole words: the two 'A100 PCIe 40GB', not every 'GA100' chip


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"install the Debian package pci\.ids"):
        resolve("Tesla T4", PciDatabase(tmp_path / "nope.ids"))


def _no_system_pci_ids(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pci, "PCI_IDS_CANDIDATES", (tmp_path / "misc" / "pci.ids",))
    monkeypatch.delenv(pci.PCI_IDS_ENV, raising=False)


def test_hex_ids_need_no_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Measured: pci-id 10de:1eb8 failed when /usr/share/misc/pci.ids was missing."""
    _no_system_pci_ids(monkeypatch, tmp_path)
    assert pci.find_pci_ids() is None
    assert resolve("10de:1eb8") == PciId(0x10DE, 0x1EB8)
    text = describe_pci_id("10de:1eb8")
    assert "(name unknown: no pci.ids found)" in text and "vendorId: 4318" in text
    with pytest.raises(ConfigError, match=f"none was found.*set {pci.PCI_IDS_ENV}"):
        resolve("Tesla T4")


def test_database_in_hwdata_and_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hwdata = tmp_path / "hwdata" / "pci.ids"
    hwdata.parent.mkdir()
    hwdata.write_text(FIXTURE_IDS)
    monkeypatch.setattr(pci, "PCI_IDS_CANDIDATES", (tmp_path / "misc" / "pci.ids", hwdata))
    monkeypatch.delenv(pci.PCI_IDS_ENV, raising=False)
    assert pci.find_pci_ids() == hwdata
    mine = tmp_path / "mine.ids"
    mine.write_text(FIXTURE_IDS)
    assert pci.find_pci_ids({pci.PCI_IDS_ENV: str(mine)}) == mine
    with pytest.raises(ConfigError, match=f"{pci.PCI_IDS_ENV}=.*no such file"):
        pci.find_pci_ids({pci.PCI_IDS_ENV: str(tmp_path / "absent")})


def test_decimal_pair_read_as_hex_is_warned_about() -> None:
    """Measured: `pci-id 4318:7864` (CAPV's decimals pasted back) was silently read as hex."""
    (warning,) = pci_id_warnings("4318:7864")
    assert "read as hex 4318:7864" in warning
    assert "the hex ID is 10de:1eb8 (NVIDIA Corporation TU104GL [Tesla T4])" in warning
    assert pci_id_warnings("10de:1eb8") == []
    assert pci_id_warnings("1234:abcd") == []  # not both decimal


@given(st.integers(0, 9999), st.integers(0, 9999))
def test_decimal_reading_shows_the_decimal_pair(vendor: int, device: int) -> None:
    text = f"{vendor}:{device}"
    warning = pci.decimal_reading(text, parse_hex_pair(text), PciDatabase(None))
    assert warning is not None and PciId(vendor, device).hex in warning


def test_system_database() -> None:
    t4 = resolve("Tesla T4")
    assert isinstance(t4, PciName) and pci_device_entry(t4.pci_id) == {
        "deviceId": 7864, "vendorId": 4318,
    }
    with pytest.raises(ConfigError, match=r"matches \d+ devices"):
        resolve("A100")


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60,
    )


def test_invoke_pci_id() -> None:
    result = _invoke("pci-id", "0x10de 0x1eb8")
    assert result.returncode == 0, result.stderr
    assert "vendorId: 4318  (0x10de)" in result.stdout
    assert "deviceId: 7864  (0x1eb8)" in result.stdout
    assert "pciDevices:\n- deviceId: 7864\n  vendorId: 4318" in result.stdout
    decimal = _invoke("pci-id", "4318:7864")
    assert decimal.returncode == 0
    assert "warning: '4318:7864' was read as hex" in decimal.stderr
    bad = _invoke("pci-id", "10de:zzzz")
    assert bad.returncode == 2
    assert "not hexadecimal" in bad.stderr and "Traceback" not in bad.stderr


def test_gpus_names_without_a_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Measured: `gpus` failed when /usr/share/misc/pci.ids was missing."""
    from types import SimpleNamespace

    from ovapipe.vsphere.gpus import _device_name

    _no_system_pci_ids(monkeypatch, tmp_path)
    device = SimpleNamespace(vendorName="", deviceName="")
    assert _device_name(device, PciId(0x10DE, 0x1EB8)) == ("", "none")
