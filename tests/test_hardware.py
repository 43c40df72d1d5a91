import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe import hardware


@pytest.mark.parametrize(
    ("vmx", "esxi"),
    [(4, "3.5"), (7, "4.0"), (8, "5.0"), (9, "5.1"), (10, "5.5"), (11, "6.0"),
     (13, "6.5"), (14, "6.7"), (15, "6.7U2"), (17, "7.0"), (18, "7.0U1"), (19, "7.0U2"),
     (20, "8.0"), (21, "8.0U2"), (22, "9.0")],
)
def test_table_matches_the_published_pairs(vmx, esxi):
    assert hardware.min_esxi_for(vmx) == esxi


def test_unknown_vmx_between_entries_needs_the_next_known_release():
    assert hardware.min_esxi_for(16) == "7.0"
    assert hardware.min_esxi_for(12) == "6.5"
    assert hardware.min_esxi_for(23) is None


@pytest.mark.parametrize(
    ("esxi", "vmx", "ok"),
    [("7.0.3", 17, True), ("7.0.3", 19, True), ("7.0.0", 18, False), ("6.7.0", 17, False),
     ("6.7.0", 15, False), ("6.7U2", 15, True), ("8.0.2", 21, True), ("8.0.1", 21, False),
     ("6.5.0", 10, True), ("8.0.3", 25, False),
     # issue 17: vmx-9/10/11 run on the 5.1/5.5/6.0 hosts that introduced them
     ("5.1", 9, True), ("5.5.0", 10, True), ("6.0.0", 11, True), ("5.0", 9, False),
     ("3.5", 4, True)],
)
def test_esxi_supports(esxi, vmx, ok):
    assert hardware.esxi_supports(esxi, vmx) is ok


def test_max_vmx_for():
    assert hardware.max_vmx_for("7.0.3") == 19
    assert hardware.max_vmx_for("6.7.0") == 14
    assert hardware.max_vmx_for("8.0.2") == 21
    assert hardware.max_vmx_for("5.5") == 10
    assert hardware.max_vmx_for("9.0") == 22


def test_describe_names_the_release_that_introduced_old_versions():
    # issue 17: vmx-9/10/11 were reported as "ESXi 6.5+"
    assert hardware.describe_vmx_need(9) == "vmx-9 needs ESXi 5.1 or newer"
    assert hardware.describe_vmx_need(11) == "vmx-11 needs ESXi 6.0 or newer"


@pytest.mark.parametrize("value", [99, "vmx-99", 12, "16", "vmx-3", 5])
def test_a_version_no_esxi_creates_is_refused(value):
    with pytest.raises(ValueError, match="not a hardware version any ESXi release creates"):
        hardware.parse_esxi_vmx(value)


@pytest.mark.parametrize("value", [4, "vmx-11", "17", 22])
def test_every_esxi_version_is_accepted(value):
    assert hardware.parse_esxi_vmx(value) in hardware.VMX_MIN_ESXI


@pytest.mark.parametrize(("text", "number"), [("vmx-17", 17), ("17", 17), (" vmx-9 ", 9), (21, 21)])
def test_parse_vmx(text, number):
    assert hardware.parse_vmx(text) == number


@pytest.mark.parametrize("text", ["vmx17", "vmx-", "vmx-100", "seventeen", "", "vmx-0", -1])
def test_parse_vmx_rejects(text):
    with pytest.raises(ValueError):
        hardware.parse_vmx(text)


@given(st.text(max_size=12))
def test_parse_vmx_raises_only_value_error(text):
    try:
        number = hardware.parse_vmx(text)
    except ValueError:
        return
    assert 1 <= number <= 99


def test_esxi_update_and_patch_spellings_order_alike():
    assert hardware.esxi_key("7.0U2") == hardware.esxi_key("7.0.2")
    assert hardware.esxi_key("6.7") < hardware.esxi_key("6.7U2") < hardware.esxi_key("7.0")
    with pytest.raises(ValueError):
        hardware.esxi_key("seven")
