"""What an image is: build facts (written into the OVF ProductSection) and hardware sizes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from ovapipe import __version__
from ovapipe.errors import ConfigError
from ovapipe.hardware import FIRMWARE_EFI, FIRMWARES, GPU_MIN_VMX, parse_vmx

UBUNTU_64_OS_TYPE: Final = "ubuntu64Guest"
UBUNTU_64_CIM_ID: Final = 94  # CIM_OperatingSystem "Ubuntu 64-Bit"


@dataclass(frozen=True)
class HardwareSizes:
    """The VM an OVA describes: vCPUs, memory, guest OS type and the NIC's network name."""

    cpus: int = 2
    memory_mb: int = 4096
    network: str = "nic0"
    os_type: str = UBUNTU_64_OS_TYPE
    os_cim_id: int = UBUNTU_64_CIM_ID

    def check(self) -> None:
        if self.cpus < 1 or self.memory_mb < 4:
            raise ConfigError(f"hardware: {self.cpus} CPUs / {self.memory_mb} MB is not a VM")
        if not self.network:
            raise ConfigError("hardware: the NIC needs a network name")


@dataclass(frozen=True)
class BuildFacts:
    """Facts about one image build, as the build part knows them."""

    distro_name: str  # e.g. "ubuntu"
    distro_version: str  # e.g. "20.04"
    kubernetes_version: str  # e.g. "v1.27.3"
    image_version: str  # e.g. "ubuntu-2004-efi-kube-v1.27.3-20261128"
    build_timestamp: int  # seconds since the epoch (UTC); also every tar member's mtime
    vmx: int = GPU_MIN_VMX
    firmware: str = FIRMWARE_EFI
    secure_boot: bool = False
    git_commit: str = "unknown"
    ovapipe_version: str = __version__
    distro_arch: str = "amd64"
    containerd_version: str = ""  # e.g. "1.7.27"
    cni_version: str = ""  # e.g. "1.2.0"
    kubernetes_source_type: str = "pkg"  # image-builder's: packages, not http binaries

    @property
    def build_date(self) -> str:
        moment = dt.datetime.fromtimestamp(self.build_timestamp, tz=dt.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def check(self) -> None:
        if self.firmware not in FIRMWARES:
            raise ConfigError(
                f"firmware {self.firmware!r}: expected one of {', '.join(FIRMWARES)}"
            )
        try:
            parse_vmx(self.vmx)
        except ValueError as exc:
            raise ConfigError(f"build facts: {exc}") from None
        if self.build_timestamp < 0:
            raise ConfigError(f"build timestamp {self.build_timestamp} is before 1970")

    def properties(self) -> tuple[tuple[str, str], ...]:
        """ProductSection properties, named like image-builder's where it has one."""
        return (
            ("DISTRO_NAME", self.distro_name),
            ("DISTRO_VERSION", self.distro_version),
            ("KUBERNETES_SEMVER", self.kubernetes_version),
            ("IMAGE_VERSION", self.image_version),
            ("BUILD_DATE", self.build_date),
            ("BUILD_TIMESTAMP", str(self.build_timestamp)),
            ("VMX_VERSION", f"vmx-{self.vmx}"),
            ("FIRMWARE", self.firmware),
            ("SECURE_BOOT", "true" if self.secure_boot else "false"),
            ("OVAPIPE_VERSION", self.ovapipe_version),
            ("OVAPIPE_COMMIT", self.git_commit),
            # image-builder's keys (images/capi/hack/image-build-ova.py) CAPV tooling reads.
            ("DISTRO_ARCH", self.distro_arch),
            ("CONTAINERD_VERSION", _v(self.containerd_version)),
            ("CNI_VERSION", _v(self.cni_version)),
            ("KUBERNETES_SOURCE_TYPE", self.kubernetes_source_type),
        )


def _v(version: str) -> str:
    """image-builder records component versions as v1.2.3; unknown stays empty."""
    return "v" + version.removeprefix("v") if version else ""
