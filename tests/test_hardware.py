import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe import hardware


@pytest.mark.parametrize(
    ("vmx", "esxi"),
    [(13, "6.5"), (14, "6.7"), (15, "6.7U2"), (17, "7.0"), (18, "7.0U1"), (19, "7.0U2"),
     (20, "8.0"), (21, "8.0U2")],
)
def test_table_matches_the_published_pairs(vmx, esxi):
    assert hardware.min_esxi_for(vmx) == esxi


def test_unknown_vmx_between_entries_needs_the_next_known_release():
    assert hardware.min_esxi_for(16) == "7.0"
    assert hardware.min_esxi_for(22) is None


@pytest.mark.parametrize(
    ("esxi", "vmx", "ok"),
    [("7.0.3", 17, True), ("7.0.3", 19, True), ("7.0.0", 18, False), ("6.7.0", 17, False),
     ("6.7.0", 15, False), ("6.7U2", 15, True), ("8.0.2", 21, True), ("8.0.1", 21, False),
     ("6.5.0", 10, True), ("8.0.3", 25, False)],
)
def test_esxi_supports(esxi, vmx, ok):
    assert hardware.esxi_supports(esxi, vmx) is ok


def test_max_vmx_for():
    assert hardware.max_vmx_for("7.0.3") == 19
    assert hardware.max_vmx_for("6.7.0") == 14
    assert hardware.max_vmx_for("8.0.2") == 21


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
