"""Build and run ovapipe's local vSphere simulator (Debian's govmomi simulator + our Go files).

``build()`` compiles ``simulator/cmd/ovapipe-vcsim`` offline against a build-time copy of
Debian's ``github.com/vmware/govmomi/simulator`` package with the files of
``simulator/ext/`` added (Debian's tree is never modified). ``Simulator`` runs one instance
on a free loopback port and tells clients how to connect with a pinned certificate.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from types import TracebackType
from typing import Final

from ovapipe import config
from ovapipe.errors import BuildError, ConfigError, VSphereError
from ovapipe.paths import CACHE_DIR, SIMULATOR_SRC

GOVMOMI_SRC: Final = Path("/usr/share/gocode/src/github.com/vmware/govmomi")
GOVMOMI_PACKAGE: Final = "golang-github-vmware-govmomi-dev"
SIM_CACHE: Final = CACHE_DIR / "sim"
BINARY_NAME: Final = "ovapipe-vcsim"
START_TIMEOUT: Final = 30.0
TYPED_PATH: Final = "/ovapipe/typed"
MAX_INVENTORY_COUNT: Final = 16  # the simulator's bound on each inventory count


@dataclass(frozen=True)
class SimulatorOptions:
    """The simulator's flags (see ``simulator/cmd/ovapipe-vcsim``)."""

    vc_version: str = "7.0.3"
    esx_version: str = "7.0.3"
    gpus: Sequence[str] = ()  # "HOST_GLOB=VENDOR:DEVICE[:STATE[:CLASS]]", hex
    default_gpu: bool = True
    installer_vm: str | None = None
    installer_disk: Path | str | None = None
    installer_seconds: float = 3
    port: int = 0
    strict_vmx: bool = False  # refuse CreateVM_Task/ImportVApp of a vmx the hosts cannot run
    refuse_passthru: str | None = None  # host name glob whose UpdatePassthruConfig fails
    datacenters: int = 1  # DC0..DCn-1, each with its own clusters, hosts, datastore, network
    clusters: int = 1  # per datacenter
    cluster_hosts: int = 3  # per cluster
    hosts: int = 1  # standalone hosts per datacenter
    lease_timeout: float = 300  # seconds a lease lives without HttpNfcLeaseProgress

    def problems(self) -> list[str]:
        """Every flag problem, found before anything is created (folders, processes).

        GPU specs are the simulator's own (it refuses bad ones with exit 2, and start() then
        removes the folder it had made)."""
        from ovapipe.hardware import esxi_key

        found: list[str] = []
        keys = {}
        for flag, version in (("--vc-version", self.vc_version),
                              ("--esx-version", self.esx_version)):
            try:
                keys[flag] = esxi_key(version)
            except ValueError as exc:
                found.append(f"{flag}: {exc} (expected e.g. 7.0.3)")
        if len(keys) == 2 and keys["--vc-version"] < keys["--esx-version"]:
            found.append(f"--vc-version {self.vc_version} is older than --esx-version "
                         f"{self.esx_version}: vCenter cannot manage newer hosts")
        if not 0 <= self.port <= 65535:
            found.append(f"--port {self.port}: expected 0 (a free port) to 65535")
        for flag, value, least in (("--datacenters", self.datacenters, 1),
                                   ("--clusters", self.clusters, 0),
                                   ("--cluster-hosts", self.cluster_hosts, 1),
                                   ("--hosts", self.hosts, 0)):
            if not least <= value <= MAX_INVENTORY_COUNT:
                found.append(f"{flag} {value}: expected {least} to {MAX_INVENTORY_COUNT}")
        if self.clusters == 0 and self.hosts == 0:
            found.append("--clusters 0 --hosts 0: a datacenter needs at least one host")
        if not 0.1 <= self.lease_timeout <= 86400:
            found.append(f"--lease-timeout {self.lease_timeout:g}: expected 0.1 to 86400 "
                         "seconds")
        if not 0 <= self.installer_seconds <= 86400:
            found.append(f"--installer-seconds {self.installer_seconds:g}: expected 0 to 86400")
        if self.installer_vm is not None and self.installer_disk is None:
            found.append("--installer-vm needs --installer-disk (simulator: installer_vm needs "
                         "installer_disk)")
        if self.installer_disk is not None:
            if self.installer_vm is None:
                found.append("--installer-disk needs --installer-vm (the VM name glob whose "
                             "power-on writes it)")
            if not Path(self.installer_disk).is_file():
                found.append(f"--installer-disk {self.installer_disk}: no such file")
        return found

    def check(self) -> None:
        found = self.problems()
        if found:
            raise ConfigError("; ".join(found))

    def argv(self) -> list[str]:
        args = ["--vc-version", self.vc_version, "--esx-version", self.esx_version]
        for gpu in self.gpus:
            args += ["--gpu", gpu]
        if not self.default_gpu:
            args.append("--no-default-gpu")
        if self.installer_vm is not None:
            if self.installer_disk is None:
                raise ConfigError("simulator: installer_vm needs installer_disk")
            args += [
                "--installer-vm", self.installer_vm,
                "--installer-disk", str(Path(self.installer_disk).resolve()),
                "--installer-seconds", str(self.installer_seconds),
            ]
        if self.strict_vmx:
            args.append("--strict-vmx")
        if self.refuse_passthru is not None:
            args += ["--refuse-passthru", self.refuse_passthru]
        args += ["--datacenters", str(self.datacenters), "--clusters", str(self.clusters),
                 "--cluster-hosts", str(self.cluster_hosts), "--hosts", str(self.hosts)]
        if self.lease_timeout != 300:
            args += ["--lease-timeout", repr(float(self.lease_timeout))]
        args += ["--port", str(self.port)]
        return args


