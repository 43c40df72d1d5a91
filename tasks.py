"""ovapipe's command line: thin Invoke tasks over the ovapipe package.

Each task parses its flags, calls one function, prints the result and maps errors to exit
codes (1 = a check failed, 2 = usage/config error) through ``ovapipe.cli.exits``.
Heavy modules are imported inside the tasks so that ``invoke --list`` stays fast.
"""

from __future__ import annotations

from functools import partial

import invoke
from invoke import Collection
from invoke.context import Context

from ovapipe.bounded import refuse_hostile_project_config
from ovapipe.cli import exits, number_flag

# Before Invoke reads invoke.yaml (after tasks.py is imported): bounded like every input.
refuse_hostile_project_config(__file__)

# Long flags only: automatic short flags collide (-h, -m) and read ambiguously in scripts.
task = partial(invoke.task, auto_shortflags=False)

# Every flag that names a vCenter object takes what govc takes (ovapipe.vsphere.resolve).
PATHS = ("Inventory paths as govc reads them: absolute (/DC0/vm/x), relative to the "
         "datacenter's folder of that kind, a name found below it, or a glob")

LAYER_HELP = {
    "profile": "OS profile from vars/os/ (default: ubuntu-2004-efi)",
    "var_file": "extra variable file layered on top (repeatable; later wins)",
    "set_": "KEY=VALUE override, applied last (repeatable)",
    "out": "output folder (default: output/)",
}


@task(
    help={**LAYER_HELP, "format": "packer (default) or image-builder (for PACKER_VAR_FILES)"},
    iterable=["var_file", "set_"],
)
def vars(c: Context, profile="ubuntu-2004-efi", var_file=None, set_=None, out="output",
         format="packer"):
    """Merge and check Packer variables; write packer-vars.json."""
    from pathlib import Path

    from ovapipe.varfiles import describe_resolved, resolve, site_var_files, write_vars

    with exits():
        var_files = [*site_var_files(c.config.get("ovapipe", {})), *(var_file or [])]
        resolved = resolve(profile, var_files, set_ or [])
        path = write_vars(resolved, Path(out), format)
    print(describe_resolved(resolved, path))


@task(
    name="build-ova",
    help={
        **LAYER_HELP,
        "on_error": "cleanup (default): delete what the build made; abort: keep it for debugging",
        "keep_vm": "keep the build VM in vCenter after its disks were exported",
        "sign": "sign the OVA (NAME.cert) with the key and certificate of invoke.yaml's "
                "ovapipe.signing (key from key_file or the variable key_env, default "
                "OVAPIPE_SIGNING_KEY)",
    },
    iterable=["var_file", "set_"],
)
def build_ova(c: Context, profile="ubuntu-2004-efi", var_file=None, set_=None, out="output",
              on_error="cleanup", keep_vm=False, sign=False):
    """Build the node image with Packer and assemble a validated OVA."""
    from pathlib import Path

    from ovapipe.build import BuildRequest, build_ova, describe_result
    from ovapipe.config import signing_settings
    from ovapipe.iso import iso_settings
    from ovapipe.varfiles import site_var_files

    with exits():
        settings = c.config.get("ovapipe", {})
        signer = None
        if sign:
            from ovapipe.ova.signing import signer_from

            signer = signer_from(signing_settings(settings))
        var_files = [*site_var_files(settings), *(var_file or [])]
        result = build_ova(BuildRequest(
            profile=profile, var_files=var_files, sets=set_ or [], out=Path(out),
            on_error=on_error, keep_vm=keep_vm, signer=signer, iso=iso_settings(settings),
        ))
    print(describe_result(result))


