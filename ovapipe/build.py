"""``invoke build-ova``: variables -> Packer -> ExportVm -> OVA -> validate-ova -> output/NAME/.

Each step registers the cleanup of what it creates (ovapipe.steps). A failure or Ctrl-C leaves
no build VM in vCenter and no partial OVA; ``--on-error abort`` keeps everything instead.
Only ``NAME.packer.log`` next to the output folder survives a failure, for diagnosis.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from ovapipe import __version__, config, hardware, packer
from ovapipe.buildrun import (
    MarkedRun,
    RunMarker,
    datastore_folder_exists,
    delete_seed_iso,
    remove_tree,
)
from ovapipe.config import Connection, connection_from_env
from ovapipe.errors import CheckFailed, ConfigError
from ovapipe.faults import checkpoint
from ovapipe.files import write_json
from ovapipe.findings import WARNING, Finding, Report
from ovapipe.iso import IsoAuthenticity, IsoSettings, iso_file_name, verify_iso
from ovapipe.ova.members import SBOM_SUFFIX
from ovapipe.packer import PackerInfo, packer_env
from ovapipe.paths import REPO_ROOT
from ovapipe.rootfs import DPKG_STATUS
from ovapipe.steps import Run, Step, run_steps
from ovapipe.varfiles import PACKER_VARS_FILE, ResolvedVars, resolve

if TYPE_CHECKING:
    from ovapipe.ova import AssembledOva
    from ovapipe.ova.signing import Signer
    from ovapipe.sbom import DiskSbom
    from ovapipe.vsphere.export import ExportedFile

ON_ERROR: Final = ("cleanup", "abort")
BUILD_JSON: Final = "build.json"
PACKER_LOG: Final = "packer.log"
SEED_FOLDER: Final = "packer_cache"  # where Packer uploads the cd_files ISO


@dataclass(frozen=True)
class BuildRequest:
    profile: str = "ubuntu-2004-efi"
    var_files: Sequence[str] = ()
    sets: Sequence[str] = ()
    out: Path = Path("output")
    on_error: str = "cleanup"
    keep_vm: bool = False
    signer: Signer | None = None  # sign the OVA (NAME.cert); loaded before anything runs
    iso: IsoSettings = field(default_factory=lambda: IsoSettings())  # invoke.yaml ovapipe.iso


@dataclass
class BuildState:
    """What the steps share; filled in as the build goes."""

    request: BuildRequest
    resolved: ResolvedVars
    connection: Connection
    env: Mapping[str, str]
    log: TextIO
    git_commit: str = "unknown"  # of the checkout the build started from
    started: float = field(default_factory=time.time)
    packer: PackerInfo | None = None
    vcenter_version: str = ""
    staging: Path | None = None
    temp_dir: Path | None = None  # Packer's TMPDIR: its seed folders, removed after the build
    marked: MarkedRun | None = None
    cache_folder_new: bool = False
    packer_log: Path | None = None
    disks: list[ExportedFile] = field(default_factory=list)
    nvram: ExportedFile | None = None
    ova: AssembledOva | None = None
    sbom: DiskSbom | None = None
    iso: IsoAuthenticity | None = None
    plugins: dict[str, str] = field(default_factory=dict)
    report: Report | None = None
    output: Path | None = None

    @property
    def name(self) -> str:
        return str(self.resolved.values["vm_name"])

    @property
    def datacenter(self) -> str:
        return str(self.resolved.values["datacenter"])

    @property
    def datastore(self) -> str:
        return str(self.resolved.values["datastore"])

    @property
    def vmx(self) -> int:
        return int(self.resolved.values["vmx_version"])

    @property
    def firmware(self) -> str:
        return str(self.resolved.values["firmware"])

    @property
    def template_path(self) -> Path:
        return self.resolved.template.path

    def packer_env(self) -> dict[str, str]:
        return packer_env(self.resolved.packer_env(), self.env)


@dataclass(frozen=True)
class BuildResult:
    output: Path
    ova: Path
    sha256: str
    size: int
    seconds: float
    report: Report | None


# ----------------------------------------------------------------------------------- steps


def _check_target(service: Any, state: BuildState) -> None:
    """Datacenter and cluster exist, the cluster can create the vmx version, no VM clash."""
    from pyVmomi import vim

    from ovapipe.vsphere.hostcheck import creatable_on
    from ovapipe.vsphere.inventory import datacenter, retrieve
    from ovapipe.vsphere.resolve import CLUSTER, find_one
    from ovapipe.vsphere.template import vms_named

    values = state.resolved.values
    dc = datacenter(service, state.datacenter)
    clusters = retrieve(service, vim.ClusterComputeResource, ["name", "environmentBrowser"],
                        dc.obj)
    wanted_cluster = find_one(service, CLUSTER, str(values["cluster"]), dc.obj).obj
    cluster = next(c for c in clusters if c.obj == wanted_cluster)
    wanted = hardware.vmx_name(state.vmx)
    browser = cluster.get("environmentBrowser")
    creatable = sorted(
        creatable_on(browser) if browser is not None else [],
        key=lambda key: hardware.parse_vmx(key) if key.startswith("vmx-") else 0,
    )
    if wanted not in creatable:
        hosts = retrieve(service, vim.HostSystem, ["name", "config.product.version"],
                         cluster.obj)
        versions = ", ".join(
            sorted(f"{h.name} ESXi {h.get('config.product.version', '?')}" for h in hosts)
        ) or "no hosts"
        raise CheckFailed(
            f"cluster {cluster.name} cannot create {wanted}: "
            f"{hardware.describe_vmx_need(state.vmx)} (hosts: {versions}; creatable: "
            f"{', '.join(creatable) or 'none'})"
        )
    if vms_named(service, state.name, dc.obj):
        raise ConfigError(
            f"a VM named {state.name} already exists in datacenter {state.datacenter} and no "
            "killed build of this output folder left it: delete it, or build under another "
            "name (build-ova: --set vm_name=...; nightly: a new run, without --resume)"
        )


def _recover_killed_builds(service: Any, state: BuildState, run: Run) -> None:
    """A SIGKILLed build's Packer, VM, seed ISO and folders, named by its run marker."""
    from ovapipe.buildrun import recover
    from ovapipe.vsphere.export import destroy_vm

    checkpoint("build.recover.before")
    removed = recover(state.request.out, service, state.log, destroy_vm)
    if removed:
        run.say(f"preflight: removed what a killed build left: {', '.join(removed)}")


