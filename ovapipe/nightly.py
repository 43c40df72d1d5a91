"""The nightly image job: every stage for every profile, a report, retention and a lock.

Stages per profile: vars -> build-ova -> validate-ova -> publish [DC] -> validate-template [DC]
-> gpus [DC] -> cluster-template [DC] -> retention [DC]. A failed stage skips the rest of its
profile; retention runs only for a datacenter whose new template passed validate-template, and
deletes only templates the nightly job made (marked in their annotation).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from ovapipe.config import Connection, connection_from_env
from ovapipe.errors import CheckFailed, ConfigError, Interrupted, OvapipeError
from ovapipe.faults import checkpoint
from ovapipe.files import sha256_file, write_json
from ovapipe.iso import IsoSettings
from ovapipe.paths import REPO_ROOT
from ovapipe.report import NightlyReport, StageResult
from ovapipe.retention import NIGHTLY_BUILD_FACT, NIGHTLY_PROFILE_FACT, apply_retention
from ovapipe.runs import claim_report_folder, kube_image_name, run_suffix
from ovapipe.steps import sigterm_as_interrupt

if TYPE_CHECKING:
    from ovapipe.ova.signing import Signer

STATE_FILE: Final = "state.json"
INTERRUPTED_MESSAGE: Final = "interrupted (Ctrl-C or SIGTERM)"


@dataclass(frozen=True)
class NightlyRequest:
    profiles: tuple[str, ...]
    datacenters: tuple[str, ...]
    keep: int = 3
    report_dir: Path = Path("output/report")
    output_dir: Path = Path("output")
    resume: bool = False
    var_files: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    cluster: str | None = None
    datastore: str | None = None
    network: str | None = None
    folder: str | None = None
    concurrency: int = 2
    pipeline_id: str | None = None  # invoke.yaml ovapipe.pipeline_id: retention's owner mark
    signer: Signer | None = None  # --sign: build-ova signs each OVA
    require_signature: bool = False  # invoke.yaml ovapipe.signing.require
    trust: Path | None = None  # invoke.yaml ovapipe.signing.trust
    iso: IsoSettings = field(default_factory=lambda: IsoSettings())  # invoke.yaml ovapipe.iso
    library: str | None = None  # invoke.yaml ovapipe.library: publish through this library


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "nogit"


def build_stamp(now: dt.datetime | None = None) -> str:
    """UTC date and time, sortable: 20261128-031500."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")


def image_name(values: Mapping[str, Any], build_id: str) -> str:
    """One profile's nightly artifacts (OVA, folder, templates): <os>-kube-v<semver>-<build id>."""
    return kube_image_name(str(values["vm_name"]), str(values["kubernetes_version"]), build_id)


@dataclass
class _Profile:
    name: str
    image: str
    build_id: str = ""
    output: Path | None = None
    ova: Path | None = None


@dataclass
class _Stages:
    """Runs stages, times them, records them in the report and writes it after each one."""

    report: NightlyReport
    folder: Path
    log: TextIO
    heartbeat: Callable[[], None] = lambda: None  # raises when the run lost its lock

    def run(self, stage: str, target: str, action: Callable[[], dict[str, str] | None],
            *, reused: dict[str, str] | None = None) -> bool:
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        clock = time.monotonic()
        if reused is not None:
            self._add(StageResult(stage, "reused", started, 0.0, target,
                                  "artifacts verified, stage reused", reused))
            return True
        self.log.write(f"==> {stage} [{target}]\n")
        self.log.flush()
        try:
            self.heartbeat()
            checkpoint(f"nightly.{stage}.before")
            artifacts = action() or {}
        except (KeyboardInterrupt, Interrupted) as exc:
            # An inner run (build-ova, publish) turns Ctrl-C into Interrupted after its
            # cleanups: either way the job stops here, it does not go on to the next stage.
            self._add(StageResult(stage, "interrupted", started, time.monotonic() - clock,
                                  target, INTERRUPTED_MESSAGE))
            raise Interrupted(f"interrupted during {stage} [{target}]") from exc
        except OvapipeError as exc:
            self._failed(stage, target, started, clock, exc.message)
            return False
        except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            from ovapipe.vsphere.tasks import fault_message

            self._failed(stage, target, started, clock,
                         f"the connection to vCenter failed: {fault_message(exc)}")
            return False
        except Exception as exc:
            from ovapipe.vsphere.tasks import vsphere_fault

            # Unattended: the report must name the stage even when ovapipe itself is at fault.
            fault = vsphere_fault(exc)
            self._failed(stage, target, started, clock, fault.message if fault else
                         f"internal error: {type(exc).__name__}: {exc}")
            return False
        self._add(StageResult(stage, "ok", started, time.monotonic() - clock, target,
                              artifacts.pop("_message", ""), artifacts))
        return True

    def _failed(self, stage: str, target: str, started: str, clock: float, message: str
                ) -> None:
        self._add(StageResult(stage, "failed", started, time.monotonic() - clock, target,
                              message))

    def skip(self, stage: str, target: str, why: str) -> None:
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._add(StageResult(stage, "skipped", started, 0.0, target, why))

    def _add(self, result: StageResult) -> None:
        self.report.stages.append(result)
        self.report.write(self.folder)