@task(
    name="validate-ova",
    help={
        "path": "the OVA file to check",
        "min_vmx": "lowest acceptable virtual hardware version: 17 or vmx-17 (default)",
        "firmware": "required firmware: efi (default) or bios",
        "json": "print one JSON object instead of a report",
        "require_signature": "fail unless a trusted signer signed the OVA (NAME.cert); "
                             "default: invoke.yaml ovapipe.signing.require",
        "trust": "PEM file of the CA certificate(s) or pinned signer certificate(s) "
                 "(default: invoke.yaml ovapipe.signing.trust)",
        "inspect": "also read the boot disk's root file system (image.* rules): Kubernetes "
                   "and containerd at the descriptor's versions, guestinfo, no build leftovers",
    },
)
def validate_ova(c: Context, path, min_vmx="17", firmware="efi", json=False,
                 require_signature=False, trust=None, inspect=False):
    """Check an OVA: archive, descriptor, manifest, signature, vmx, firmware, disks, ESP."""
    from ovapipe.validators.ova import validate_ova as check_ova

    from ovapipe.cli import emit_report
    from ovapipe.config import signing_settings

    with exits():
        signing = signing_settings(c.config.get("ovapipe", {}))
        report = check_ova(path, min_vmx=min_vmx, firmware=firmware,
                           require_signature=require_signature or signing.require,
                           trust=trust or signing.trust, inspect=inspect)
    emit_report(report, json)


@task(
    name="verify-iso",
    help={
        "iso": "the ISO's file name as SHA256SUMS lists it, or a local ISO file to hash",
        "checksum": "sha256:HEX the build will use (Packer's iso_checksum), when no local ISO",
        "sha256sums": "the release's SHA256SUMS (default: invoke.yaml ovapipe.iso.sha256sums)",
        "keyring": "the pinned keyring (default: invoke.yaml ovapipe.iso.keyring)",
    },
)
def verify_iso(c: Context, iso, checksum=None, sha256sums=None, keyring=None):
    """Check an installer ISO against its release's signed SHA256SUMS (gpgv, offline)."""
    from dataclasses import replace
    from pathlib import Path

    from ovapipe.errors import CheckFailed
    from ovapipe.iso import iso_settings
    from ovapipe.iso import verify_iso as verify

    with exits():
        settings = iso_settings(c.config.get("ovapipe", {}))
        local = Path(iso) if Path(iso).is_file() else None
        settings = replace(
            settings, local_iso=local or settings.local_iso,
            sha256sums=Path(sha256sums) if sha256sums else settings.sha256sums,
            keyring=Path(keyring) if keyring else settings.keyring)
        result = verify(settings, Path(iso).name, checksum)
        if not result.ok:
            raise CheckFailed(result.summary())
    print(result.summary())


@task(help={"path": "the OVA whose SBOM (NAME.spdx.json, SPDX 2.3) to print"})
def sbom(c: Context, path):
    """Print the SBOM inside an OVA: the packages installed on its boot disk."""
    from ovapipe.ova.sbom_member import read_sbom_member

    with exits():
        document = read_sbom_member(path)
    print(document.decode("utf-8"), end="")


@task(
    name="sign-ova",
    help={
        "path": "the OVA to sign in place (NAME.cert after NAME.mf; a previous one is replaced)",
        "certificate": "PEM: the signer's certificate, then intermediates "
                       "(default: invoke.yaml ovapipe.signing.certificate)",
        "key_file": "PEM private key file (default: ovapipe.signing.key_file)",
        "key_env": "variable holding the PEM private key (default: ovapipe.signing.key_env, "
                   "else OVAPIPE_SIGNING_KEY); never pass a key itself",
        "algorithm": "SHA256 (default) or SHA512; SHA1 is refused",
    },
)
def sign_ova(c: Context, path, certificate=None, key_file=None, key_env=None, algorithm=None):
    """Sign an OVA as ovftool does: a NAME.cert member over the manifest."""
    from dataclasses import replace
    from pathlib import Path

    from ovapipe.config import signing_settings
    from ovapipe.ova.resign import sign_ova as sign
    from ovapipe.ova.signing import signer_from

    with exits():
        settings = signing_settings(c.config.get("ovapipe", {}))
        if key_file or key_env:
            settings = replace(settings, key_file=Path(key_file) if key_file else None,
                               key_env=key_env)
        settings = replace(settings, certificate=Path(certificate) if certificate
                           else settings.certificate, algorithm=algorithm or settings.algorithm)
        signed = sign(Path(path), signer_from(settings))
    print(f"signed {signed.path} ({signed.cert_member}) as {signed.signer}\n"
          f"sha256 {signed.sha256}")