def _check_packer_trusts_vcenter(state: BuildState) -> None:
    """Packer verifies vCenter against the system CAs unless insecure_connection is true."""
    if state.resolved.values.get("insecure_connection"):
        return
    context = ssl.create_default_context()
    host, port = state.connection.host, state.connection.port
    try:
        with socket.create_connection((host, port), timeout=15) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"Packer checks {state.connection.server}'s certificate against the system CAs and "
            f"would refuse it ({exc.verify_message}): add the vCenter CA to the system trust "
            "store, or --set insecure_connection=true (ovapipe still checks "
            "VSPHERE_TLS_THUMBPRINT before the build)"
        ) from None
    except OSError:
        return  # reachability was already checked over the pinned connection


def check_iso(state: BuildState, run: Run) -> None:
    """The ISO is the one the release's signed SHA256SUMS lists, before Packer boots it."""
    settings = state.request.iso
    values = state.resolved.values
    name = iso_file_name(values)
    if not settings.configured and not settings.keyring:
        state.iso = IsoAuthenticity(name, checked=False, findings=[Finding(
            "iso.not-configured", WARNING, "no ovapipe.iso.sha256sums and keyring configured")])
        run.say(f"preflight: {state.iso.summary()}")
        return
    state.iso = verify_iso(settings, name, str(values.get("iso_checksum") or "") or None)
    if not state.iso.ok:
        raise CheckFailed(state.iso.summary())
    run.say(f"preflight: {state.iso.summary()}")


