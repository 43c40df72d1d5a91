"""Can these hosts create and run a VM of hardware version vmx-N? (publish and validate-template)

Two independent answers must agree: the compute resource's environment browser lists vmx-N
as creatable on the host, and the host's ESXi version is at least the one ovapipe.hardware
says vmx-N needs. Hosts that are disconnected or in maintenance mode cannot run anything and
are left out; a compute resource with no usable host is itself a problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ovapipe.hardware import describe_vmx_need, esxi_supports, max_vmx_for, vmx_name
from ovapipe.vsphere.inventory import Found

HOST_PROPERTIES: Final = (
    "name",
    "config.product.version",
    "runtime.connectionState",
    "runtime.inMaintenanceMode",
)


@dataclass(frozen=True)
class HostProblem:
    host: str
    message: str


def usable(host: Found) -> bool:
    return (
        host.get("runtime.connectionState") == "connected"
        and not host.get("runtime.inMaintenanceMode", False)
    )


def creatable_on(environment_browser: Any) -> dict[str, set[str] | None]:
    """vmx key -> moIds of hosts that can create it (None: every host of the resource)."""
    result: dict[str, set[str] | None] = {}
    for descriptor in environment_browser.QueryConfigOptionDescriptor() or []:
        if not descriptor.createSupported:
            continue
        hosts = descriptor.host or []
        result[descriptor.key] = {h._moId for h in hosts} if hosts else None
    return result


def host_problems(
    compute_name: str, environment_browser: Any, hosts: list[Found], vmx: int
) -> list[HostProblem]:
    """Why some usable host of ``compute_name`` cannot run vmx-``vmx`` (empty: all can)."""
    key = vmx_name(vmx)
    candidates = [h for h in hosts if usable(h)]
    if not candidates:
        return [HostProblem(compute_name, f"{compute_name} has no connected host outside "
                                          "maintenance mode to run the VM")]
    creatable = creatable_on(environment_browser) if environment_browser is not None else {}
    problems: list[HostProblem] = []
    for host in sorted(candidates, key=lambda h: h.name):
        version = str(host.get("config.product.version") or "unknown")
        try:
            version_ok = esxi_supports(version, vmx)
        except ValueError:
            version_ok = False
        if not version_ok:
            try:
                newest = f"; it can create at most {vmx_name(max_vmx_for(version))}"
            except ValueError:
                newest = ""
            problems.append(HostProblem(
                host.name,
                f"host {host.name} runs ESXi {version}, but {describe_vmx_need(vmx)}{newest}: "
                f"upgrade the host or target a cluster whose hosts all run a newer ESXi",
            ))
            continue
        hosts_for_key = creatable.get(key, set()) if environment_browser is not None else None
        if hosts_for_key is not None and host.obj._moId not in hosts_for_key:
            problems.append(HostProblem(
                host.name,
                f"host {host.name} (ESXi {version}) cannot create {key} according to the "
                f"environment browser of {compute_name}",
            ))
    return problems