@task(
    help={
        "ova": "the OVA to publish",
        "datacenter": f"target datacenter (repeatable; published concurrently). {PATHS}",
        "cluster": "cluster or standalone host whose root pool receives the VM, e.g. "
                   "/DC0/host/DC0_C0 or DC0_C0",
        "resource_pool": "resource pool, e.g. */Resources or /DC0/host/C0/Resources/gpu "
                         "(inside --cluster when both are given)",
        "datastore": "datastore for the disks (default from invoke.yaml / VSPHERE_DATASTORE, "
                     "else the only one)",
        "folder": "VM folder for the template, e.g. /DC0/vm/templates or vm/templates",
        "network": "network for the NIC (default from invoke.yaml / VSPHERE_NETWORK, else the "
                   "OVA's network or the datacenter's only one)",
        "name": "template name (default: the OVA's file name): 1-80 characters, no control "
                "characters, not . or .., none of / \\ %",
        "replace": "replace an existing template of that name built from another OVA",
        "no_snapshot": "do not take the 'root' snapshot that CAPV linked clones use",
        "insecure": "skip certificate verification (warns; not for production)",
        "json": "print the handoff records as JSON",
        "require_signature": "publish only an OVA a trusted signer signed "
                             "(default: invoke.yaml ovapipe.signing.require)",
        "trust": "PEM file of the CA or pinned signer certificate(s) "
                 "(default: invoke.yaml ovapipe.signing.trust)",
        "library": "upload the OVA once into this content library (created if missing) and "
                   "deploy its item into every datacenter (default from invoke.yaml "
                   "ovapipe.library)",
        "library_datastore": "datastore of the library when publish creates it (default: "
                             "--datastore, in the first datacenter)",
        "publish": "with --library: make the library published and print its subscription "
                   "URL for other vCenters",
    },
    iterable=["datacenter"],
)
def publish(c: Context, ova, datacenter=None, cluster=None, resource_pool=None, datastore=None,
            folder=None, network=None, name=None, replace=False, no_snapshot=False,
            insecure=False, json=False, require_signature=False, trust=None, library=None,
            library_datastore=None, publish=False):
    """Upload an OVA as a vmx-17/EFI VM template in one or more datacenters."""
    import json as json_module
    from pathlib import Path

    from ovapipe.config import connection_from_env, signing_settings, site_defaults
    from ovapipe.errors import ConfigError
    from ovapipe.names import template_name
    from ovapipe.vsphere.publish import PublishOptions
    from ovapipe.vsphere.publish import publish as publish_ova

    with exits():
        template_name(name, Path(ova))
        site = site_defaults(c.config.get("ovapipe", {}))
        signing = signing_settings(c.config.get("ovapipe", {}))
        options = PublishOptions(
            ova=Path(ova),
            datacenters=tuple(datacenter or filter(None, [site.datacenter])),
            cluster=cluster or (None if resource_pool else site.cluster),
            resource_pool=resource_pool,
            datastore=datastore or site.datastore,
            folder=folder or site.folder,
            network=network or site.network,
            name=name, replace=replace, snapshot=not no_snapshot,
            concurrency=site.publish_concurrency, output_dir=site.output,
            pipeline_id=site.pipeline_id,
            require_signature=require_signature or signing.require,
            trust=Path(trust) if trust else signing.trust,
            library=library or site.library,
            library_datastore=library_datastore or site.library_datastore,
            library_publish=publish,
        )
        if publish and options.library is None:
            raise ConfigError("--publish needs --library NAME (it publishes that library)")
        records = publish_ova(options, connection_from_env(insecure=insecure))
    if json:
        print(json_module.dumps([r.as_dict() for r in records], indent=2))
    else:
        for record in records:
            source = (f" from library item {record.library_item_id}"
                      if record.library_item_id else "")
            print(f"{record.datacenter}: {record.inventory_path} ({record.vmx}, "
                  f"{record.firmware}, snapshot {record.snapshot or 'none'}) "
                  f"sha256 {record.ova_sha256}{source}")


