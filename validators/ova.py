"""validate-ova: the gate in front of vCenter. Every rule has a stable id (see RULES).

The file is read in place: the tar headers are walked, the descriptor and manifest are read,
then every member the manifest lists is hashed in one sequential pass in large blocks, and the
boot disk's partition table and EFI System Partition are read through a window on its member.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ovapipe.validators import gate_arguments
from ovapipe.validators.disk import check_efi_boot, check_vmdk

from ovapipe.errors import ConfigError
from ovapipe.findings import ERROR, WARNING, Finding, Report
from ovapipe.hardware import (
    FIRMWARE_BIOS,
    FIRMWARE_EFI,
    GPU_MIN_VMX,
    describe_vmx_need,
    min_esxi_for,
    vmx_name,
)
from ovapipe.inspection import RULES as IMAGE_RULES
from ovapipe.inspection import ImageExpectations
from ovapipe.ova.archive import Member, TarScan, is_safe_member_name
from ovapipe.ova.descriptor import Descriptor, check_consistency
from ovapipe.ova.descriptor_check import lowest_type_reason
from ovapipe.ova.manifest import ManifestEntry
from ovapipe.ova.members import CERT_SUFFIX, SBOM_SUFFIX
from ovapipe.ova.reader import (
    MemberWindow,
    OvaFormatError,
    descriptor_members,
    find_manifest,
    open_file,
    read_descriptor,
    read_manifest,
    read_member_bytes,
    scan_file,
)

if TYPE_CHECKING:
    from cryptography import x509

HASH_BLOCK: Final = 8 * 1024 * 1024
MAX_FINDINGS_PER_RULE: Final = 20

# rule id -> (severity, what it means); the README and tests use these ids.
RULES: Final[dict[str, tuple[str, str]]] = {
    "archive.unreadable": (ERROR, "not a tar archive, or a damaged header"),
    "archive.truncated": (ERROR, "the archive ends inside a header or a member"),
    "archive.link-member": (ERROR, "a symbolic or hard link member"),
    "archive.not-regular": (ERROR, "a directory, device, FIFO or unknown member type"),
    "archive.path-traversal": (ERROR, "an absolute member name or one with '..'"),
    "archive.duplicate": (ERROR, "two members with the same name"),
    "archive.no-descriptor": (ERROR, "no .ovf member"),
    "archive.ovf-not-first": (ERROR, "the .ovf is not the first member"),
    "archive.extra-descriptor": (ERROR, "more than one .ovf member"),
    "archive.missing-file": (ERROR, "a References/File that is not in the archive"),
    "archive.size-mismatch": (ERROR, "a member whose size differs from its ovf:size"),
    "archive.unreferenced": (WARNING, "a member the descriptor does not reference"),
    "descriptor.unsafe-xml": (ERROR, "DTD, entity declarations or external references"),
    "descriptor.invalid": (ERROR, "not an OVF descriptor vCenter can read"),
    "descriptor.encoding": (ERROR, "bytes not in the encoding the XML declares, or one not read"),
    "descriptor.inconsistent": (ERROR, "References, DiskSection and hardware Items disagree"),
    "manifest.missing": (WARNING, "no manifest: nothing proves the files are intact"),
    "manifest.invalid": (ERROR, "a manifest line that is not ALGORITHM(file)= hex"),
    "manifest.mismatch": (ERROR, "a member whose digest differs from the manifest"),
    "manifest.unlisted": (ERROR, "a member the manifest does not list"),
    "manifest.missing-file": (ERROR, "a manifest entry for a file not in the archive"),
    "hardware.vmx-missing": (ERROR, "no vmx-NN VirtualSystemType"),
    "hardware.vmx-too-old": (ERROR, "vmx-NN below --min-vmx"),
    "boot.firmware-missing": (ERROR, "no firmware setting: vCenter imports the VM as BIOS"),
    "boot.firmware-mismatch": (ERROR, "firmware differs from --firmware"),
    "boot.bootorder-with-efi": (WARNING, "BootOrderSection in an EFI image"),
    "boot.secure-boot-without-efi": (WARNING, "secure boot requested with BIOS firmware"),
    "disk.not-vmdk": (ERROR, "a disk without a valid VMDK sparse header"),
    "disk.not-stream-optimized": (ERROR, "a disk that is not a streamOptimized VMDK"),
    "disk.capacity-mismatch": (ERROR, "a VMDK larger than its DiskSection capacity"),
    "disk.unreadable": (ERROR, "the boot disk's grains or partition table cannot be read"),
    "disk.no-esp": (ERROR, "an EFI image whose boot disk has no EFI System Partition"),
    "disk.esp-not-fat": (ERROR, "an EFI System Partition without a FAT file system"),
    "disk.no-efi-loader": (ERROR, "an ESP without an x86-64 EFI loader"),
    "signature.unsigned": (ERROR, "no NAME.cert signature, but --require-signature"),
    "signature.invalid": (ERROR, "a .cert member that is not a signature line and certificates"),
    "signature.bad": (ERROR, "the signature does not verify over the manifest's bytes"),
    "signature.untrusted": (ERROR, "the signer is neither pinned nor issued by a --trust CA"),
    "signature.expired": (ERROR, "a certificate on the signer's path is outside its validity"),
    "signature.order": (ERROR, "the .cert member does not directly follow the .mf"),
    "signature.no-manifest": (ERROR, "a signature without the manifest it signs"),
    "signature.weak-digest": (WARNING, "a SHA-1 signature (older ovftool); re-sign with SHA-256"),
    "signature.signer-unchecked": (WARNING, "a signature checked without --trust: any key fits"),
    "sbom.invalid": (ERROR, "a NAME.spdx.json member that is not an SPDX 2.3 JSON document"),
    **IMAGE_RULES,  # --inspect: the boot disk's root file system (ovapipe.inspection)
}

_IMAGE_BUILDER_619: Final = "kubernetes-sigs/image-builder#619"


@dataclass
class _Validation:
    path: Path
    fd: int
    report: Report
    min_vmx: int
    firmware: str
    check_digests: bool
    require_signature: bool = False
    trust: tuple[x509.Certificate, ...] | None = None
    inspect: bool | ImageExpectations = False
    scan: TarScan = field(default_factory=TarScan)
    incomplete: set[str] = field(default_factory=set)
    members_by_name: dict[str, Member] = field(default_factory=dict)

    def error(self, rule: str, message: str) -> None:
        self.report.error(rule, message)

    def warning(self, rule: str, message: str) -> None:
        self.report.warning(rule, message)

    def member(self, name: str) -> Member | None:
        return self.members_by_name.get(name)

    # -- archive ------------------------------------------------------------------------------

    def check_archive(self) -> bool:
        self.scan = scan_file(self.fd)
        if self.scan.unreadable:
            detail = self.scan.unreadable
            where = "" if self.scan.members else " (not a tar archive)"
            self.error("archive.unreadable", f"{self.path.name}{where}: {detail}")
        if self.scan.truncated:
            self.error("archive.truncated", f"{self.path.name} is truncated: {self.scan.truncated}")
        self.incomplete = {m.name for m in self.scan.members if m.end > self.scan.file_size}
        for member in self.scan.members:
            self.members_by_name.setdefault(member.name, member)
        if not self.scan.members:
            return False
        seen: set[str] = set()
        for member in self.scan.members:
            name = member.name
            if member.kind in ("symlink", "hardlink"):
                self.error(
                    "archive.link-member",
                    f"member '{name}' is a {member.kind} to '{member.link_target}'; an OVA holds "
                    "regular files only",
                )
            elif member.kind != "file":
                self.error(
                    "archive.not-regular",
                    f"member '{name}' is a {member.kind}; an OVA holds regular files only",
                )
            if not is_safe_member_name(name):
                self.error(
                    "archive.path-traversal",
                    f"member '{name}' is not a relative path inside the archive",
                )
            if name in seen:
                self.error("archive.duplicate", f"member '{name}' appears more than once")
            seen.add(name)
        return True

    def descriptor_member(self) -> Member | None:
        descriptors = descriptor_members(self.scan.members)
        if not descriptors:
            self.error("archive.no-descriptor", f"{self.path.name} holds no .ovf descriptor")
            return None
        first = self.scan.members[0]
        if first is not descriptors[0]:
            self.error(
                "archive.ovf-not-first",
                f"the first member is '{first.name}', not the descriptor '{descriptors[0].name}'; "
                "vCenter and ovftool read the OVF first",
            )
        for extra in descriptors[1:]:
            self.error(
                "archive.extra-descriptor",
                f"member '{extra.name}' is a second descriptor beside '{descriptors[0].name}'",
            )
        return descriptors[0]

    # -- descriptor ---------------------------------------------------------------------------

    def parse(self, member: Member) -> Descriptor | None:
        if member.name in self.incomplete or member.kind != "file":
            return None
        try:
            descriptor = read_descriptor(self.fd, member)
        except OvaFormatError as exc:
            self.error(exc.rule, exc.message)
            return None
        for problem in check_consistency(descriptor):
            self.error("descriptor.inconsistent", f"{member.name}: {problem}")
        return descriptor

    def check_references(self, descriptor: Descriptor, ovf_name: str) -> None:
        referenced = {ovf_name}
        for ref in descriptor.files:
            referenced.add(ref.href)
            member = self.member(ref.href)
            if member is None:
                self.error(
                    "archive.missing-file",
                    f"{ovf_name}: References/File '{ref.href}' (id {ref.id}) is not in the "
                    "archive",
                )
            elif ref.size is not None and member.size != ref.size and (
                member.name not in self.incomplete
            ):
                self.error(
                    "archive.size-mismatch",
                    f"member '{ref.href}' is {member.size} bytes but its References/File "
                    f"ovf:size is {ref.size}",
                )
        for member in self.scan.members:
            lowered = member.name.lower()
            if member.name in referenced or lowered.endswith((".mf", CERT_SUFFIX,
                                                              SBOM_SUFFIX)):
                continue
            self.warning(
                "archive.unreferenced",
                f"member '{member.name}' is not referenced by {ovf_name}; vCenter ignores it",
            )

    def check_hardware(self, descriptor: Descriptor, ovf_name: str) -> None:
        self.report.vmx = vmx_name(descriptor.vmx) if descriptor.vmx else descriptor.vmx_text
        if descriptor.vmx is None:
            self.error(
                "hardware.vmx-missing",
                f"{ovf_name}: VirtualSystemType "
                f"{repr(descriptor.vmx_text) if descriptor.vmx_text else 'is missing'}"
                f"{' names no vmx-NN version' if descriptor.vmx_text else ''}; at least "
                f"{vmx_name(self.min_vmx)} is required ({describe_vmx_need(self.min_vmx)})",
            )
        elif descriptor.vmx < self.min_vmx and len(descriptor.vmx_types) > 1:
            self.error("hardware.vmx-too-old", f"{ovf_name}: {lowest_type_reason(descriptor)}; "
                       f"at least {vmx_name(self.min_vmx)} is required "
                       f"({describe_vmx_need(self.min_vmx)})")
        elif descriptor.vmx < self.min_vmx:
            runs_on = min_esxi_for(descriptor.vmx)
            self.error(
                "hardware.vmx-too-old",
                f"{ovf_name}: VirtualSystemType is {vmx_name(descriptor.vmx)}"
                f"{f' (ESXi {runs_on}+)' if runs_on else ''}; at least "
                f"{vmx_name(self.min_vmx)} is required ({describe_vmx_need(self.min_vmx)})",
            )

    def check_boot(self, descriptor: Descriptor, ovf_name: str) -> None:
        self.report.firmware = descriptor.firmware
        self.report.secure_boot = descriptor.secure_boot
        if descriptor.firmware is None:
            if self.firmware != FIRMWARE_BIOS:
                self.error(
                    "boot.firmware-missing",
                    f'{ovf_name}: no <vmw:Config vmw:key="firmware"> in VirtualHardwareSection; '
                    f"vCenter imports the VM as BIOS, but {self.firmware} is required",
                )
        elif descriptor.firmware != self.firmware:
            self.error(
                "boot.firmware-mismatch",
                f"{ovf_name}: firmware is '{descriptor.firmware}', {self.firmware} is required",
            )
        if descriptor.has_boot_order_section and descriptor.firmware == FIRMWARE_EFI:
            self.warning(
                "boot.bootorder-with-efi",
                f"{ovf_name}: a vmw:BootOrderSection in an EFI image makes vCenter show it as "
                f"BIOS ({_IMAGE_BUILDER_619}); remove the section",
            )
        if descriptor.secure_boot and descriptor.firmware != FIRMWARE_EFI:
            self.warning(
                "boot.secure-boot-without-efi",
                f"{ovf_name}: secure boot is enabled but firmware is "
                f"{descriptor.firmware or 'BIOS (missing)'}; secure boot needs EFI",
            )

    # -- manifest and digests -----------------------------------------------------------------

    def manifest_entries(self, ovf: Member | None) -> dict[str, ManifestEntry]:
        manifest = find_manifest(self.scan.members, ovf)
        if manifest is None:
            self.warning(
                "manifest.missing",
                f"{self.path.name} has no manifest (.mf): file digests cannot be checked",
            )
            return {}
        if manifest.name in self.incomplete:
            return {}
        try:
            entries = read_manifest(self.fd, manifest)
        except OvaFormatError as exc:
            self.error(exc.rule, exc.message)
            return {}
        for name in entries:
            if name not in self.members_by_name:
                self.error(
                    "manifest.missing-file",
                    f"{manifest.name} lists '{name}', which is not in the archive",
                )
        for member in self.scan.members:
            if member.name == manifest.name or member.name.lower().endswith(CERT_SUFFIX):
                continue
            if member.kind == "file" and member.name not in entries:
                self.error(
                    "manifest.unlisted",
                    f"member '{member.name}' is not listed in {manifest.name}",
                )
        return entries

    def check_digests_in_one_pass(self, entries: dict[str, ManifestEntry]) -> None:
        targets = sorted(
            (m for m in self.scan.members
             if m.name in entries and m.kind == "file" and m.name not in self.incomplete),
            key=lambda m: m.offset,
        )
        if not targets:
            return
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        buffer = bytearray(HASH_BLOCK)
        view = memoryview(buffer)
        for member in targets:
            entry = entries[member.name]
            digest = entry.new_hash()
            position, end = member.offset, member.end
            while position < end:
                count = os.preadv(self.fd, [view[: min(HASH_BLOCK, end - position)]], position)
                if count <= 0:
                    break
                digest.update(view[:count])
                position += count
            actual = digest.hexdigest()
            if not entry.matches(actual):
                self.error(
                    "manifest.mismatch",
                    f"member '{member.name}': {entry.algorithm} is {actual}, the manifest says "
                    f"{entry.digest}",
                )

    # -- signature ----------------------------------------------------------------------------

    def check_signature(self, ovf: Member | None) -> None:
        certs = [m for m in self.scan.members if m.name.lower().endswith(CERT_SUFFIX)]
        if not certs:
            if self.require_signature:
                self.error("signature.unsigned",
                           f"{self.path.name} has no .cert member: it is not signed")
            return
        cert_member = certs[0]
        manifest = find_manifest(self.scan.members, ovf)
        if manifest is None or manifest.name in self.incomplete:
            self.error("signature.no-manifest",
                       f"member '{cert_member.name}' signs a manifest the archive does not hold")
            return
        position = self.scan.members.index(cert_member)
        if position == 0 or self.scan.members[position - 1] is not manifest:
            self.error("signature.order",
                       f"member '{cert_member.name}' must directly follow '{manifest.name}' "
                       "(.ovf, .mf, .cert, then the disks), as ovftool writes and reads it")
        if cert_member.name in self.incomplete:
            return
        # cryptography loads OpenSSL: imported only for OVAs that carry a signature.
        from ovapipe.ova.signing import (
            MAX_CERT_MEMBER_BYTES,
            SignatureFormatError,
            parse_cert_member,
            verify,
        )

        try:
            cert = parse_cert_member(
                read_member_bytes(self.fd, cert_member, MAX_CERT_MEMBER_BYTES), cert_member.name)
            manifest_bytes = read_member_bytes(self.fd, manifest, MAX_CERT_MEMBER_BYTES * 4)
        except SignatureFormatError as exc:
            self.error("signature.invalid", exc.message)
            return
        except ValueError as exc:
            self.error("signature.invalid", f"{cert_member.name}: {exc}")
            return
        check = verify(cert, manifest.name, manifest_bytes, self.trust)
        self.report.signature = check.as_dict()
        for problem in check.problems:
            self.error(problem.rule, f"{cert_member.name}: {problem.message}")
        if cert.algorithm == "SHA1":
            self.warning("signature.weak-digest",
                         f"{cert_member.name}: signed with SHA-1; re-sign with SHA-256")
        if self.trust is None and not check.problems:
            self.warning("signature.signer-unchecked",
                         f"{cert_member.name}: signed by {check.signer} (SHA-256 fingerprint "
                         f"{check.fingerprint}); pass --trust CA.pem to check who that is")

    # -- SBOM ---------------------------------------------------------------------------------

    def check_sbom(self) -> None:
        for member in self.scan.members:
            if not member.name.lower().endswith(SBOM_SUFFIX) or member.kind != "file" or (
                member.name in self.incomplete
            ):
                continue
            from ovapipe.sbom import MAX_SBOM_BYTES, SbomError, summarize  # only for an SBOM

            try:
                summary = summarize(member.name,
                                    read_member_bytes(self.fd, member, MAX_SBOM_BYTES))
            except SbomError as exc:
                self.error("sbom.invalid", exc.message)
                continue
            except ValueError as exc:
                self.error("sbom.invalid", f"{member.name}: {exc}")
                continue
            self.report.sbom = summary.as_dict()
            return

    # -- disks --------------------------------------------------------------------------------

    def check_disks(self, descriptor: Descriptor) -> None:
        for position, disk in enumerate(descriptor.disks):
            ref = descriptor.disk_file(disk)
            member = self.member(ref.href) if ref else None
            if member is None or member.name in self.incomplete or member.kind != "file":
                continue
            with MemberWindow(self.fd, member) as window:
                result = check_vmdk(window, disk, member.name, disk.capacity_bytes)
                self.report.findings.extend(result.findings)
                if position == 0 and result.header is not None and (
                    descriptor.firmware == FIRMWARE_EFI
                ):
                    self.report.findings.extend(check_efi_boot(window, disk, member.name))
                if position == 0 and result.header is not None and self.inspect is not False:
                    self.inspect_image(window, descriptor, member.name)

    def inspect_image(self, window: MemberWindow, descriptor: Descriptor, member: str) -> None:
        from ovapipe.inspection import inspect_root
        from ovapipe.ova.grains import WindowFile
        from ovapipe.rootfs import RootFsError, open_root_fs

        expect = self.inspect if isinstance(self.inspect, ImageExpectations) else (
            ImageExpectations.from_descriptor(descriptor.product) or ImageExpectations(""))
        label = f"boot disk (member '{member}')"
        try:
            root = open_root_fs(WindowFile(window))  # type: ignore[arg-type]
        except RootFsError as exc:
            self.error("image.unreadable", f"{label}: {exc.message}")
            return
        inspection = inspect_root(root, expect, label)
        self.report.findings.extend(inspection.findings)
        self.report.inspection = inspection.as_dict()

    def run(self) -> None:
        if not self.check_archive():
            return
        ovf = self.descriptor_member()
        descriptor = self.parse(ovf) if ovf else None
        if ovf is not None and descriptor is not None:
            self.check_references(descriptor, ovf.name)
            self.check_hardware(descriptor, ovf.name)
            self.check_boot(descriptor, ovf.name)
        entries = self.manifest_entries(ovf)
        self.check_signature(ovf)
        self.check_sbom()
        if self.check_digests:
            self.check_digests_in_one_pass(entries)
        if descriptor is not None:
            self.check_disks(descriptor)


def validate_ova(
    path: Path | str,
    min_vmx: str | int = GPU_MIN_VMX,
    firmware: str = FIRMWARE_EFI,
    check_digests: bool = True,
    *,
    require_signature: bool = False,
    trust: Path | str | None = None,
    inspect: bool | ImageExpectations = False,
) -> Report:
    """Check an OVA; a Report with findings. ConfigError (exit 2) if it cannot be opened.

    ``check_digests=False`` skips hashing (the uploader verifies digests on its own read).
    A signature is checked whenever present; ``require_signature`` makes its absence an
    error, and ``trust`` (a PEM file of CA or pinned signer certificates) who may sign.
    ``inspect`` reads the boot disk's root file system (image.* rules): True takes the
    expected versions from the descriptor's ProductSection, or pass them.
    """
    required_vmx = gate_arguments(min_vmx, firmware)
    anchors = None
    if trust is not None:
        from ovapipe.ova.signing import load_trust

        anchors = load_trust(Path(trust))
    if require_signature and anchors is None:
        raise ConfigError("--require-signature needs --trust CA.pem|CERT.pem (or "
                          "ovapipe.signing.trust in invoke.yaml): a signature by any key "
                          "proves nothing")
    path = Path(path)
    report = Report(path=str(path))
    fd = open_file(path)
    try:
        _Validation(path, fd, report, required_vmx, firmware, check_digests,
                    require_signature, anchors, inspect).run()
    finally:
        os.close(fd)
    report.findings = _capped(report.findings)
    return report


def _capped(findings: list[Finding]) -> list[Finding]:
    """At most MAX_FINDINGS_PER_RULE findings of one rule, then one that counts the rest."""
    kept: list[Finding] = []
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
        if counts[finding.rule] <= MAX_FINDINGS_PER_RULE:
            kept.append(finding)
    for rule, count in counts.items():
        if count > MAX_FINDINGS_PER_RULE:
            severity = next(f.severity for f in findings if f.rule == rule)
            kept.append(Finding(
                rule, severity, f"... and {count - MAX_FINDINGS_PER_RULE} more like the above",
            ))
    return kept


__all__ = ["RULES", "Finding", "validate_ova"]
