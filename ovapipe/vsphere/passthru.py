"""`invoke gpus --enable/--disable`: switch GPU passthrough on hosts, all hosts or none.

Only PCI display controllers (GPUs) that the host reports as passthrough-capable are ever
switched, through each host's ``HostPciPassthruSystem.UpdatePassthruConfig``. The plan is
checked on every matching host before the first change; when a host fails mid-way, the hosts
already changed are switched back, and any host that cannot be is listed as such. ESXi applies
a change when the host boots: the result says which hosts need a reboot and whether they are
in maintenance mode (a reboot needs it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ovapipe.errors import ConfigError
from ovapipe.faults import checkpoint
from ovapipe.pci import PciId, resolve
from ovapipe.steps import sigterm_as_interrupt
from ovapipe.vsphere.gpu_records import PassthroughDevice
from ovapipe.vsphere.gpus import find_hosts, host_devices
from ovapipe.vsphere.tasks import fault_message

CHANGED: Final = "changed"
UNCHANGED: Final = "unchanged"
PLANNED: Final = "planned"
NOT_STARTED: Final = "not changed"  # the change stopped before this host
FAILED: Final = "failed"
ROLLED_BACK: Final = "rolled back"
NOT_ROLLED_BACK: Final = "NOT rolled back"


@dataclass
class HostChange:
    """What one host gets: the GPUs to switch, and what stands in the way."""

    name: str
    host: Any  # vim.HostSystem
    system: Any  # vim.host.PciPassthruSystem or None
    in_maintenance: bool | None
    switch: list[PassthroughDevice] = field(default_factory=list)
    unchanged: list[PassthroughDevice] = field(default_factory=list)
    incapable: list[PassthroughDevice] = field(default_factory=list)  # matching GPUs
    left_alone: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    outcome: str = UNCHANGED
    error: str | None = None
    after: list[PassthroughDevice] = field(default_factory=list)  # read back once done

    @property
    def needs_reboot(self) -> bool:
        return any(device.needs_reboot for device in self.after)

    def as_dict(self) -> dict[str, Any]:
        def brief(device: PassthroughDevice) -> dict[str, Any]:
            return {
                "address": device.address, "name": device.name,
                "pci_id": device.pci_id.hex, "vendorId": device.vendorId,
                "deviceId": device.deviceId, "enabled": device.enabled,
                "active": device.active, "needs_reboot": device.needs_reboot,
            }

        return {
            "name": self.name,
            "outcome": self.outcome,
            "error": self.error,
            "in_maintenance_mode": self.in_maintenance,
            "needs_reboot": self.needs_reboot,
            "switch": [brief(d) for d in self.switch],
            "unchanged": [brief(d) for d in self.unchanged],
            "after": [brief(d) for d in self.after],
            "not_capable": [brief(d) for d in self.incapable],
            "left_alone": self.left_alone,
            "problems": self.problems,
        }


@dataclass
class PassthruChange:
    enable: bool
    scope: str  # "cluster C" or "datacenter DC"
    device: str | None
    dry_run: bool
    hosts: list[HostChange]

    @property
    def verb(self) -> str:
        return "enable" if self.enable else "disable"

    @property
    def blocked(self) -> list[HostChange]:
        return [h for h in self.hosts if h.problems]

    @property
    def ok(self) -> bool:
        return not self.blocked and not any(h.outcome == FAILED for h in self.hosts)

    @property
    def reboot_needed(self) -> list[HostChange]:
        return [h for h in self.hosts if h.needs_reboot]

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.verb, "scope": self.scope, "device": self.device,
            "dry_run": self.dry_run, "ok": self.ok,
            "reboot_needed": [h.name for h in self.reboot_needed],
            "hosts": [h.as_dict() for h in self.hosts],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, ensure_ascii=False)

    def render(self) -> str:
        what = f"GPUs matching {self.device}" if self.device else "GPUs"
        lines = [f"{self.verb.capitalize()} passthrough of {what} in {self.scope}"
                 + (" (dry run)" if self.dry_run else "") + ":"]
        for host in self.hosts:
            lines.extend(_render_host(host, self))
        lines.append("")
        if self.blocked:
            lines.append(f"nothing changed: {len(self.blocked)} host(s) cannot take the change: "
                         + ", ".join(h.name for h in self.blocked))
        elif any(h.outcome == FAILED for h in self.hosts):
            failed = ", ".join(h.name for h in self.hosts if h.outcome == FAILED)
            lines.append(f"the change failed on {failed}; " + _rollback_summary(self.hosts))
        elif self.dry_run:
            count = sum(bool(h.switch) for h in self.hosts)
            lines.append(f"dry run: {count} host(s) would change; nothing changed")
        rebooting = self.reboot_needed
        if rebooting:
            lines.append(("a reboot would be needed: " if self.dry_run else "reboot needed for "
                          "the change to take effect: ") + ", ".join(h.name for h in rebooting))
            outside = [h.name for h in rebooting if not h.in_maintenance]
            if outside:
                lines.append("  not in maintenance mode (enter it before rebooting): "
                             + ", ".join(outside))
        elif not self.dry_run and self.ok:
            lines.append("no host needs a reboot")
        return "\n".join(lines)


def _label(device: PassthroughDevice) -> str:
    return f"{device.address} {device.name or device.pci_id.hex} ({device.pci_id.hex})"


def _render_host(host: HostChange, change: PassthruChange) -> list[str]:
    done = f"{change.verb}d"
    verb = {CHANGED: done, FAILED: f"failed to {change.verb}",
            ROLLED_BACK: f"{done}, then rolled back", NOT_STARTED: f"not {done}",
            NOT_ROLLED_BACK: f"{done} and NOT rolled back"}.get(host.outcome,
                                                                f"would {change.verb}")
    mode = "in maintenance mode" if host.in_maintenance else "not in maintenance mode"
    lines = [f"{host.name} ({mode}):"]
    lines.extend(f"  {verb} {_label(d)}" for d in host.switch)
    lines.extend(f"  already {done}: {_label(d)}" for d in host.unchanged)
    lines.extend(f"  left alone: {note}" for note in host.left_alone)
    lines.extend(f"  ! cannot change: {problem}" for problem in host.problems)
    if host.error:
        lines.append(f"  ! {host.error}")
    if host.needs_reboot:
        lines.append("  needs a reboot")
    if not (host.switch or host.unchanged or host.left_alone or host.problems):
        lines.append("  no matching GPU")
    return lines


def _rollback_summary(hosts: list[HostChange]) -> str:
    parts = []
    for outcome in (ROLLED_BACK, NOT_ROLLED_BACK, NOT_STARTED):
        names = [h.name for h in hosts if h.outcome == outcome and h.switch]
        if names:
            parts.append(f"{outcome}: {', '.join(names)}")
    return "; ".join(parts) or "no other host had been changed"


def device_filter(text: str | None) -> PciId | None:
    """--device VENDOR:DEVICE or a name pci.ids knows; None: every GPU."""
    if text is None:
        return None
    found = resolve(text)
    return found if isinstance(found, PciId) else found.pci_id


def _incapable(device: PassthroughDevice) -> str:
    return f"{_label(device)}: the host reports it as not passthrough-capable"


def _plan_host(host: Any, enable: bool, wanted: PciId | None, explicit: bool) -> HostChange:
    change = HostChange(host.name, host.obj, host.get("configManager.pciPassthruSystem"),
                        host.get("runtime.inMaintenanceMode"))
    state = host.get("runtime.connectionState")
    if state != "connected":
        change.problems.append(f"host is {state or 'in an unknown state'}, not connected")
        return change
    devices = host_devices(host.get("config.pciPassthruInfo") or [],
                           host.get("hardware.pciDevice") or [], None, capable_only=False)
    for device in devices:
        if not device.is_gpu or (wanted is not None and device.pci_id != wanted):
            continue
        if not device.capable:
            change.incapable.append(device)
            if explicit:
                change.problems.append(_incapable(device))
        elif device.enabled == enable:
            change.unchanged.append(device)
        else:
            change.switch.append(device)
    if change.switch and change.system is None:
        change.problems.append("the host has no PCI passthrough system (configManager)")
    return change


def plan_passthru(service: Any, datacenter: str, cluster: str | None, host_glob: str | None,
                  device: str | None, enable: bool, dry_run: bool) -> PassthruChange:
    wanted = device_filter(device)
    scope = find_hosts(service, datacenter, cluster, host_glob)
    hosts = [_plan_host(h, enable, wanted, device is not None) for h in scope.hosts]
    # Without --device, an incapable GPU is worth a line only where the same model can be
    # passed through elsewhere: every server's BMC display controller would be noise.
    elsewhere = {d.pci_id for h in hosts for d in h.switch + h.unchanged}
    for host in hosts:
        if device is None:
            host.left_alone = [_incapable(d) for d in host.incapable if d.pci_id in elsewhere]
    where = f"cluster {cluster}" if cluster else f"datacenter {datacenter}"
    if not any(h.switch or h.unchanged or h.incapable or h.problems for h in hosts):
        what = f"GPU matching {device!r}" if device else "GPU"
        raise ConfigError(f"no {what} on the hosts of {where}"
                          + (f" matching --host {host_glob!r}" if host_glob else "")
                          + " (`invoke gpus` lists the devices)")
    for host in hosts:
        host.outcome = PLANNED if host.switch else UNCHANGED
    return PassthruChange(enable, where, device, dry_run, hosts)


def _update(host: HostChange, enabled: bool) -> None:
    from pyVmomi import vim

    host.system.UpdatePassthruConfig(config=[
        vim.host.PciPassthruConfig(id=d.address, passthruEnabled=enabled) for d in host.switch
    ])


def _roll_back(done: list[HostChange], enable: bool) -> None:
    from pyVmomi import vmodl

    for host in reversed(done):
        try:
            _update(host, not enable)
        except (vmodl.MethodFault, OSError) as exc:
            host.outcome = NOT_ROLLED_BACK
            host.error = f"roll-back failed: {_message(exc)}; switch it back by hand"
        else:
            host.outcome = ROLLED_BACK


def _message(exc: BaseException) -> str:
    return fault_message(exc) if not isinstance(exc, OSError) else str(exc) or type(exc).__name__


def apply_passthru(service: Any, change: PassthruChange, datacenter: str, cluster: str | None,
                   host_glob: str | None) -> PassthruChange:
    """Make the planned change (unless blocked or a dry run), then read every host back."""
    from pyVmomi import vmodl

    if change.blocked or change.dry_run:
        for host in change.hosts:
            host.after = host.unchanged + (host.switch if change.blocked else [
                replace(d, enabled=change.enable, needs_reboot=change.enable != d.active)
                for d in host.switch
            ])
        return change
    done: list[HostChange] = []
    with sigterm_as_interrupt():  # a CI cancel rolls back like Ctrl-C
        try:
            for host in (h for h in change.hosts if h.switch):
                done.append(host)  # before the call: an interrupted call may still have landed
                try:
                    _update(host, change.enable)
                except (vmodl.MethodFault, OSError) as exc:
                    host.outcome, host.error = FAILED, _message(exc)
                    done.pop()  # ESXi applies a request whole or not at all
                    for later in change.hosts:
                        if later.outcome == PLANNED:
                            later.outcome = NOT_STARTED
                    _roll_back(done, change.enable)
                    break
                host.outcome = CHANGED
                checkpoint("gpus.after-host")
        except BaseException:  # Ctrl-C or SIGTERM mid-way: leave no host half-done
            _roll_back(done, change.enable)
            raise
    _read_back(service, change, datacenter, cluster, host_glob)
    return change


def _read_back(service: Any, change: PassthruChange, datacenter: str, cluster: str | None,
               host_glob: str | None) -> None:
    by_name = {h.name: h for h in find_hosts(service, datacenter, cluster, host_glob).hosts}
    for host in change.hosts:
        found = by_name.get(host.name)
        if found is None:
            continue
        addresses = {d.address for d in host.switch + host.unchanged}
        host.after = [
            d for d in host_devices(found.get("config.pciPassthruInfo") or [],
                                    found.get("hardware.pciDevice") or [], None)
            if d.address in addresses
        ]
        host.in_maintenance = found.get("runtime.inMaintenanceMode")