@task(
    name="validate-template",
    help={
        "datacenter": f"datacenter holding the template. {PATHS}",
        "name": "the template or VM: /DC0/vm/x, vm/x, a name or a glob (exactly one match)",
        "min_vmx": "lowest acceptable virtual hardware version: 17 or vmx-17 (default)",
        "firmware": "required firmware: efi (default) or bios",
        "insecure": "skip certificate verification (warns; not for production)",
        "json": "print one JSON object instead of a report",
    },
)
def validate_template(c: Context, datacenter, name, min_vmx="17", firmware="efi", insecure=False,
                      json=False):
    """Check a VM template in vCenter: vmx version, firmware, snapshot, hosts."""
    from ovapipe.validators import gate_arguments
    from ovapipe.validators.template import validate_template as check_template

    from ovapipe.cli import emit_report
    from ovapipe.config import connection_from_env
    from ovapipe.vsphere.connect import session

    with exits():
        gate_arguments(min_vmx, firmware)
        connection = connection_from_env(insecure=insecure)
        with session(connection) as service:
            report = check_template(service, datacenter, name, min_vmx=min_vmx,
                                    firmware=firmware)
    emit_report(report, json)


@task(
    help={
        "datacenter": f"datacenter to inspect. {PATHS}",
        "cluster": "only this cluster's hosts: /DC0/host/DC0_C0, DC0_C0 or a glob",
        "host": "only hosts whose name matches this glob",
        "enable": "switch passthrough on for the GPUs (all hosts or none; takes effect on reboot)",
        "disable": "switch passthrough off for the GPUs",
        "device": "with --enable/--disable: only this GPU, VENDOR:DEVICE in hex or a name",
        "dry_run": "with --enable/--disable: show the plan, change nothing",
        "insecure": "skip certificate verification (warns; not for production)",
        "json": "print JSON instead of a table",
    },
)
def gpus(c: Context, datacenter, cluster=None, host=None, enable=False, disable=False,
         device=None, dry_run=False, insecure=False, json=False):
    """List passthrough GPUs per host with CAPV's decimal IDs, or enable/disable passthrough."""
    with exits():
        from ovapipe.config import connection_from_env
        from ovapipe.errors import ConfigError
        from ovapipe.vsphere.connect import session
        from ovapipe.vsphere.gpus import list_gpus
        from ovapipe.vsphere.passthru import apply_passthru, plan_passthru

        if enable and disable:
            raise ConfigError("--enable and --disable exclude each other")
        if not (enable or disable) and (device or dry_run):
            raise ConfigError("--device and --dry-run need --enable or --disable")
        with session(connection_from_env(insecure=insecure)) as service:
            if not (enable or disable):
                found = list_gpus(service, datacenter, cluster, host)
                print(found.to_json() if json else found.render())
                return
            change = plan_passthru(service, datacenter, cluster, host, device, enable, dry_run)
            apply_passthru(service, change, datacenter, cluster, host)
        print(change.to_json() if json else change.render())
    if not change.ok:
        raise invoke.Exit(code=1)


@task(name="pci-id", help={"value": "10DE:1EB8, '0x10de 0x1eb8' or a name such as 'Tesla T4'"})
def pci_id(c: Context, value):
    """Convert a PCI vendor:device (hex or name) to CAPV's decimal pciDevices entry."""
    with exits():
        import sys

        from ovapipe.capv import describe_pci_id, pci_id_warnings

        for warning in pci_id_warnings(value):
            print(f"warning: {warning}", file=sys.stderr)
        print(describe_pci_id(value))


