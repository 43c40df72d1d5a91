"""The demo: the nightly job end to end against the embedded simulator.

Two datacenters, published through a content library: the OVA is uploaded once into the
library's item and each datacenter deploys it (docs/library.md).

The simulator's installer stands in for the Ubuntu installer (no ISO can be downloaded here):
when Packer powers the build VM on, it writes the EFI test disk as the VM's first disk and
powers it off, as the unattended install would.

The OVA is signed with a throwaway key made for this run (kept in memory only); its self-signed
certificate is written beside the report and pinned as the one trusted signer, so publish
refuses any OVA this run did not sign.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from ovapipe import config
from ovapipe.nightly import NightlyRequest, run_nightly
from ovapipe.paths import CACHE_DIR, OUTPUT_DIR, VARS_DIR
from ovapipe.report import NightlyReport

if TYPE_CHECKING:
    from ovapipe.ova.signing import Signer

PROFILE: Final = "ubuntu-2004-efi"
DATACENTERS: Final = ("DC0", "DC1")
LIBRARY: Final = "ovapipe-demo"
PIPELINE_ID: Final = "ovapipe-demo"  # retention deletes only what carries it
PLACEMENT: Final = {
    config.ENV_DATACENTER: DATACENTERS[0],
    config.ENV_CLUSTER: "*_C0",  # each datacenter's first cluster: DC0_C0, DC1_C0
    config.ENV_DATASTORE: "LocalDS_0",
    config.ENV_NETWORK: "VM Network",
}


def demo_disk() -> Path:
    """The installer's disk: a cleaned node image with the vars' Kubernetes and containerd."""
    from ovapipe.testdisk import RootContent, make_test_disk

    root = RootContent()
    disk = CACHE_DIR / "demo" / (f"efi-node-k{root.kubernetes_version}-"
                                 f"c{root.containerd_version}.vmdk")
    if not disk.exists():
        make_test_disk("efi", disk, root=root)
    return disk


def throwaway_signer(certificate: Path) -> Signer:
    """A new RSA key and a one-day self-signed certificate for it (written to ``certificate``)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from ovapipe.files import write_text
    from ovapipe.ova.signing import Signer

    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "ovapipe demo signer (throwaway key)"),
    ])
    now = dt.datetime.now(tz=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    write_text(certificate, cert.public_bytes(serialization.Encoding.PEM).decode())
    return Signer(key, (cert,))


def _supply_chain(report: NightlyReport, pinned: Path, out: Path, log: TextIO) -> None:
    """The signed OVA's validate-ova report with its SBOM and image inspection."""
    from ovapipe.files import write_json
    from ovapipe.validators.ova import validate_ova

    ovas = [Path(s.artifacts["ova"]) for s in report.stages
            if s.stage == "validate-ova" and "ova" in s.artifacts]
    for ova in ovas:
        checked = validate_ova(ova, require_signature=True, trust=pinned, inspect=True)
        write_json(out / "report" / "supply-chain.json", checked.as_dict())
        log.write(f"\n--- supply chain (signature, SBOM, image inspection)\n{checked.render()}\n"
                  f"SBOM: invoke sbom --path {ova}\n")


def run_demo(out: Path = OUTPUT_DIR / "demo", log: TextIO | None = None) -> NightlyReport:
    from ovapipe.simulator import Simulator, SimulatorOptions

    log = log or sys.stdout
    started = time.monotonic()
    options = SimulatorOptions(installer_vm=f"{PROFILE}-*", installer_disk=demo_disk(),
                               installer_seconds=2, datacenters=len(DATACENTERS))
    pinned = out / "demo-signer.pem"
    signer = throwaway_signer(pinned)
    log.write(f"signing: throwaway key, certificate {pinned} ({signer.subject})\n")
    with Simulator(options) as sim:
        log.write(f"simulator: {sim.url} (vCenter {options.vc_version}, ESXi "
                  f"{options.esx_version}, started in {sim.startup_seconds:.2f} s)\n")
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("VSPHERE_", "PKR_VAR_"))}
        env = {**clean, **sim.env, **PLACEMENT}
        request = NightlyRequest(
            profiles=(PROFILE,), datacenters=DATACENTERS, keep=1, library=LIBRARY,
            pipeline_id=PIPELINE_ID,
            report_dir=out / "report", output_dir=out,
            var_files=(str(VARS_DIR / "site" / "simulator.json"),),
            cluster=PLACEMENT[config.ENV_CLUSTER], datastore=PLACEMENT[config.ENV_DATASTORE],
            network=PLACEMENT[config.ENV_NETWORK],
            signer=signer, require_signature=True, trust=pinned,
        )
        report = run_nightly(request, env, log=sys.stderr)
    log.write("\n" + report.summary() + "\n\n")
    for stage in report.stages:
        for name, value in sorted(stage.artifacts.items()):
            log.write(f"{stage.stage:18} {name}: {value}\n")
    manifests = [Path(s.artifacts["manifest"]) for s in report.stages
                 if "manifest" in s.artifacts]
    for manifest in manifests:
        log.write(f"\n--- {manifest}\n{manifest.read_text()}")
    _supply_chain(report, pinned, out, log)
    log.write(f"\nreport: {out / 'report' / 'report.json'}, {out / 'report' / 'junit.xml'}\n"
              f"demo finished in {time.monotonic() - started:.0f} s\n")
    return report