def preflight(state: BuildState, run: Run) -> None:
    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.packer_inventory import for_packer

    check_iso(state, run)
    state.packer = packer.find_packer(state.env)
    run.say(f"preflight: packer {state.packer.version} at {state.packer.path}")
    with session(state.connection) as service:
        about = service.RetrieveContent().about
        state.vcenter_version = f"{about.fullName}"
        run.say(f"preflight: {state.connection.server} answers over pinned TLS: "
                f"{state.vcenter_version}")
        _recover_killed_builds(service, state, run)
        state.resolved, changes = for_packer(service, state.resolved)  # govc paths -> Packer's
        for change in changes:
            run.say(f"preflight: for Packer: {change}")
        _check_target(service, state)
        state.cache_folder_new = not datastore_folder_exists(
            service, state.datacenter, state.datastore, SEED_FOLDER)
    run.say(f"preflight: cluster {state.resolved.values['cluster']} can create "
            f"{hardware.vmx_name(state.vmx)}")
    _check_packer_trusts_vcenter(state)
    env = state.packer_env()
    packer.init_plugins(state.packer, env)
    state.plugins = packer.plugin_versions(state.packer, env)
    with tempfile.TemporaryDirectory(prefix="ovapipe-validate-") as temp:
        var_file = Path(temp) / PACKER_VARS_FILE
        write_json(var_file, state.resolved.packer_vars())
        packer.validate(state.packer, state.template_path, var_file, env)
    run.say(f"preflight: packer validate {state.resolved.template.name}: ok")


def render_vars(state: BuildState, run: Run) -> None:
    out = state.request.out
    staging = out / f".{state.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    state.staging = staging
    run.on_failure("remove the partial output folder",
                   lambda: shutil.rmtree(staging, ignore_errors=True))
    # In the system temp dir, not the output folder: Packer's plugin sockets live in TMPDIR
    # and a unix socket path is limited to 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="ovapipe-packer-"))
    state.temp_dir = temp_dir
    run.always("remove Packer's temporary folder", lambda: remove_tree(temp_dir))
    assert state.marked is not None
    state.marked.update(staging=str(staging), temp_dir=str(temp_dir))
    write_json(staging / PACKER_VARS_FILE, state.resolved.packer_vars())
    run.say(f"render vars: {staging / PACKER_VARS_FILE}")


def _delete_build_vm(state: BuildState) -> None:
    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.export import destroy_vm

    with session(state.connection) as service:
        destroy_vm(service, state.name, state.datacenter)


def _delete_seed_iso(state: BuildState) -> None:
    from ovapipe.vsphere.connect import session

    assert state.marked is not None
    iso = state.marked.marker.seed_iso
    if not iso:
        return
    with session(state.connection) as service:
        delete_seed_iso(service, state.datacenter, state.datastore, iso,
                        remove_folder=state.cache_folder_new)


def packer_build(state: BuildState, run: Run) -> None:
    assert state.packer is not None and state.staging is not None
    assert state.marked is not None
    # Registered before the VM's deletion, so it runs after it (the VM mounts the ISO).
    run.always("delete the seed ISO from the datastore", lambda: _delete_seed_iso(state))
    # Packer deletes its VM on failure and Ctrl-C; this also covers Packer being killed and
    # failures after the build (export, assembly). preflight made sure no VM had this name.
    description = f"delete build VM {state.name}"
    if state.request.keep_vm:
        run.on_failure(description, lambda: _delete_build_vm(state))
    else:
        run.always(description, lambda: _delete_build_vm(state))
    state.packer_log = state.request.out / f"{state.name}.{PACKER_LOG}"
    run.say(f"packer build: log streamed to {state.packer_log}")
    packer.build(
        state.packer,
        state.template_path,
        state.staging / PACKER_VARS_FILE,
        state.packer_env(),
        state.packer_log,
        secrets=list(state.resolved.secrets.values()),
        on_error=state.request.on_error,
        echo=state.log,
        temp_dir=state.temp_dir,
        started=state.marked.packer_started,
        on_line=state.marked.packer_line,
    )


def export_disks(state: BuildState, run: Run) -> None:
    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.export import export_vm, find_vm

    assert state.staging is not None
    target = state.staging / "export"
    run.on_failure("remove the exported disks",
                   lambda: shutil.rmtree(target, ignore_errors=True))
    with session(state.connection) as service:
        vm = find_vm(service, state.name, state.datacenter)
        exported = export_vm(service, vm, state.connection, target, stream=state.log)
    state.disks = exported.disks
    state.nvram = exported.nvram
    run.say(f"export: {len(exported.disks)} disk(s), {exported.size} bytes")


