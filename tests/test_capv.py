"""CAPV facts: the MMIO table and rule, pciDevices entries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe.capv import (
    MMIO_GB_BY_DEVICE,
    VMX_64BIT_MMIO_SIZE_GB,
    VMX_USE_64BIT_MMIO,
    GpuRequest,
    describe_pci_id,
    next_power_of_two,
    pci_device_entries,
    plan_mmio,
)
from ovapipe.pci import PciId, database

A100_80 = PciId(0x10DE, 0x20B5)
A100_40 = PciId(0x10DE, 0x20B1)
H100 = PciId(0x10DE, 0x2331)
L4 = PciId(0x10DE, 0x27B8)
T4 = PciId(0x10DE, 0x1EB8)
UNKNOWN = PciId(0x8086, 0x0BD5)  # an Intel device (ID > 0x7fff) not in the table


def keys(size: int) -> dict[str, str]:
    return {VMX_USE_64BIT_MMIO: "TRUE", VMX_64BIT_MMIO_SIZE_GB: str(size)}


@pytest.mark.parametrize(
    ("gpus", "size"),
    [
        ([GpuRequest(A100_80)], 256),
        ([GpuRequest(A100_80, 2)], 512),
        ([GpuRequest(L4)], 64),
        ([GpuRequest(H100, 4)], 1024),
        ([GpuRequest(A100_40), GpuRequest(L4)], 256),  # 192 rounds up to 256
        ([GpuRequest(PciId(0x10DE, 0x2335))], 512),  # H200
    ],
)
def test_mmio_sizes(gpus: list[GpuRequest], size: int) -> None:
    plan = plan_mmio(gpus)
    assert plan.size_gb == size
    assert plan.vmx_keys == keys(size)
    assert not plan.unknown


def test_t4_needs_no_mmio() -> None:
    plan = plan_mmio([GpuRequest(T4, 2)])
    assert plan.size_gb is None and plan.vmx_keys == {}
    assert not plan.unknown
    assert "no 64-bit MMIO needed" in plan.lines[0]


def test_unknown_device_without_mmio_gb_gets_no_keys_and_says_so() -> None:
    plan = plan_mmio([GpuRequest(UNKNOWN)])
    assert plan.vmx_keys == {}
    assert plan.unknown == [UNKNOWN]
    assert "not in ovapipe's MMIO table" in plan.lines[0] and "--mmio-gb" in plan.lines[0]


def test_unknown_device_with_mmio_gb() -> None:
    plan = plan_mmio([GpuRequest(UNKNOWN, 3)], mmio_gb_for_unknown=48)
    assert plan.vmx_keys == keys(256)  # 3 x 48 = 144 -> 256
    assert not plan.unknown


def test_known_plus_unknown_without_mmio_gb_counts_the_known_ones() -> None:
    plan = plan_mmio([GpuRequest(L4), GpuRequest(UNKNOWN)])
    assert plan.size_gb == 64 and plan.unknown == [UNKNOWN]


@given(st.integers(min_value=1, max_value=1 << 20))
def test_power_of_two_rounding(value: int) -> None:
    rounded = next_power_of_two(value)
    assert rounded >= value and rounded & (rounded - 1) == 0 and rounded < 2 * value + 1


def test_table_values() -> None:
    by_model = {need.model: need.gb for need in MMIO_GB_BY_DEVICE.values()}
    assert by_model == {
        "Tesla T4": 0, "H100": 256, "H200": 512, "A100 80GB": 256, "A100 40GB": 128,
        "A40": 128, "L40": 128, "L20": 128, "L4": 64, "A30": 64, "A10": 64, "V100": 64,
    }


def test_table_ids_match_pci_ids_names() -> None:
    """Every table ID that the system pci.ids names carries the model in its name."""
    db = database()
    for pci_id, need in MMIO_GB_BY_DEVICE.items():
        name = db.device_name(pci_id)
        if name is None or "[" not in name:
            continue  # newer than the installed pci.ids (see MMIO_SOURCE)
        model = need.model.replace("Tesla ", "").split(" ")[0]
        assert model in name, (pci_id, name, need)


def test_pci_device_entries_are_decimal_and_repeated() -> None:
    assert pci_device_entries([GpuRequest(T4, 2), GpuRequest(UNKNOWN)]) == [
        {"deviceId": 7864, "vendorId": 4318},
        {"deviceId": 7864, "vendorId": 4318},
        {"deviceId": 0x0BD5, "vendorId": 32902},
    ]


def test_describe_pci_id() -> None:
    text = describe_pci_id("10de:20b5")
    assert "vendorId: 4318  (0x10de)" in text and "deviceId: 8373  (0x20b5)" in text
    assert "256 GB 64-bit MMIO per GPU" in text