# ---------------------------------------------------------------------------- build


@dataclass(frozen=True)
class BuildPaths:
    root: Path = SIM_CACHE

    @property
    def gopath(self) -> Path:
        return self.root / "gopath"

    @property
    def package_copy(self) -> Path:
        return self.gopath / "src/github.com/vmware/govmomi/simulator"

    @property
    def gocache(self) -> Path:
        return self.root / "gocache"

    @property
    def binary(self) -> Path:
        return self.root / "bin" / BINARY_NAME

    @property
    def stamp(self) -> Path:
        return self.root / "stamp"

    @property
    def lock(self) -> Path:
        return self.root / "build.lock"


def _run_text(argv: Sequence[str]) -> str:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        raise BuildError(
            f"{argv[0]} not found: install Debian's golang-go and {GOVMOMI_PACKAGE} "
            "(scripts/setup does)"
        ) from None
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"{' '.join(argv)} failed: {exc.stderr.strip()}") from None


def go_sources() -> list[Path]:
    return sorted(p for p in SIMULATOR_SRC.rglob("*.go") if p.is_file())


def build_stamp() -> str:
    """Hash of our Go sources, Debian's govmomi package version and the Go version."""
    digest = hashlib.sha256()
    for source in go_sources():
        digest.update(str(source.relative_to(SIMULATOR_SRC)).encode() + b"\0")
        digest.update(source.read_bytes() + b"\0")
    digest.update(_run_text(["dpkg-query", "-W", "-f", "${Version}", GOVMOMI_PACKAGE]).encode())
    digest.update(_run_text(["go", "version"]).encode())
    return digest.hexdigest()


