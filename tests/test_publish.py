"""invoke publish against the govmomi simulator over pinned TLS.

After every failure the simulator must hold exactly what it held before: the same VMs, no
lease that still accepts bytes, no files of the half-imported VM on the datastore.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from ovapipe.config import Connection
from ovapipe.errors import CheckFailed, ConfigError, Interrupted, OvapipeError, StepFailed
from ovapipe.paths import REPO_ROOT
from ovapipe.progress import Progress
from ovapipe.vsphere import lease as lease_module
from ovapipe.vsphere.connect import PinnedHTTPSConnection, session
from ovapipe.vsphere.publish import PublishOptions, publish, record_path

pytestmark = [pytest.mark.simulator, pytest.mark.slow]

NAME = "ubuntu-2004-efi-test"
# The handoff record (output/NAME/publish-DC.json) that cluster-template and nightly read.
RECORD_KEYS = ("datacenter", "template", "inventory_path", "moref", "instance_uuid",
               "vmx", "firmware", "secure_boot", "snapshot", "ova_sha256", "provenance",
               "library_id", "library_item_id")
UNSIGNED = {"signer": None, "signer_fingerprint": None, "signer_trusted": None, "sbom": None,
            "sbom_sha256": None}


# ---- helpers ---------------------------------------------------------------------------------

def quiet(_label: str, total: int | None) -> Progress:
    return Progress("test", total, io.StringIO(), tty=False)


def options(ova: Path, out: Path, **changes: Any) -> PublishOptions:
    base = PublishOptions(ova=ova, datacenters=("DC0",), cluster="DC0_C0", datastore="LocalDS_0",
                          network="VM Network", output_dir=out)
    return replace(base, **changes)


def run_publish(opts: PublishOptions, connection: Connection,
                progress: Callable[[str, int | None], Progress] = quiet) -> list[dict[str, Any]]:
    return [r.as_dict() for r in publish(opts, connection, log=io.StringIO(), progress=progress)]


@dataclass
class Inventory:
    vms: set[tuple[str, str]]
    datastore_entries: set[str]


def inventory(connection: Connection) -> Inventory:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import retrieve

    with session(connection) as si:
        vms = {(vm.obj._moId, vm.name) for vm in retrieve(si, vim.VirtualMachine, ["name"])}
        urls = [ds.get("info.url") for ds in retrieve(si, vim.Datastore, ["info.url"])]
    entries = {f"{url}/{p.name}" for url in urls if url for p in Path(url).iterdir()}
    return Inventory(vms, entries)


def read_template(connection: Connection, name: str) -> dict[str, Any]:
    from ovapipe.vsphere.template import snapshot_names, vms_named

    with session(connection) as si:
        [vm] = vms_named(si, name)
        props = dict(vm.props)
        props["snapshots"] = snapshot_names(vm)
        props["moref"] = vm.obj._moId
        return props


@dataclass
class LeaseSpy:
    """Records every lease publish holds and the URLs it was given."""

    leases: list[Any] = field(default_factory=list)
    urls: list[lease_module.Target] = field(default_factory=list)

    def assert_all_gone(self) -> None:
        """A lease that was completed or aborted no longer accepts (or serves) bytes."""
        for target in self.urls:
            from urllib.parse import urlsplit

            parts = urlsplit(target.url)
            conn = PinnedHTTPSConnection(parts.hostname or "", parts.port or 443,
                                         target.connection)
            try:
                conn.request("GET", parts.path)
                status = conn.getresponse().status
            finally:
                conn.close()
            assert status == 404, f"lease URL {target.url} still answers {status}"


@pytest.fixture
def lease_spy(monkeypatch: pytest.MonkeyPatch) -> LeaseSpy:
    spy = LeaseSpy()
    original = lease_module.hold_lease

    @contextlib.contextmanager
    def spying(*args: Any, **kwargs: Any) -> Iterator[Any]:
        spy.leases.append(args[1])
        with original(*args, **kwargs) as held:
            spy.urls.extend(held.targets)
            yield held

    monkeypatch.setattr(lease_module, "hold_lease", spying)
    return spy


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the happy path --------------------------------------------------------------------------

def test_publish_gives_a_vmx17_efi_template_with_snapshot_and_sha256(
    simulator: Any, efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy
) -> None:
    [record] = run_publish(options(efi_ova, tmp_path), simulator.connection)

    template = read_template(simulator.connection, NAME)
    assert template["config.version"] == "vmx-17"
    assert template["config.firmware"] == "efi"
    assert template["config.template"] is True
    assert template["snapshots"] == ["root"]
    assert f"ovapipe.ova_sha256: {sha256_of(efi_ova)}" in template["config.annotation"]
    assert "ovapipe.build.IMAGE_VERSION: ubuntu-2004-efi-kube-v1.27.3-test" in \
        template["config.annotation"]

    assert set(record) == set(RECORD_KEYS)
    assert record == {
        "datacenter": "DC0", "template": NAME, "inventory_path": f"/DC0/vm/{NAME}",
        "moref": template["moref"], "instance_uuid": template["config.instanceUuid"],
        "vmx": "vmx-17", "firmware": "efi", "secure_boot": False, "snapshot": "root",
        "ova_sha256": sha256_of(efi_ova), "provenance": UNSIGNED, "library_id": None,
        "library_item_id": None,
    }
    assert json.loads(record_path(tmp_path, NAME, "DC0").read_text()) == record
    lease_spy.assert_all_gone()


def test_the_disk_bytes_reach_the_datastore(simulator: Any, efi_ova: Path, tmp_path: Path) -> None:
    from ovapipe.ova import read_ova

    run_publish(options(efi_ova, tmp_path), simulator.connection)
    index = read_ova(efi_ova)
    [(_, member)] = index.disks()
    assert member is not None
    with efi_ova.open("rb") as handle:
        handle.seek(member.offset)
        disk = handle.read(member.size)
    stored = [p for entry in inventory(simulator.connection).datastore_entries
              for p in Path(entry).rglob("*.vmdk")]
    assert any(p.read_bytes() == disk for p in stored), stored


def test_without_a_sidecar_the_sha256_comes_from_the_upload_read(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    ova = tmp_path / efi_ova.name
    shutil.copyfile(efi_ova, ova)
    [record] = run_publish(options(ova, tmp_path / "out"), simulator.connection)
    assert record["ova_sha256"] == sha256_of(efi_ova)


def test_publishing_the_same_ova_again_changes_nothing(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    [first] = run_publish(options(efi_ova, tmp_path), simulator.connection)
    before = inventory(simulator.connection)
    [second] = run_publish(options(efi_ova, tmp_path), simulator.connection)
    assert second == first
    assert inventory(simulator.connection) == before


def test_no_snapshot_flag(simulator: Any, efi_ova: Path, tmp_path: Path) -> None:
    [record] = run_publish(options(efi_ova, tmp_path, snapshot=False), simulator.connection)
    assert record["snapshot"] is None
    assert read_template(simulator.connection, NAME)["snapshots"] == []


# ---- preflight -------------------------------------------------------------------------------

def test_esxi_67_is_refused_before_any_upload_naming_host_and_version(
    make_simulator: Callable[..., Any], efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy
) -> None:
    sim = make_simulator(vc_version="7.0.3", esx_version="6.7.0")
    before = inventory(sim.connection)
    with pytest.raises(StepFailed) as failure:
        run_publish(options(efi_ova, tmp_path), sim.connection)
    message = str(failure.value)
    assert failure.value.step == "preflight" and failure.value.exit_code == 1
    assert "host DC0_C0_H0 runs ESXi 6.7.0, but vmx-17 needs ESXi 7.0 or newer" in message
    assert lease_spy.leases == []
    assert inventory(sim.connection) == before
    assert "nfc" not in sim.log_text().lower()


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"datacenters": ("DC9",)}, ConfigError,
         "datacenter 'DC9' (--datacenter) not found; available: /DC0"),
        ({"datastore": "NoSuchDS"}, ConfigError,
         "datastore 'NoSuchDS' (--datastore) not found in datacenter /DC0; available: "
         "/DC0/datastore/LocalDS_0"),
        ({"network": "NoSuchNet"}, ConfigError,
         "network 'NoSuchNet' (--network) not found in datacenter /DC0; available: "),
        ({"cluster": "NoCluster"}, ConfigError, "'NoCluster' (--cluster) not found"),
        ({"name": "DC0_H0_VM0"}, CheckFailed,
         "/DC0/vm/DC0_H0_VM0 is a VM, not a template: ovapipe does not replace VMs"),
    ],
    ids=["datacenter", "datastore", "network", "cluster", "name-collision"],
)
def test_bad_names_fail_before_anything_is_created(
    simulator: Any, efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy,
    changes: dict[str, Any], error: type[OvapipeError], message: str,
) -> None:
    before = inventory(simulator.connection)
    with pytest.raises(StepFailed) as failure:
        run_publish(options(efi_ova, tmp_path, **changes), simulator.connection)
    assert isinstance(failure.value.cause, error)
    assert message in str(failure.value)
    assert failure.value.exit_code == error.exit_code
    assert lease_spy.leases == []
    assert inventory(simulator.connection) == before
    assert not record_path(tmp_path, changes.get("name", NAME), "DC0").exists()


def test_wrong_password_is_a_config_error(simulator: Any, efi_ova: Path, tmp_path: Path) -> None:
    before = inventory(simulator.connection)
    wrong = replace(simulator.connection, password="not-the-password")
    with pytest.raises(StepFailed) as failure:
        run_publish(options(efi_ova, tmp_path), wrong)
    assert "login failed for user 'user'" in str(failure.value)
    assert failure.value.exit_code == 2
    assert "not-the-password" not in str(failure.value)
    assert inventory(simulator.connection) == before


# ---- faults during the upload ----------------------------------------------------------------

class Proxy:
    """A TCP proxy in front of the simulator that watches what each client connection sends.

    ``limit``: drop a connection once it has sent that many bytes (SOAP calls are small, so
    only a disk upload is cut, mid-disk). ``throttle``: seconds to sleep per 64 KiB sent.
    ``rate``: bytes per second each connection may send (a disk upload takes at least its
    size / rate; a SOAP call of a few KiB hardly waits).
    ``uploading`` is set once a connection has sent ``signal_after`` bytes.
    """

    def __init__(self, target_port: int, limit: int | None = None, throttle: float = 0.0,
                 signal_after: int = 256 * 1024, rate: float | None = None) -> None:
        self.target_port = target_port
        self.limit = limit
        self.throttle = throttle
        self.rate = rate
        self.signal_after = signal_after
        self.uploading = threading.Event()
        self.cuts = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        sent = 0
        try:
            while data := source.recv(1 << 16):
                sent += len(data)
                if upstream and sent > self.signal_after:
                    self.uploading.set()
                if upstream and self.limit is not None and sent > self.limit:
                    self.cuts += 1
                    break
                if upstream and self.throttle:
                    time.sleep(self.throttle)
                if upstream and self.rate:
                    time.sleep(len(data) / self.rate)
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()


def test_a_connection_dropped_mid_disk_leaves_nothing(
    simulator: Any, efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy
) -> None:
    before = inventory(simulator.connection)
    proxy = Proxy(simulator.connection.port, limit=600 * 1024)
    try:
        through_proxy = replace(simulator.connection, port=proxy.port)
        with pytest.raises(StepFailed) as failure:
            run_publish(options(efi_ova, tmp_path), through_proxy)
    finally:
        proxy.close()
    assert proxy.cuts >= 1
    assert failure.value.step == "import"
    assert "upload of ubuntu-2004-efi-test-disk1.vmdk failed (" in str(failure.value)
    assert "the server closed the connection" in str(failure.value)
    assert inventory(simulator.connection) == before
    lease_spy.assert_all_gone()


def test_a_lease_aborted_on_the_server_side_leaves_nothing(
    simulator: Any, efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy
) -> None:
    """Someone (an administrator, a vCenter timeout) aborts the lease while bytes flow."""
    before = inventory(simulator.connection)

    class AbortingElsewhere(Progress):
        def advance(self, count: int) -> None:
            super().advance(count)
            if self.done >= 512 * 1024 and lease_spy.leases:
                with contextlib.suppress(Exception):
                    lease_spy.leases[-1].HttpNfcLeaseAbort()

    with pytest.raises(StepFailed) as failure:
        run_publish(options(efi_ova, tmp_path), simulator.connection,
                    progress=lambda label, total: AbortingElsewhere(label, total, io.StringIO(),
                                                                   tty=False))
    assert failure.value.step == "import"
    assert "aborted or timed out on the server side" in str(failure.value)
    assert inventory(simulator.connection) == before
    lease_spy.assert_all_gone()


def test_ctrl_c_during_the_upload_leaves_nothing(
    simulator: Any, efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy
) -> None:
    before = inventory(simulator.connection)

    class Interrupting(Progress):
        def advance(self, count: int) -> None:
            super().advance(count)
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="interrupted during step 'import'"):
        run_publish(options(efi_ova, tmp_path), simulator.connection,
                    progress=lambda label, total: Interrupting(label, total, io.StringIO(),
                                                              tty=False))
    assert inventory(simulator.connection) == before
    assert lease_spy.leases and lease_spy.urls
    lease_spy.assert_all_gone()
    assert not record_path(tmp_path, NAME, "DC0").exists()


LEASE_TIMEOUT = 2.0  # seconds; the simulator's lease dies this long after the last progress


def slow_proxy(simulator: Any, ova: Path) -> Proxy:
    """A proxy through which the disk upload lasts at least 2.5 lease timeouts."""
    from ovapipe.ova import read_ova

    disk_bytes = sum(m.size for m in read_ova(ova).members if m.name.endswith(".vmdk"))
    return Proxy(simulator.connection.port, rate=disk_bytes / (2.5 * LEASE_TIMEOUT))


def test_an_upload_slower_than_the_lease_timeout_lives_on_its_keepalive(
    make_simulator: Callable[..., Any], efi_ova: Path, tmp_path: Path
) -> None:
    """The lease would time out during this upload; ovapipe's HttpNfcLeaseProgress keeps it."""
    simulator = make_simulator(lease_timeout=LEASE_TIMEOUT)
    proxy = slow_proxy(simulator, efi_ova)
    try:
        [record] = run_publish(options(efi_ova, tmp_path),
                               replace(simulator.connection, port=proxy.port))
    finally:
        proxy.close()
    assert record["template"] == NAME and record["snapshot"] == "root"
    log = simulator.log_text()
    assert "timed out" not in log
    assert log.count("soap HttpNfcLeaseProgress: ok") >= 3