def _git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _read_sbom(state: BuildState) -> DiskSbom:
    from ovapipe.rootfs import RootFsError
    from ovapipe.sbom import disk_sbom

    boot = state.disks[0]
    try:
        return disk_sbom(boot.path, state.name, created=dt.datetime.fromtimestamp(
            int(state.started), tz=dt.UTC), disk_sha256=boot.sha256)
    except RootFsError as exc:
        raise CheckFailed(f"the exported boot disk {boot.path.name}: {exc.message}; the "
                          "package list (SBOM) is read from its ext4 root file system") from None


def assemble(state: BuildState, run: Run) -> None:
    from ovapipe.ova import BuildFacts, HardwareSizes, assemble_ova

    assert state.staging is not None
    values = state.resolved.values
    profile = state.resolved.profile
    facts = BuildFacts(
        distro_name=profile.distro_name or "ubuntu",
        distro_version=profile.distro_version or "unknown",
        kubernetes_version="v" + str(values["kubernetes_version"]).removeprefix("v"),
        image_version=state.name,
        build_timestamp=int(state.started),
        vmx=state.vmx,
        firmware=state.firmware,
        git_commit=state.git_commit,
        containerd_version=str(values.get("containerd_version", "")),
        cni_version=str(values.get("cni_version", "")),
    )
    sizes = HardwareSizes(cpus=int(values["cpus"]), memory_mb=int(values["memory"]),
                          os_type=str(values.get("guest_os_type", "ubuntu64Guest")))
    state.sbom = _read_sbom(state)
    run.say(f"sbom: {len(state.sbom.packages)} packages read from the boot disk's "
            f"{DPKG_STATUS}")
    state.ova = assemble_ova(
        state.staging, state.name, [d.path for d in state.disks], facts, hardware=sizes,
        nvram=state.nvram.path if state.nvram else None, signer=state.request.signer,
        sbom=state.sbom.document,
    )
    run.say(f"assemble: {state.ova.path.name} ({state.ova.size} bytes, sha256 "
            f"{state.ova.sha256}{f', signed by {state.ova.signer}' if state.ova.signer else ''})")


def validate(state: BuildState, run: Run) -> None:
    from ovapipe.inspection import ImageExpectations
    from ovapipe.validators.ova import validate_ova

    assert state.ova is not None
    values = state.resolved.values
    expect = ImageExpectations(str(values["kubernetes_version"]),
                               str(values.get("containerd_version") or ""))
    report = validate_ova(state.ova.path, min_vmx=state.vmx, firmware=state.firmware,
                          inspect=expect)
    state.report = report
    if not report.ok:
        raise CheckFailed(f"the built OVA fails validate-ova:\n{report.render()}")
    run.say(f"validate-ova: PASS ({report.vmx}, {report.firmware}; image inspection of the "
            "root file system: ok)")


def _build_record(state: BuildState, run: Run) -> dict[str, Any]:
    assert state.ova is not None
    values = state.resolved.values
    return {
        "name": state.name,
        "profile": state.resolved.profile.name,
        "template": f"packer/{state.resolved.template.name}",
        "inputs": {
            "var_files": list(state.request.var_files),
            "sets": [s.split("=", 1)[0] for s in state.request.sets],
            "variables": state.resolved.packer_vars(),
            "sources": dict(sorted(state.resolved.sources.items())),
            "secrets_from_environment": sorted(state.resolved.secrets),
        },
        "versions": {
            "ovapipe": __version__,
            "git_commit": state.git_commit,
            "packer": state.packer.version if state.packer else None,
            "packer_plugins": state.plugins,
            "vcenter": state.vcenter_version,
            "python": platform.python_version(),
        },
        "hardware": {"vmx": hardware.vmx_name(state.vmx), "firmware": state.firmware},
        "iso": {"url": values.get("iso_url"), "paths": values.get("iso_paths"),
                "checksum": values.get("iso_checksum"),
                "authenticity": state.iso.as_dict() if state.iso else None},
        "signature": state.report.signature if state.report is not None else None,
        "sbom": None if state.sbom is None else {
            "member": f"{state.name}{SBOM_SUFFIX}", "format": "SPDX-2.3",
            "sha256": state.sbom.sha256, "distro": state.sbom.distro,
            "packages": [{"name": p.name, "version": p.version, "architecture": p.architecture}
                         for p in state.sbom.packages],
        },
        "started": dt.datetime.fromtimestamp(state.started, tz=dt.UTC).isoformat(),
        "finished": dt.datetime.now(tz=dt.UTC).isoformat(),
        "timings": [
            {"step": t.name, "seconds": round(t.seconds, 3), "status": t.status}
            for t in run.timings
        ],
        "checksums": {
            f"{state.name}.ova": {"sha256": state.ova.sha256, "size": state.ova.size},
            "disks": {d.path.name: {"sha256": d.sha256, "size": d.size} for d in state.disks},
        },
        "validate_ova": state.report.as_dict() if state.report is not None else None,
        "build_vm": "kept" if state.request.keep_vm else "deleted",
        "vsphere": {k: values.get(k) for k in ("vcenter_server", "datacenter", "cluster",
                                                  "datastore", "network", "folder")},
    }