class _State:
    """Finished stages and their artifacts' checksums, for --resume.

    A file's sha256 is computed at most once per run (an OVA is many GB): checksums the
    build already knows are passed in, and verified ones are remembered by size and mtime.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: dict[tuple[str, int, int], str] = {}
        try:
            self.data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def _key(self, path: Path) -> tuple[str, int, int]:
        status = path.stat()
        return str(path), status.st_size, status.st_mtime_ns

    def sha256(self, path: Path) -> str:
        key = self._key(path)
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]

    def reusable(self, profile: str, stage: str) -> dict[str, str] | None:
        entry = self.data.get("profiles", {}).get(profile, {}).get(stage)
        if not entry:
            return None
        for artifact, digest in entry.get("checksums", {}).items():
            path = Path(artifact)
            if not path.is_file() or self.sha256(path) != digest:
                return None
        return dict(entry.get("artifacts", {}))

    def finished(self, profile: str, stage: str, artifacts: Mapping[str, str],
                 files: Mapping[Path, str | None]) -> None:
        """Record a finished stage; ``files`` maps each artifact to its sha256 if known."""
        for path, digest in files.items():
            if digest is not None:
                self._known[self._key(path)] = digest
        entry = {"artifacts": dict(artifacts),
                 "checksums": {str(p): self.sha256(p) for p in files}}
        self.data.setdefault("profiles", {}).setdefault(profile, {})[stage] = entry
        write_json(self.path, self.data)


def _previous_stamp(state: _State) -> tuple[str, str] | None:
    stamp, commit = state.data.get("stamp"), state.data.get("commit")
    return (stamp, commit) if stamp and commit else None


def run_nightly(request: NightlyRequest, env: Mapping[str, str] | None = None,
                log: TextIO | None = None) -> NightlyReport:
    """Run the job; returns the report (also written to ``request.report_dir``)."""
    env = os.environ if env is None else env
    log = log or sys.stderr
    if not request.profiles:
        raise ConfigError("no profile given: pass --profile NAME (repeatable)")
    if not request.datacenters or not all(dc.strip() for dc in request.datacenters):
        raise ConfigError("no datacenter given (an empty name counts as none): pass "
                          "--datacenter NAME or set VSPHERE_DATACENTER")
    if request.keep < 1:
        raise ConfigError(f"--keep {request.keep}: keep at least 1 (the template just published)")
    from ovapipe.nightly_preflight import preflight, resolve_profiles

    # Unknown profiles and bad variables are usage errors before anything starts.
    resolved = resolve_profiles(request, env)
    connection = connection_from_env(env, prompt=False)
    stamp, commit, suffix = build_stamp(), git_commit(), run_suffix(env)
    folder, folder_lock, note = claim_report_folder(request.report_dir,
                                                    f"{stamp}-{commit}-{suffix}")
    if note:
        log.write(f"{note}\n")
    state = _State(folder / STATE_FILE)
    if request.resume and (previous := _previous_stamp(state)):
        stamp, commit, suffix = (*previous, state.data.get("suffix", suffix))
    else:
        state.data = {"stamp": stamp, "commit": commit, "suffix": suffix}
    build_id = f"{stamp}-{commit}-{suffix}"
    report = NightlyReport(build_id, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           folder=folder)
    stages = _Stages(report, folder, log)
    try:
        with sigterm_as_interrupt():
            try:
                if stages.run("preflight", "vcenter",
                              lambda: preflight(request, resolved, connection)):
                    for profile in request.profiles:
                        job = _Profile(profile, image_name(resolved[profile].values, build_id),
                                       build_id)
                        _locked_profile(request, job, connection, env, state, stages, log)
            except (KeyboardInterrupt, Interrupted) as exc:
                # Between stages or inside one: the job stops, the report says so, never green.
                report.interrupt(str(exc) if isinstance(exc, Interrupted) else
                                 "interrupted between stages (Ctrl-C or SIGTERM)")
                report.write(folder)
                log.write(report.summary() + "\n")
                raise Interrupted(f"{report.interrupted}; report: "
                                  f"{folder / 'report.json'}") from None
    finally:
        folder_lock.release()
        report.add_to_step_summary(env)
    return report


def _locked_profile(request: NightlyRequest, job: _Profile, connection: Connection,
                    env: Mapping[str, str], state: _State, stages: _Stages, log: TextIO) -> None:
    """One profile's stages under that profile's lock (other profiles run concurrently)."""
    from ovapipe.vsphere.lock import NightlyLock

    lock = NightlyLock(connection, job.build_id or stages.report.build_id, job.name)

    def take_lock() -> dict[str, str]:
        lock.acquire()
        lock.start_heartbeats()
        return {"_message": f"{lock.name} held by {lock.holder.describe()}"}

    try:
        if not stages.run("lock", job.name, take_lock):
            for stage in ("vars", "build-ova", "validate-ova"):
                stages.skip(stage, job.name, "skipped: lock failed")
            _skip_rest(request, job, stages, "lock")
            return
        stages.heartbeat = lock.check
        _run_profile(request, job, connection, env, state, stages, log)
        checkpoint("nightly.profile.end")  # between stages: after retention, lock still held
    finally:
        stages.heartbeat = _no_heartbeat
        lock.release()


def _no_heartbeat() -> None:
    return None


def _run_profile(request: NightlyRequest, job: _Profile, connection: Connection,
                 env: Mapping[str, str], state: _State, stages: _Stages, log: TextIO) -> None:
    sets = (*request.sets, f"vm_name={job.image}")
    job.output = request.output_dir / job.image

    def do_vars() -> dict[str, str]:
        from ovapipe.varfiles import resolve, write_vars

        resolved = resolve(job.name, request.var_files, sets, env=env)
        written = write_vars(resolved, job.output or request.output_dir)
        state.finished(job.name, "vars", {"packer-vars.json": str(written)}, {written: None})
        return {"packer-vars.json": str(written)}

    def do_build() -> dict[str, str]:
        from ovapipe.build import BuildRequest, build_ova

        result = build_ova(BuildRequest(job.name, request.var_files, sets,
                                        out=request.output_dir, signer=request.signer,
                                        iso=request.iso),
                           env=env, log=log)
        job.ova = result.ova
        artifacts = {"ova": str(result.ova), "sha256": result.sha256}
        state.finished(job.name, "build-ova", artifacts, {result.ova: result.sha256})
        return artifacts

    def do_validate_ova() -> dict[str, str]:
        from ovapipe.validators.ova import validate_ova

        assert job.ova is not None
        report = validate_ova(job.ova, require_signature=request.require_signature,
                              trust=request.trust, inspect=True)
        if not report.ok:
            raise CheckFailed("; ".join(f"{f.rule}: {f.message}" for f in report.errors))
        artifacts = {"ova": str(job.ova), "_message": f"{report.vmx} {report.firmware}"}
        state.finished(job.name, "validate-ova", {"ova": str(job.ova)}, {job.ova: None})
        return artifacts

    steps: list[tuple[str, Callable[[], dict[str, str]]]] = [
        ("vars", do_vars), ("build-ova", do_build), ("validate-ova", do_validate_ova)]
    for stage, action in steps:
        reused = state.reusable(job.name, stage) if request.resume else None
        if reused and "ova" in reused:
            job.ova = Path(reused["ova"])
        if not stages.run(stage, job.name, action, reused=reused):
            return _skip_rest(request, job, stages, stage)

    for datacenter in request.datacenters:
        _run_datacenter(request, job, datacenter, connection, stages, log)


def _skip_rest(request: NightlyRequest, job: _Profile, stages: _Stages, failed: str) -> None:
    why = f"skipped: {failed} failed"
    for stage in ("publish", "validate-template", "gpus", "cluster-template", "retention"):
        for datacenter in request.datacenters:
            stages.skip(stage, f"{job.name}/{datacenter}", why)


def _run_datacenter(request: NightlyRequest, job: _Profile, datacenter: str,
                    connection: Connection, stages: _Stages, log: TextIO) -> None:
    # Each stage logs in for itself: the build outlasts vCenter's idle-session timeout.
    from ovapipe.vsphere.connect import session

    target = f"{job.name}/{datacenter}"
    found: dict[str, Any] = {}

    def do_publish() -> dict[str, str]:
        from ovapipe.vsphere.publish import PublishOptions, publish

        assert job.ova is not None
        options = PublishOptions(
            ova=job.ova, datacenters=(datacenter,), cluster=request.cluster,
            datastore=request.datastore, network=request.network, folder=request.folder,
            name=job.image, concurrency=request.concurrency, output_dir=request.output_dir,
            pipeline_id=request.pipeline_id, require_signature=request.require_signature,
            trust=request.trust, library=request.library,
            # <profile>-<build id>: sorts by time within a profile, as earlier releases' did.
            facts={NIGHTLY_PROFILE_FACT: job.name,
                   NIGHTLY_BUILD_FACT: f"{job.name}-{job.build_id}"},
        )
        (record,) = publish(options, connection, log=log)
        library = ({"library_item": f"{request.library}/{record.library_item_id}"}
                   if record.library_item_id else {})
        return {"template": record.inventory_path, "moref": record.moref, **library,
                **{k: str(getattr(record, k) or "none") for k in ("vmx", "firmware", "snapshot")}}

    def do_validate_template() -> dict[str, str]:
        from ovapipe.validators.template import validate_template

        with session(connection) as service:
            report = validate_template(service, datacenter, job.image)
        if not report.ok:
            raise CheckFailed("; ".join(f"{f.rule}: {f.message}" for f in report.errors))
        return {"_message": f"{report.vmx} {report.firmware}"}

    def do_gpus() -> dict[str, str]:
        from ovapipe.vsphere.gpus import list_gpus

        with session(connection) as service:
            inventory = list_gpus(service, datacenter, request.cluster)
        found["groups"] = [g for g in inventory.summary if g.enabled]
        found["inventory"] = inventory
        text = "; ".join(g.render() for g in found["groups"])
        return {"_message": text or "no passthrough GPUs enabled"}

    def do_cluster_template() -> dict[str, str]:
        from ovapipe.clustertemplate import ClusterTemplateRequest
        from ovapipe.clustertemplate import run as cluster_template
        from ovapipe.vsphere.publish import record_path

        assert job.output is not None
        record = record_path(request.output_dir, job.image, datacenter)
        out = job.output / f"cluster-template-{datacenter}.yaml"
        # One GPU per worker, of the first kind the datacenter offers; other kinds and counts
        # are the user's call (`invoke cluster-template --gpu`).
        gpus = [g.pci_id.hex for g in found.get("groups", [])[:1]]
        result = cluster_template(ClusterTemplateRequest(out_path=out, publish_record=record,
                                                         gpus=gpus))
        for message in result.messages():
            log.write(f"{message}\n")
        from ovapipe.vsphere.gpu_check import inactive_gpu_warnings

        chosen = [g.pci_id for g in found.get("groups", [])[:1]]
        for warning in inactive_gpu_warnings(found.get("inventory"), chosen):
            log.write(f"warning: {warning}\n")
        from ovapipe.clustertemplate import CUDA_TEST_POD, GPU_OPERATOR_SCRIPT

        extras = {name: str(out.parent / name) for name in (GPU_OPERATOR_SCRIPT, CUDA_TEST_POD)
                  if (out.parent / name).is_file()}
        return {"manifest": str(out), **extras}

    def do_retention() -> dict[str, str]:
        with session(connection) as service:
            result = apply_retention(service, datacenter, job.name, request.keep, {job.image},
                                     request.pipeline_id, request.output_dir)
        message = result.message()
        if request.library is not None and datacenter == request.datacenters[0]:
            from ovapipe.retention import apply_library_retention
            from ovapipe.vsphere.library.rest import rest_session

            with rest_session(connection) as api:
                items = apply_library_retention(api, request.library, job.name, request.keep,
                                                {job.image}, request.pipeline_id)
            message += f"; library {request.library}: {items.message()}"
        return {"_message": message}

    for stage, action in (("publish", do_publish), ("validate-template", do_validate_template),
                          ("gpus", do_gpus), ("cluster-template", do_cluster_template)):
        if not stages.run(stage, target, action):
            remaining = ("validate-template", "gpus", "cluster-template", "retention")
            for later in remaining[remaining.index(stage) + 1 if stage in remaining else 0:]:
                stages.skip(later, target, f"skipped: {stage} failed")
            return
    stages.run("retention", target, do_retention)


def unlock_profiles(profiles: tuple[str, ...], env: Mapping[str, str], *, unlock: bool,
                    force: bool, out: TextIO | None = None) -> int:
    """``nightly --unlock [--yes]``: show each profile's lock holder; break it only with --yes.

    Returns the exit code: 0 when every lock is free (or was broken), 1 when one is held and
    was left alone.
    """
    from ovapipe.vsphere.lock import break_lock, lock_folder, show

    out = out or sys.stdout
    if force and not unlock:
        raise ConfigError("--yes only goes with --unlock")
    connection = connection_from_env(env, prompt=False)
    held = 0
    for profile in profiles:
        holder = show(connection, profile)
        if holder == "":
            out.write(f"{lock_folder(profile)}: free\n")
            continue
        text = holder if isinstance(holder, str) else holder.describe()
        if not force:
            out.write(f"{lock_folder(profile)}: held by {text}; add --yes to break it (only "
                      "when that run is no longer active)\n")
            held += 1
            continue
        break_lock(connection, profile)
        out.write(f"{lock_folder(profile)}: broken (was held by {text})\n")
    return 1 if held else 0
