"""What one datacenter's publish steps share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ovapipe.config import Connection
from ovapipe.vsphere.ownership import RunMarker
from ovapipe.vsphere.placement import Placement
from ovapipe.vsphere.preflight import NameDecision
from ovapipe.vsphere.publish.ova import CheckedOva, ProgressFactory
from ovapipe.vsphere.publish.records import LibrarySource, PublishOptions, PublishRecord


@dataclass
class DatacenterRun:
    """The state one datacenter's steps share."""

    datacenter: str
    options: PublishOptions
    connection: Connection
    ova: CheckedOva
    progress: ProgressFactory
    cancelled: threading.Event
    marker: RunMarker  # this run's: on everything it creates, from the moment it exists
    service: Any = None
    placement: Placement | None = None
    decision: NameDecision = field(default_factory=lambda: NameDecision("create"))
    vm: Any = None  # the imported VM (its reference), once ImportVApp returned it
    retired: Any = None  # --replace: the old template, once this run retired it
    removed: list[str] = field(default_factory=list)  # what recovery removed or finished
    record: PublishRecord | None = None
    source: LibrarySource | None = None  # --library: deploy this item instead of importing

    @property
    def name(self) -> str:
        return self.ova.name

    @property
    def import_name(self) -> str:
        """The temporary name the VM is imported under; it gets ``name`` only when complete."""
        return f"{self.name}.op-tmp-{self.marker.id[:8]}"

    @property
    def retired_name(self) -> str:
        return f"{self.name}.op-old-{self.marker.id[:8]}"

    def check_cancel(self) -> None:
        if self.cancelled.is_set():
            raise KeyboardInterrupt
