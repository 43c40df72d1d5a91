"""What nightly checks before it builds anything, so a wrong setting fails in seconds.

Per run: the variables of every profile (resolved as the build will resolve them). Per
datacenter, in one session over the pinned TLS connection: placement (resolved as publish
resolves it), datastore free space for the system disk, hosts that can create the profile's
vmx, and, for GPU profiles, an enabled passthrough GPU where the hand-off will look for one.
Every problem is reported at once; the checks are the ones publish and gpus run later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ovapipe.errors import CheckFailed, ConfigError, OvapipeError

if TYPE_CHECKING:
    from ovapipe.config import Connection
    from ovapipe.nightly import NightlyRequest
    from ovapipe.varfiles import ResolvedVars

MIB: Final = 1024 * 1024
PLACEMENT_ADVICE: Final = ("; pass --datacenter, --cluster, --datastore, --network or --folder "
                           "(defaults: invoke.yaml's ovapipe.* or VSPHERE_*)")


def resolve_profiles(request: NightlyRequest, env: Mapping[str, str]
                     ) -> dict[str, ResolvedVars]:
    """Every profile's variables, or one ConfigError naming each profile's problems."""
    from ovapipe.varfiles import resolve

    resolved: dict[str, ResolvedVars] = {}
    problems: list[str] = []
    for profile in request.profiles:
        try:
            resolved[profile] = resolve(profile, request.var_files, request.sets, env=env)
        except ConfigError as exc:
            problems.append(f"profile {profile}: {exc.message}")
    if problems:
        raise ConfigError("\n".join(problems))
    return resolved


def datacenter_problems(service: Any, request: NightlyRequest, datacenter: str,
                        profiles: Sequence[ResolvedVars]) -> list[str]:
    from ovapipe.ova.facts import HardwareSizes
    from ovapipe.vsphere.placement import PlacementRequest, resolve_placement
    from ovapipe.vsphere.preflight import check_datastore, check_hosts

    try:
        placement = resolve_placement(service, PlacementRequest(
            datacenter, request.cluster, None, request.datastore, request.folder,
            request.network), (HardwareSizes().network,))
    except OvapipeError as exc:  # a name that does not resolve: nothing else can be checked
        return [f"{exc.message}{PLACEMENT_ADVICE if '--' not in exc.message else ''}"]
    problems: list[str] = []
    vmx = max(int(p.values["vmx_version"]) for p in profiles)
    problems += check_hosts(placement, vmx)
    disk = max(int(p.values.get("disk_size", 0)) for p in profiles) * MIB
    problems += check_datastore(placement, disk)
    if any(p.profile.gpu for p in profiles):
        problems += gpu_problems(service, datacenter, request.cluster)
    return problems


def gpu_problems(service: Any, datacenter: str, cluster: str | None) -> list[str]:
    from ovapipe.vsphere.gpus import list_gpus

    groups = list_gpus(service, datacenter, cluster).summary
    if any(group.enabled for group in groups):
        return []
    where = f"cluster {cluster}" if cluster else f"datacenter {datacenter}"
    seen = ", ".join(f"{g.name} ({g.pci_id.hex})" for g in groups) or "none"
    return [f"no passthrough GPU is enabled in {where} (devices seen: {seen}), so the "
            f"cluster template would have none: enable passthrough on the hosts (see "
            f"`invoke gpus --datacenter {datacenter}`) or build a profile without GPUs"]


def preflight(request: NightlyRequest, resolved: Mapping[str, ResolvedVars],
              connection: Connection) -> dict[str, str]:
    """Log in once and check every datacenter; CheckFailed lists every problem found."""
    from ovapipe.vsphere.connect import session

    problems: list[str] = []
    with session(connection) as service:
        for datacenter in request.datacenters:
            problems += [f"{datacenter}: {p}"
                         for p in datacenter_problems(service, request, datacenter,
                                                      list(resolved.values()))]
    if problems:
        raise CheckFailed("nightly preflight (nothing was built):\n"
                          + "\n".join(f"  - {p}" for p in problems))
    return {"_message": f"{len(request.datacenters)} datacenter(s) ready for "
                        f"{', '.join(resolved)}"}
