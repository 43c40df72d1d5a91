"""Offline image inspection: the shipped disk's root file system, checked without booting it.

What image-builder's goss checks ask over SSH during a build, read here from the exported disk:
Kubernetes and containerd at the versions the build asked for, cloud-init reading CAPV's
bootstrap data from VMware guestinfo, and nothing left that must be unique per clone or that
lets the build user log in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ovapipe.ext4 import Ext4Error
from ovapipe.findings import ERROR, Finding
from ovapipe.rootfs import Package, RootFs, RootFsError, installed_packages

KUBERNETES_PACKAGES: Final = ("kubelet", "kubeadm", "kubectl")
CONTAINERD_PACKAGES: Final = ("containerd", "containerd.io")
CLOUD_CFG: Final = "/etc/cloud/cloud.cfg"
CLOUD_CFG_D: Final = "/etc/cloud/cloud.cfg.d"
MAX_CONFIG_BYTES: Final = 1024 * 1024
GUESTINFO_DATASOURCE: Final = "VMware"
DEFAULT_BUILDER: Final = "builder"
_DATASOURCE_FLOW: Final = re.compile(r"^datasource_list\s*:\s*\[([^\]]*)\]", re.MULTILINE)
_DATASOURCE_BLOCK: Final = re.compile(r"^datasource_list\s*:\s*\n((?:\s+-\s*\S+.*\n?)+)",
                                      re.MULTILINE)

RULES: Final[dict[str, tuple[str, str]]] = {
    "image.unreadable": (ERROR, "the boot disk's root file system cannot be read"),
    "image.package-missing": (ERROR, "kubelet, kubeadm, kubectl or containerd is not installed"),
    "image.package-version": (ERROR, "an installed version differs from the one asked for"),
    "image.no-guestinfo": (ERROR, "cloud-init does not read VMware guestinfo (CAPV's data)"),
    "image.ssh-host-keys": (ERROR, "SSH host keys left from the build: clones would share them"),
    "image.machine-id": (ERROR, "a machine-id left from the build: clones would share it"),
    "image.builder-password": (ERROR, "the build user can still log in with a password"),
}


@dataclass(frozen=True)
class ImageExpectations:
    kubernetes_version: str
    containerd_version: str = ""  # empty: any containerd
    builder_user: str = DEFAULT_BUILDER

    @classmethod
    def from_descriptor(cls, product: Mapping[str, str]) -> ImageExpectations | None:
        """From the OVA's ProductSection (KUBERNETES_SEMVER, CONTAINERD_VERSION)."""
        kubernetes = product.get("KUBERNETES_SEMVER", "")
        if not kubernetes:
            return None
        return cls(kubernetes, product.get("CONTAINERD_VERSION", ""))


def upstream_version(version: str) -> str:
    """Debian version -> upstream part: '1:1.30.5-1.1' -> '1.30.5'."""
    without_epoch = version.split(":", 1)[1] if ":" in version.split("-", 1)[0] else version
    return without_epoch.rsplit("-", 1)[0] if "-" in without_epoch else without_epoch


def _bare(version: str) -> str:
    return version.strip().removeprefix("v")


@dataclass
class Inspection:
    findings: list[Finding]
    packages: dict[str, str]  # the checked packages' installed versions
    checks: tuple[str, ...] = tuple(RULES)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": not self.findings, "packages": self.packages,
                "checked": [r for r in self.checks if r != "image.unreadable"]}


def _packages(packages: list[Package], expect: ImageExpectations, label: str,
              findings: list[Finding]) -> dict[str, str]:
    installed = {p.name: p.version for p in packages}
    seen: dict[str, str] = {}
    wanted: list[tuple[str, tuple[str, ...], str]] = [
        (name, (name,), expect.kubernetes_version) for name in KUBERNETES_PACKAGES]
    wanted.append(("containerd", CONTAINERD_PACKAGES, expect.containerd_version))
    for label_name, names, version in wanted:
        found = next((n for n in names if n in installed), None)
        if found is None:
            findings.append(Finding("image.package-missing", ERROR,
                                    f"{label}: {label_name} is not installed (dpkg status)"))
            continue
        seen[found] = installed[found]
        if version and upstream_version(installed[found]) != _bare(version):
            findings.append(Finding(
                "image.package-version", ERROR,
                f"{label}: {found} {installed[found]} is installed, the build asked for "
                f"{_bare(version)}",
            ))
    return seen


