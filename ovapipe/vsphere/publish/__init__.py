"""invoke publish: a checked OVA becomes a vmx-17/EFI template with a 'root' snapshot.

Per datacenter a multistep run (ovapipe.steps, the steps in steps.py): the VM is imported
under a temporary name, marked in-progress by this run from birth, and takes the template
name only once it is complete and verified (swap.py). Each step registers the undo of what it
created, by reference and guarded by the run marker (owned.py), so a failure or Ctrl-C leaves
vCenter as it was; what a killed run left is finished or removed by the next run
(recovery.py). Datacenters are published concurrently (concurrency.py).
"""

from ovapipe.vsphere.publish.concurrency import publish
from ovapipe.vsphere.publish.ova import CheckedOva, check_ova, sidecar_sha256
from ovapipe.vsphere.publish.records import PublishOptions, PublishRecord, record_path

__all__ = ["CheckedOva", "PublishOptions", "PublishRecord", "check_ova", "publish",
           "record_path", "sidecar_sha256"]