def _copy_package(paths: BuildPaths) -> None:
    """Debian's simulator package (without tests) plus simulator/ext/*.go, in the cache."""
    debian = GOVMOMI_SRC / "simulator"
    if not debian.is_dir():
        raise BuildError(f"{debian} missing: apt-get install {GOVMOMI_PACKAGE}")
    # GOPATH resolves each import path in the first GOPATH entry that has its directory, so
    # the rest of govmomi is linked next to the copy (an empty parent would hide it).
    govmomi = paths.package_copy.parent
    if govmomi.exists():
        shutil.rmtree(govmomi)
    govmomi.mkdir(parents=True)
    for entry in sorted(GOVMOMI_SRC.iterdir()):
        if entry.name != "simulator":
            (govmomi / entry.name).symlink_to(entry)
    shutil.copytree(debian, paths.package_copy, ignore=shutil.ignore_patterns("*_test.go"))
    for source in sorted((SIMULATOR_SRC / "ext").glob("*.go")):
        target = paths.package_copy / source.name
        if target.exists():
            raise BuildError(f"{source} would shadow Debian's {source.name}: rename it")
        shutil.copy2(source, target)


def build(paths: BuildPaths | None = None, *, quiet: bool = False) -> Path:
    """Build the simulator binary if its sources, govmomi or Go changed; return its path."""
    paths = paths or BuildPaths()
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = build_stamp()
        if (
            paths.binary.exists()
            and paths.stamp.exists()
            and paths.stamp.read_text().strip() == stamp
        ):
            if not quiet:
                print(f"simulator up to date: {paths.binary}", file=sys.stderr)
            return paths.binary
        started = time.monotonic()
        _copy_package(paths)
        paths.binary.parent.mkdir(parents=True, exist_ok=True)
        partial = paths.binary.with_name(paths.binary.name + ".partial")
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOPATH": f"{paths.gopath}:/usr/share/gocode",
            "GOCACHE": str(paths.gocache),
            "GOFLAGS": "",
            "CGO_ENABLED": "0",
        }
        result = subprocess.run(
            ["go", "build", "-o", str(partial), "./cmd/" + BINARY_NAME],
            cwd=SIMULATOR_SRC,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BuildError(f"building the simulator failed:\n{result.stderr.strip()}")
        partial.replace(paths.binary)
        paths.stamp.write_text(stamp + "\n")
        if not quiet:
            print(
                f"built {paths.binary} in {time.monotonic() - started:.1f}s",
                file=sys.stderr,
            )
        return paths.binary


# ---------------------------------------------------------------------------- run

_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (no orphaned simulators)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Simulator:
    """One running simulator: ``with Simulator(SimulatorOptions()) as sim: sim.connection``."""

    options: SimulatorOptions = field(default_factory=SimulatorOptions)
    binary: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)
    _info: dict[str, object] = field(default_factory=dict, init=False, repr=False)
    _saved_log: str = field(default="", init=False, repr=False)
    startup_seconds: float = field(default=0.0, init=False)

    # -- lifecycle

    def start(self) -> Simulator:
        if self._process is not None:
            return self
        self.options.check()
        argv = self.options.argv()
        binary = self.binary or build(quiet=True)
        self._workdir = Path(tempfile.mkdtemp(prefix="ovapipe-sim-"))
        info_file = self._workdir / "info.json"
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [str(binary), *argv, "--info-file", str(info_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                env={**os.environ, "TMPDIR": str(self._workdir)},
                preexec_fn=_die_with_parent,
            )
        try:
            self._info = self._wait_for_info(info_file)
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_for_info(self, info_file: Path) -> dict[str, object]:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                # ovapipe-vcsim exits 2 on bad flags (usage), anything else is a failure.
                error = ConfigError if self._process.returncode == 2 else VSphereError
                raise error(f"simulator: {self.log_text().strip()}")
            if info_file.exists():
                loaded = json.loads(info_file.read_text())
                assert isinstance(loaded, dict)
                return loaded
            time.sleep(0.01)
        raise VSphereError(f"simulator did not start within {START_TIMEOUT:.0f}s")

    def _wait_until_answering(self) -> None:
        from ovapipe.vsphere.connect import PinnedHTTPSConnection

        conn = self.connection
        deadline = time.monotonic() + START_TIMEOUT
        problem = "no answer"
        while time.monotonic() < deadline:
            http = PinnedHTTPSConnection(conn.host, conn.port, conn, timeout=5)
            try:
                http.request("GET", "/sdk/vimServiceVersions.xml")
                status = http.getresponse().status
                if status == 200:
                    return
                problem = f"HTTP {status}"
            except (OSError, HTTPException) as exc:
                problem = str(exc)
            finally:
                http.close()
            time.sleep(0.02)
        raise VSphereError(f"simulator at {self.url} does not answer: {problem}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._saved_log = self.log_text()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- what clients need

    def _value(self, key: str) -> str:
        if not self._info:
            raise VSphereError("simulator not started")
        return str(self._info[key])

    @property
    def env(self) -> dict[str, str]:
        """VSPHERE_SERVER, _USERNAME, _PASSWORD and _TLS_THUMBPRINT for this simulator."""
        names = (config.ENV_SERVER, config.ENV_USERNAME, config.ENV_PASSWORD,
                 config.ENV_THUMBPRINT)
        return {name: self._value(name) for name in names}

    @property
    def connection(self) -> config.Connection:
        return config.connection_from_env(self.env, prompt=False)

    @property
    def url(self) -> str:
        return self._value("url")

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise VSphereError("simulator not started")
        return self._workdir / "simulator.log"

    def log_text(self) -> str:
        if self._workdir is None:
            return self._saved_log
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    def _get(self, path: str, query: Mapping[str, str]) -> bytes:
        from ovapipe.vsphere.connect import PinnedHTTPSConnection

        conn = self.connection
        http = PinnedHTTPSConnection(conn.host, conn.port, conn, timeout=30)
        try:
            http.request("GET", f"{path}?{urllib.parse.urlencode(query)}")
            response = http.getresponse()
            body = response.read()
            if response.status != 200:
                raise VSphereError(f"GET {path}: HTTP {response.status}: {body!r}")
            return body
        finally:
            http.close()

    def typed_text(self, vm_name: str) -> str:
        """What PutUsbScanCodes typed into the VM, decoded ("\\n" for Enter, "<f2>" ...)."""
        return self._get(TYPED_PATH, {"vm": vm_name}).decode()


def connect_instructions(sim: Simulator) -> str:
    """Shell lines that point CAPV/govc/ovapipe at the simulator, with its start-up time."""
    lines = [f"export {name}={value}" for name, value in sim.env.items()]
    lines.append(
        f"# {sim.url}: vCenter {sim.options.vc_version}, ESXi {sim.options.esx_version}, "
        f"started in {sim.startup_seconds:.2f}s (Ctrl-C stops it)"
    )
    return "\n".join(lines)


def serve(options: SimulatorOptions, announce: Callable[[str], object]) -> None:
    """Run a simulator until Ctrl-C or SIGTERM (KeyboardInterrupt: exit 130), or until it dies,
    which is an error. Either way its folder (info.json holds the password) is removed."""
    from ovapipe.steps import sigterm_as_interrupt

    options.check()
    with sigterm_as_interrupt():
        sim = Simulator(options, binary=build())
        try:
            with sim:
                announce(connect_instructions(sim))
                while sim.running:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            announce("stopping the simulator")
            raise
    raise VSphereError(f"the simulator exited by itself:\n{sim.log_text().strip()}")


def hardware_table(binary: Path | None = None) -> dict[int, str]:
    """The vmx -> ESXi table compiled into the simulator (must equal hardware.VMX_MIN_ESXI)."""
    output = _run_text([str(binary or build(quiet=True)), "--print-hardware-table"])
    return {int(vmx): esxi for vmx, esxi in json.loads(output).items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["build"]:
        print("usage: python -m ovapipe.simulator build", file=sys.stderr)
        return 2
    try:
        build()  # says "built PATH in N s" or "simulator up to date: PATH"
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