def _datasources(text: str) -> list[str] | None:
    flow = _DATASOURCE_FLOW.findall(text)
    if flow:
        return [item.strip().strip("'\"") for item in flow[-1].split(",") if item.strip()]
    block = _DATASOURCE_BLOCK.findall(text)
    if block:
        return [line.strip()[1:].strip().strip("'\"") for line in block[-1].splitlines()
                if line.strip().startswith("-")]
    return None


def _guestinfo(root: RootFs, label: str) -> list[Finding]:
    volume = root.volume
    files = [CLOUD_CFG, *sorted(f"{CLOUD_CFG_D}/{name}" for name in volume.listdir(CLOUD_CFG_D)
                                if name.endswith(".cfg"))]
    effective: list[str] | None = None
    where = ""
    for path in files:
        data = volume.read_file(path, MAX_CONFIG_BYTES)
        if data is None:
            continue
        found = _datasources(data.decode("utf-8", "replace"))
        if found is not None:
            effective, where = found, path  # later files override earlier ones
    if effective is None:
        return [Finding("image.no-guestinfo", ERROR,
                        f"{label}: no datasource_list in {CLOUD_CFG} or {CLOUD_CFG_D}/*.cfg: "
                        "cloud-init probes every datasource, and CAPV's guestinfo data may be "
                        "missed (packer/scripts/enable-guestinfo.sh sets it)")]
    if GUESTINFO_DATASOURCE not in effective:
        return [Finding("image.no-guestinfo", ERROR,
                        f"{label}: {where} sets datasource_list [{', '.join(effective)}] "
                        f"without {GUESTINFO_DATASOURCE}: clones never read CAPV's bootstrap "
                        "data from guestinfo")]
    return []


def _leftovers(root: RootFs, expect: ImageExpectations, label: str) -> list[Finding]:
    volume = root.volume
    findings: list[Finding] = []
    keys = sorted(name for name in volume.listdir("/etc/ssh") if name.startswith("ssh_host_"))
    if keys:
        findings.append(Finding("image.ssh-host-keys", ERROR,
                                f"{label}: /etc/ssh holds {', '.join(keys)}; every clone would "
                                "share these host keys (remove them; cloud-init makes new ones)"))
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        inode = volume.lookup(path, follow=False)
        if inode is None or not inode.is_file:
            continue
        value = volume.read(inode, 4096).strip()
        if value and value != b"uninitialized":
            shown = value[:32].decode("ascii", "replace")
            findings.append(Finding("image.machine-id", ERROR,
                                    f"{label}: {path} is set ({shown}); clones would share it "
                                    "(truncate it to empty)"))
    shadow = volume.read_file("/etc/shadow", MAX_CONFIG_BYTES) or b""
    for line in shadow.decode("utf-8", "replace").splitlines():
        user, _, rest = line.partition(":")
        if user != expect.builder_user:
            continue
        password = rest.split(":", 1)[0]
        if not password.startswith(("!", "*")):
            state = "has an empty password" if not password else "has a usable password hash"
            findings.append(Finding("image.builder-password", ERROR,
                                    f"{label}: the build user '{user}' {state} in /etc/shadow "
                                    "(remove the user, or lock it with passwd -l)"))
    return findings


def inspect_root(root: RootFs, expect: ImageExpectations, label: str) -> Inspection:
    """Every image.* rule over one root file system."""
    findings: list[Finding] = []
    try:
        packages = _packages(installed_packages(root), expect, label, findings)
        findings += _guestinfo(root, label)
        findings += _leftovers(root, expect, label)
    except RootFsError as exc:
        return Inspection([Finding("image.unreadable", ERROR, f"{label}: {exc.message}")], {})
    except Ext4Error as exc:
        return Inspection([Finding("image.unreadable", ERROR,
                                   f"{label}: root file system: {exc.message}")], {})
    return Inspection(findings, packages)
