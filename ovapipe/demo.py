"""The demo: the nightly job end to end against the embedded simulator.

Two datacenters, published through a content library: the OVA is uploaded once into the
library's item and each datacenter deploys it (docs/library.md).

The simulator's installer stands in for the Ubuntu installer (no ISO can be downloaded here):
when Packer powers the build VM on, it writes the EFI test disk as the VM's first disk and
powers it off, as the unattended install would.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Final, TextIO

from ovapipe import config
from ovapipe.nightly import NightlyRequest, run_nightly
from ovapipe.paths import CACHE_DIR, OUTPUT_DIR, VARS_DIR
from ovapipe.report import NightlyReport

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
    from ovapipe.testdisk import make_test_disk

    disk = CACHE_DIR / "demo" / "efi-test-disk.vmdk"
    if not disk.exists():
        make_test_disk("efi", disk)
    return disk


def run_demo(out: Path = OUTPUT_DIR / "demo", log: TextIO | None = None) -> NightlyReport:
    from ovapipe.simulator import Simulator, SimulatorOptions

    log = log or sys.stdout
    started = time.monotonic()
    options = SimulatorOptions(installer_vm=f"{PROFILE}-*", installer_disk=demo_disk(),
                               installer_seconds=2, datacenters=len(DATACENTERS))
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
    log.write(f"\nreport: {out / 'report' / 'report.json'}, {out / 'report' / 'junit.xml'}\n"
              f"demo finished in {time.monotonic() - started:.0f} s\n")
    return report