def write_output(state: BuildState, run: Run) -> None:
    assert state.staging is not None and state.packer_log is not None
    shutil.rmtree(state.staging / "export", ignore_errors=True)
    shutil.move(str(state.packer_log), state.staging / PACKER_LOG)
    write_json(state.staging / BUILD_JSON, _build_record(state, run))
    final = state.request.out / state.name
    previous = state.request.out / f".{state.name}.previous-{os.getpid()}"
    if final.exists():
        final.rename(previous)
    state.staging.rename(final)
    shutil.rmtree(previous, ignore_errors=True)
    state.output = final
    run.say(f"output: {final}/")


def _step(name: str, action: Callable[[BuildState, Run], None]) -> Step[BuildState]:
    """A step with a fault-injection point ``build.<name>.before`` (docs/faults.md)."""
    point = f"build.{name.replace(' ', '-')}.before"

    def run(state: BuildState, steps_run: Run) -> None:
        checkpoint(point)
        action(state, steps_run)

    return Step(name, run)


STEPS: Final = (
    _step("preflight", preflight),
    _step("render vars", render_vars),
    _step("packer build", packer_build),
    _step("export disks", export_disks),
    _step("assemble OVA", assemble),
    _step("validate-ova", validate),
    _step("write output", write_output),
)


def build_ova(
    request: BuildRequest,
    env: Mapping[str, str] | None = None,
    log: TextIO | None = None,
) -> BuildResult:
    """Run every step; raises ConfigError before anything starts for bad variables."""
    env = dict(os.environ if env is None else env)
    if request.on_error not in ON_ERROR:
        raise ConfigError(f"--on-error {request.on_error!r}: expected cleanup or abort")
    resolved = resolve(request.profile, request.var_files, request.sets, env=env)
    # ovapipe checks and exports from the same vCenter, as the same user, as Packer builds on.
    connection = connection_from_env({
        **env,
        config.ENV_SERVER: str(resolved.values["vcenter_server"]),
        config.ENV_USERNAME: str(resolved.values["username"]),
        **resolved.secrets_env(),
    }, prompt=False)
    log = log or sys.stderr
    state = BuildState(request, resolved, connection, env, log, _git_commit())
    run = Run(log=log)
    started = time.monotonic()
    request.out.mkdir(parents=True, exist_ok=True)
    # Written before anything exists; removed only once every cleanup has run.
    state.marked = MarkedRun(request.out, RunMarker(state.name, state.datacenter,
                                                    state.datastore))
    state.marked.update()
    try:
        run_steps(STEPS, state, run=run, keep_on_error=request.on_error == "abort")
    finally:
        # Packer's TMPDIR holds the autoinstall user-data (a password hash): removed even
        # with --on-error abort, which keeps the VM and the staging folder for debugging.
        if state.temp_dir is not None:
            remove_tree(state.temp_dir)
        state.marked.remove()  # cleanups ran (or --on-error abort keeps things on purpose)
        if state.packer_log is not None and state.packer_log.exists():
            log.write(f"packer log kept: {state.packer_log}\n")
    assert state.output is not None and state.ova is not None
    ova_path = state.output / state.ova.path.name
    return BuildResult(state.output, ova_path, state.ova.sha256, state.ova.size,
                       time.monotonic() - started, state.report)


def describe_result(result: BuildResult) -> str:
    return (
        f"built {result.ova} ({result.size} bytes) in {result.seconds:.0f} s\n"
        f"sha256 {result.sha256}\n"
        f"validate-ova: {'PASS' if result.report is None or result.report.ok else 'FAIL'}"
    )

