"""Shared pytest fixtures. Each part keeps its fixtures in its own clearly marked block."""

from __future__ import annotations

from typing import Any

import pytest


# ============================================================================== OVA block
# Owner: OVA part. Fixtures (built once per session into a temporary folder; treat them as
# read-only, copy before changing):
#   efi_vmdk      streamOptimized VMDK: GPT, ESP (FAT32) with \EFI\BOOT\BOOTX64.EFI, ext4 root
#   bios_vmdk     streamOptimized VMDK: MBR, one Linux partition, no ESP
#   build_facts   an ovapipe.ova.BuildFacts for test images (fixed timestamp)
#   efi_ova       an OVA assembled by ovapipe from efi_vmdk: vmx-17, EFI, passes validate-ova


@pytest.fixture(scope="session")
def efi_vmdk(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ovapipe.testdisk import make_test_disk

    return make_test_disk("efi", tmp_path_factory.mktemp("disks") / "efi.vmdk")


@pytest.fixture(scope="session")
def bios_vmdk(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from ovapipe.testdisk import make_test_disk

    return make_test_disk("bios", tmp_path_factory.mktemp("disks") / "bios.vmdk")


@pytest.fixture(scope="session")
def build_facts() -> Any:
    from ovapipe.ova import BuildFacts

    return BuildFacts(
        distro_name="ubuntu", distro_version="20.04", kubernetes_version="v1.27.3",
        image_version="ubuntu-2004-efi-kube-v1.27.3-test", build_timestamp=1_764_320_000,
        git_commit="0000000000000000000000000000000000000000",
    )


@pytest.fixture(scope="session")
def efi_ova(tmp_path_factory: pytest.TempPathFactory, efi_vmdk: Any, build_facts: Any) -> Any:
    from ovapipe.ova import assemble_ova

    out = tmp_path_factory.mktemp("ova")
    return assemble_ova(out, "ubuntu-2004-efi-test", [efi_vmdk], build_facts).path


# ========================================================================== end OVA block