@task(
    name="cluster-template",
    help={
        "in_": "clusterctl-generated cluster-template.yaml to patch (default: write a new one)",
        "out": "output file (default: stdout)",
        "publish_record": "output/NAME/publish-DC.json from `invoke publish`",
        "template": "template name or inventory path (instead of --publish-record)",
        "gpu": "VENDOR:DEVICE[xCOUNT] in hex (repeatable)",
        "machine": "worker (default; a template the control plane shares is split off as "
                   "NAME-gpu-worker), control-plane (refused if workers share its template), "
                   "or a VSphereMachineTemplate name (patched as named)",
        "hardware_version": "hardwareVersion to set (default vmx-17)",
        "mmio_gb": "64-bit MMIO size in GB for GPUs not in the table",
        "cluster": "warn unless each --gpu is passthrough-active on a host of this cluster",
        "datacenter": "the datacenter of --cluster",
        "insecure": "with --cluster: skip certificate verification (warns)",
    },
    iterable=["gpu"],
)
def cluster_template(c: Context, in_=None, out=None, publish_record=None, template=None, gpu=None,
                     machine="worker", hardware_version="vmx-17", mmio_gb=None, cluster=None,
                     datacenter=None, insecure=False):
    """Write or patch CAPV VSphereMachineTemplates with the template and GPUs."""
    with exits():
        import sys
        from pathlib import Path

        from ovapipe.clustertemplate import ClusterTemplateRequest, run
        from ovapipe.errors import ConfigError

        if bool(cluster) != bool(datacenter):
            raise ConfigError("--cluster and --datacenter go together")

        result = run(ClusterTemplateRequest(
            in_path=Path(in_) if in_ else None, out_path=Path(out) if out else None,
            publish_record=Path(publish_record) if publish_record else None, template=template,
            gpus=gpu or [], machine=machine, hardware_version=hardware_version, mmio_gb=mmio_gb,
        ))
        if cluster:
            from ovapipe.vsphere.gpu_check import cluster_gpu_warnings

            result.warnings += cluster_gpu_warnings(datacenter, cluster, gpu or [],
                                                    insecure=insecure)
        print("\n".join(result.messages()), file=sys.stderr)
        if out is None:
            print(result.text, end="")


@task(
    help={
        "profile": "OS profile to build (repeatable; default ubuntu-2004-efi)",
        "datacenter": "datacenter to publish to (repeatable)",
        "keep": "nightly templates to keep per profile and datacenter (default 3)",
        "report": "folder for report.json, junit.xml and report.md",
        "resume": "reuse finished stages whose artifacts still verify",
        "var_file": "variable file layered on each profile, after invoke.yaml's "
                    "ovapipe.var_files (repeatable; later wins)",
        "set_": "KEY=VALUE variable override, applied last (repeatable)",
        "cluster": "cluster for the templates (default from invoke.yaml / VSPHERE_CLUSTER)",
        "datastore": "datastore for the templates (default from invoke.yaml / VSPHERE_DATASTORE)",
        "network": "network for the templates' NIC (default from invoke.yaml / VSPHERE_NETWORK)",
        "folder": "VM folder for the templates (default from invoke.yaml / VSPHERE_FOLDER)",
        "unlock": "show who holds each profile's nightly lock; with --yes, break it",
        "yes": "with --unlock: break the lock (only when no nightly run of it is active)",
        "sign": "sign each OVA with invoke.yaml's ovapipe.signing key and certificate",
    },
    iterable=["profile", "datacenter", "var_file", "set_"],
)
def nightly(c: Context, profile=None, datacenter=None, keep="3", report="output/report",
            resume=False, var_file=None, set_=None, cluster=None, datastore=None, network=None,
            folder=None, unlock=False, yes=False, sign=False):
    """The nightly image job: build, validate, publish, verify, hand off."""
    import sys
    from pathlib import Path

    from ovapipe.config import signing_settings, site_defaults, timeout_env
    from ovapipe.iso import iso_settings
    from ovapipe.nightly import NightlyRequest, run_nightly, unlock_profiles
    from ovapipe.varfiles import site_var_files

    settings = c.config.get("ovapipe", {})
    if unlock or yes:
        with exits():
            code = unlock_profiles(tuple(profile or ["ubuntu-2004-efi"]), timeout_env(settings),
                                   unlock=unlock, force=yes)
        raise invoke.Exit(code=code)
    with exits():
        signing = signing_settings(settings)
        signer = None
        if sign:
            from ovapipe.ova.signing import signer_from

            signer = signer_from(signing)  # before timeout_env copies the environment
        env = timeout_env(settings)
        site = site_defaults(settings)
        var_files = (*site_var_files(settings), *(var_file or []))
        report_dir = Path(report)
        result = run_nightly(NightlyRequest(
            profiles=tuple(profile or ["ubuntu-2004-efi"]),
            datacenters=tuple(datacenter or filter(None, [site.datacenter])),
            keep=int(number_flag("keep", keep, minimum=1)), report_dir=report_dir,
            resume=resume, output_dir=site.output, var_files=var_files, sets=tuple(set_ or ()),
            cluster=cluster or site.cluster, datastore=datastore or site.datastore,
            network=network or site.network, folder=folder or site.folder,
            concurrency=site.publish_concurrency,
            pipeline_id=site.pipeline_id, signer=signer, require_signature=signing.require,
            trust=signing.trust, iso=iso_settings(settings), library=site.library,
        ), env)
        print(result.summary())
        folder = result.folder or report_dir
        print(f"report: {folder / 'report.json'}, {folder / 'junit.xml'}, "
              f"{folder / 'report.md'}", file=sys.stderr)
    if not result.ok:
        raise invoke.Exit(code=1)