def test_a_lease_that_times_out_is_a_clear_error_and_leaves_nothing(
    make_simulator: Callable[..., Any], efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without keep-alive the same slow upload outlives its lease: vCenter cuts it off."""
    simulator = make_simulator(lease_timeout=LEASE_TIMEOUT)
    monkeypatch.setattr(lease_module.KeepAlive, "interval_for", staticmethod(lambda _s: 3600.0))
    before = inventory(simulator.connection)
    proxy = slow_proxy(simulator, efi_ova)
    try:
        with pytest.raises(StepFailed) as failure:
            run_publish(options(efi_ova, tmp_path), replace(simulator.connection, port=proxy.port))
    finally:
        proxy.close()
    message = str(failure.value)
    assert failure.value.step == "import"
    assert "aborted or timed out on the server side" in message
    assert "The lease timed out: no progress was reported for 2s" in message
    assert "Traceback" not in message
    assert inventory(simulator.connection) == before
    lease_spy.assert_all_gone()
    assert not record_path(tmp_path, NAME, "DC0").exists()


def test_a_corrupt_disk_is_caught_by_the_upload_read_and_nothing_remains(
    simulator: Any, efi_ova: Path, tmp_path: Path, lease_spy: LeaseSpy
) -> None:
    """The manifest's digest of the disk is wrong: validate-ova (without digests) passes, the
    upload's own hashing stops it before the last block."""
    from ovapipe.ova import read_ova

    corrupt = tmp_path / efi_ova.name
    shutil.copyfile(efi_ova, corrupt)
    index = read_ova(corrupt)
    assert index.manifest_member is not None
    data = bytearray(corrupt.read_bytes())
    start, end = index.manifest_member.offset, index.manifest_member.end
    manifest = bytes(data[start:end])
    disk_line = next(line for line in manifest.split(b"\n") if b"disk1.vmdk" in line)
    flipped = disk_line[:-1] + (b"0" if disk_line[-1:] != b"0" else b"1")
    data[start:end] = manifest.replace(disk_line, flipped)
    corrupt.write_bytes(bytes(data))

    before = inventory(simulator.connection)
    with pytest.raises(StepFailed) as failure:
        run_publish(options(corrupt, tmp_path / "out"), simulator.connection)
    assert "the OVA is corrupt" in str(failure.value)
    assert failure.value.exit_code == 1
    assert inventory(simulator.connection) == before
    lease_spy.assert_all_gone()


# ---- an existing template of that name -------------------------------------------------------

@pytest.fixture(scope="session")
def other_ova(tmp_path_factory: pytest.TempPathFactory, efi_vmdk: Any, build_facts: Any) -> Path:
    """The same image name, built again: a different OVA."""
    from ovapipe.ova import assemble_ova

    rebuilt = replace(build_facts, build_timestamp=build_facts.build_timestamp + 86400,
                      image_version=build_facts.image_version + "-2")
    out = tmp_path_factory.mktemp("other-ova")
    return Path(assemble_ova(out, NAME, [efi_vmdk], rebuilt).path)


def test_a_different_ova_under_an_existing_name_needs_replace(
    simulator: Any, efi_ova: Path, other_ova: Path, tmp_path: Path
) -> None:
    run_publish(options(efi_ova, tmp_path), simulator.connection)
    before = inventory(simulator.connection)
    with pytest.raises(StepFailed) as failure:
        run_publish(options(other_ova, tmp_path), simulator.connection)
    assert "pass --replace" in str(failure.value)
    assert inventory(simulator.connection) == before


def test_replace_swaps_in_the_new_template(
    simulator: Any, efi_ova: Path, other_ova: Path, tmp_path: Path
) -> None:
    [old] = run_publish(options(efi_ova, tmp_path), simulator.connection)
    [new] = run_publish(options(other_ova, tmp_path, replace=True), simulator.connection)
    assert new["template"] == NAME and new["moref"] != old["moref"]
    assert new["ova_sha256"] == sha256_of(other_ova)
    names = [name for _, name in inventory(simulator.connection).vms]
    assert names.count(NAME) == 1
    assert not [n for n in names if ".op-" in n]
    template = read_template(simulator.connection, NAME)
    assert template["config.firmware"] == "efi" and template["snapshots"] == ["root"]
    assert json.loads(record_path(tmp_path, NAME, "DC0").read_text()) == new


def test_a_failed_replace_keeps_the_old_template(
    simulator: Any, efi_ova: Path, other_ova: Path, tmp_path: Path
) -> None:
    [old] = run_publish(options(efi_ova, tmp_path), simulator.connection)
    before = inventory(simulator.connection)

    class Interrupting(Progress):
        def advance(self, count: int) -> None:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        run_publish(options(other_ova, tmp_path, replace=True), simulator.connection,
                    progress=lambda label, total: Interrupting(label, total, io.StringIO(),
                                                              tty=False))
    assert inventory(simulator.connection) == before
    assert read_template(simulator.connection, NAME)["moref"] == old["moref"]


# ---- several datacenters ---------------------------------------------------------------------

def test_a_missing_datacenter_among_several_names_it_and_keeps_the_others(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    with pytest.raises(OvapipeError) as failure:
        run_publish(options(efi_ova, tmp_path, datacenters=("DC0", "DC7"), concurrency=2),
                    simulator.connection)
    assert "published to DC0" in str(failure.value)
    assert ("DC7: step 'preflight' failed: datacenter 'DC7' (--datacenter) not found"
            in str(failure.value))
    assert failure.value.exit_code == 2
    assert read_template(simulator.connection, NAME)["config.template"] is True


def sigint_while_uploading(command: list[str], env: dict[str, str], proxy: Proxy) -> str:
    """Run ``command`` against vCenter through ``proxy``, SIGINT it once the upload is on the
    wire, and give its stderr after checking it ended with exit 130."""
    env = {**os.environ, **env, "VSPHERE_SERVER": f"127.0.0.1:{proxy.port}"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proxy.uploading.wait(timeout=60), "the upload never started"
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        proxy.close()
    assert process.returncode == 130, err
    return err


def test_sigint_to_invoke_publish_mid_upload_exits_130_and_leaves_nothing(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """The real Ctrl-C: SIGINT to `invoke publish` while the disk is on the wire (the proxy
    slows the upload down so that it is)."""
    before = inventory(simulator.connection)
    proxy = Proxy(simulator.connection.port, throttle=0.05)
    command = [sys.executable, "-m", "invoke", "publish", "--ova", str(efi_ova),
               "--datacenter", "DC0", "--cluster", "DC0_C0", "--datastore", "LocalDS_0",
               "--network", "VM Network"]
    err = sigint_while_uploading(command, {**simulator.env, "INVOKE_OVAPIPE_OUTPUT": str(tmp_path)},
                                 proxy)
    assert "interrupted during step 'import'" in err
    assert "Traceback" not in err
    assert inventory(simulator.connection) == before
    assert not record_path(tmp_path, NAME, "DC0").exists()


@pytest.fixture
def second_datacenter(simulator: Any, tmp_path: Path) -> str:
    """DC1 with one 7.0.3 host in a cluster also called DC0_C0, one datastore, 'VM Network'."""
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import properties
    from ovapipe.vsphere.tasks import wait_for_task

    store = tmp_path / "dc1-datastore"
    store.mkdir()
    with session(simulator.connection) as si:
        dc = si.RetrieveContent().rootFolder.CreateDatacenter(name="DC1")
        host_folder = properties(si, dc, ["hostFolder"])["hostFolder"]
        cluster = host_folder.CreateClusterEx(name="DC0_C0", spec=vim.cluster.ConfigSpecEx())
        host = wait_for_task(cluster.AddHost_Task(
            spec=vim.host.ConnectSpec(hostName="dc1-esx1", userName="root", password="x",
                                      force=True), asConnected=True), "add host")
        system = properties(si, host, ["configManager.datastoreSystem"])
        system["configManager.datastoreSystem"].CreateLocalDatastore(name="DC1_DS",
                                                                     path=str(store))
    return "DC1"


@pytest.fixture(scope="session")
def vmx19_ova(tmp_path_factory: pytest.TempPathFactory, efi_vmdk: Any, build_facts: Any) -> Path:
    """The simulator's clusters created at run time only offer the newest hardware version
    (vmx-19 on 7.0.3) in their environment browser: an image of that version fits both."""
    from ovapipe.ova import assemble_ova

    out = tmp_path_factory.mktemp("vmx19-ova")
    return Path(assemble_ova(out, NAME, [efi_vmdk], replace(build_facts, vmx=19)).path)


def test_two_datacenters_are_published_concurrently(
    simulator: Any, vmx19_ova: Path, tmp_path: Path, second_datacenter: str
) -> None:
    opts = options(vmx19_ova, tmp_path, datacenters=("DC0", second_datacenter),
                   datastore=None, concurrency=2)
    first = run_publish(opts, simulator.connection)
    assert [r["datacenter"] for r in first] == ["DC0", "DC1"]
    assert [r["inventory_path"] for r in first] == [f"/DC0/vm/{NAME}", f"/DC1/vm/{NAME}"]
    assert all(r["vmx"] == "vmx-19" and r["firmware"] == "efi" for r in first)
    assert first[0]["moref"] != first[1]["moref"]
    for record in first:
        assert json.loads(record_path(tmp_path, NAME, record["datacenter"]).read_text()) == record
    before = inventory(simulator.connection)
    assert run_publish(opts, simulator.connection) == first
    assert inventory(simulator.connection) == before


def test_a_foreign_vm_of_that_name_in_another_datacenter_is_a_collision(
    simulator: Any, efi_ova: Path, tmp_path: Path, second_datacenter: str
) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import datacenter, retrieve
    from ovapipe.vsphere.tasks import wait_for_task

    with session(simulator.connection) as si:
        dc1 = datacenter(si, second_datacenter)
        [cluster] = retrieve(si, vim.ClusterComputeResource, ["resourcePool"], dc1.obj)
        folder = next(
            f.obj for f in retrieve(si, vim.Folder, ["name"], dc1.obj) if f.name == "vm")
        spec = vim.vm.ConfigSpec(name=NAME, files=vim.vm.FileInfo(vmPathName="[DC1_DS]"))
        wait_for_task(folder.CreateVM_Task(config=spec, pool=cluster.get("resourcePool")),
                      "create VM")
    before = inventory(simulator.connection)
    with pytest.raises(StepFailed) as failure:
        run_publish(options(efi_ova, tmp_path), simulator.connection)
    assert f"the name '{NAME}' is already used by /DC1/vm/{NAME}, which ovapipe did not " \
        "publish" in str(failure.value)
    assert "CAPV#4128" in str(failure.value)
    assert inventory(simulator.connection) == before


def test_the_dropped_firmware_is_restored_and_said(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """Debian's simulator imports every OVA as bios (as vCenter can: image-builder#619)."""
    log = io.StringIO()
    publish(options(efi_ova, tmp_path), simulator.connection, log=log, progress=quiet)
    assert "firmware bios -> efi" in log.getvalue()
    assert "reconfigured to match the OVA" in log.getvalue()
    assert read_template(simulator.connection, NAME)["config.firmware"] == "efi"


def test_invoke_publish_prints_the_records_as_json(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    env = {**os.environ, **simulator.env, "INVOKE_OVAPIPE_OUTPUT": str(tmp_path)}
    command = [sys.executable, "-m", "invoke", "publish", "--ova", str(efi_ova),
               "--datacenter", "DC0", "--cluster", "DC0_C0", "--datastore", "LocalDS_0",
               "--network", "VM Network", "--json"]
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(command, cwd=root, env=env, text=True, capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert set(record) == set(RECORD_KEYS) and record["firmware"] == "efi"
    assert json.loads(record_path(tmp_path, NAME, "DC0").read_text()) == record


def test_invoke_publish_usage_errors_exit_2(simulator: Any, tmp_path: Path) -> None:
    env = {**os.environ, **simulator.env}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "publish", "--ova", str(tmp_path / "missing.ova"),
         "--datacenter", "DC0"], cwd=root, env=env, text=True, capture_output=True, timeout=120)
    assert result.returncode == 2
    assert "missing.ova: no such OVA file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_resource_pool_is_looked_up_in_the_given_cluster(sim_session: Any) -> None:
    from ovapipe.vsphere.placement import PlacementRequest, resolve_placement

    # Every cluster and standalone host has a root pool called 'Resources'.
    request = PlacementRequest("DC0", cluster="DC0_C0", resource_pool="Resources")
    placement = resolve_placement(sim_session, request, [])
    assert placement.compute.name == "DC0_C0"
    assert placement.pool == placement.compute.get("resourcePool")
    with pytest.raises(ConfigError, match=r"^resource pool 'Resources' \(--resource-pool\) is "
                       r"ambiguous in datacenter /DC0: 2 match: /DC0/host/DC0_C0/Resources, "
                       r"/DC0/host/DC0_H0/Resources; give the full path of one$"):
        resolve_placement(sim_session, PlacementRequest("DC0", resource_pool="Resources"), [])
    with pytest.raises(ConfigError, match=r"^resource pool 'gpu' \(--resource-pool\) not found "
                       r"in /DC0/host/DC0_C0; available: /DC0/host/DC0_C0/Resources\. Give "):
        resolve_placement(sim_session, PlacementRequest("DC0", "DC0_C0", "gpu"), [])
    with pytest.raises(ConfigError, match=r"^resource pool 'gpu' \(--resource-pool\) not found "
                       r"in datacenter /DC0; available: /DC0/host/DC0_C0/Resources, "
                       r"/DC0/host/DC0_H0/Resources\. Give "):
        resolve_placement(sim_session, PlacementRequest("DC0", resource_pool="gpu"), [])


def test_the_record_names_the_signer_and_the_sbom(simulator: Any, efi_vmdk: Path,
                                                  build_facts: Any, tmp_path: Path) -> None:
    from pki import issue

    from ovapipe.files import sha256_file
    from ovapipe.ova import assemble_ova
    from ovapipe.ova.signing import Signer, fingerprint
    from ovapipe.sbom import disk_sbom

    ca = issue("site CA", ca=True)
    signer = issue("image signer", ca)
    trust = tmp_path / "ca.pem"
    trust.write_bytes(ca.cert_pem())
    sbom = disk_sbom(efi_vmdk, "signed", created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                     disk_sha256=sha256_file(efi_vmdk))
    ova = assemble_ova(tmp_path / "ova", "signed-node", [efi_vmdk], build_facts,
                       signer=Signer(signer.key, (signer.cert,)), sbom=sbom.document).path
    [record] = run_publish(options(ova, tmp_path / "out", require_signature=True, trust=trust),
                           simulator.connection)
    assert record["provenance"] == {
        "signer": "CN=image signer", "signer_fingerprint": fingerprint(signer.cert),
        "signer_trusted": True, "sbom": "signed-node.spdx.json", "sbom_sha256": sbom.sha256,
    }