@task(
    help={
        "vc_version": "vCenter version to report (default 7.0.3)",
        "esx_version": "ESXi version of every host (default 7.0.3)",
        "gpu": "HOST_GLOB=VENDOR:DEVICE passthrough device (hex, repeatable)",
        "no_default_gpu": "do not add the default Tesla T4 to the hosts of each datacenter's "
                          "first cluster (DC0_C0, DC1_C0, ...)",
        "datacenters": "datacenters DC0..DCn-1, each with its clusters, hosts, LocalDS_0 and "
                       "VM Network (default 1, at most 16)",
        "clusters": "clusters per datacenter (default 1)",
        "cluster_hosts": "hosts per cluster (default 3)",
        "hosts": "standalone hosts per datacenter (default 1)",
        "installer_vm": "VM name glob whose power-on runs the simulated installer",
        "installer_disk": "streamOptimized VMDK the installer writes as the first disk",
        "installer_seconds": "seconds the simulated install takes before power-off",
        "port": "port to listen on (default: a free one)",
        "lease_timeout": "seconds an import/export lease lives without progress (default 300, "
                         "as vCenter)",
    },
    iterable=["gpu"],
)
def sim(c: Context, vc_version="7.0.3", esx_version="7.0.3", gpu=None, no_default_gpu=False,
        installer_vm=None, installer_disk=None, installer_seconds="3", port="0",
        datacenters="1", clusters="1", cluster_hosts="3", hosts="1", lease_timeout="300"):
    """Run the local vSphere simulator until Ctrl-C; prints how to connect."""
    from ovapipe.simulator import SimulatorOptions, serve

    with exits():
        options = SimulatorOptions(
            vc_version=vc_version, esx_version=esx_version, gpus=tuple(gpu or ()),
            default_gpu=not no_default_gpu, installer_vm=installer_vm,
            installer_disk=installer_disk,
            installer_seconds=number_flag("installer-seconds", installer_seconds, whole=False),
            port=int(number_flag("port", port)),
            datacenters=int(number_flag("datacenters", datacenters)),
            clusters=int(number_flag("clusters", clusters)),
            cluster_hosts=int(number_flag("cluster-hosts", cluster_hosts)),
            hosts=int(number_flag("hosts", hosts)),
            lease_timeout=number_flag("lease-timeout", lease_timeout, whole=False),
        )
        serve(options, announce=lambda text: print(text, flush=True))


@task(
    name="test-disk",
    help={
        "kind": "efi (GPT + ESP with BOOTX64.EFI + root) or bios (MBR, no ESP)",
        "out": "where to write the streamOptimized VMDK",
        "size_mb": "virtual disk size in MiB",
    },
)
def test_disk(c: Context, kind="efi", out="output/test-efi.vmdk", size_mb="64"):
    """Build a small real disk (EFI or BIOS layout) as a streamOptimized VMDK."""
    from pathlib import Path

    from ovapipe.testdisk import make_test_disk

    with exits():
        disk = make_test_disk(kind, Path(out), int(number_flag("size-mb", size_mb, minimum=1)))
    print(f"{disk}: {kind} test disk, {size_mb} MiB, streamOptimized VMDK "
          f"({disk.stat().st_size} bytes)")


@task
def demo(c: Context):
    """The whole pipeline end to end against the embedded simulator."""
    from ovapipe.demo import run_demo

    with exits():
        report = run_demo()
    if not report.ok:
        raise invoke.Exit(code=1)


namespace = Collection(
    vars, build_ova, validate_ova, sign_ova, sbom, verify_iso, publish, validate_template, gpus,
    pci_id, cluster_template, nightly, sim, test_disk, demo,
)
