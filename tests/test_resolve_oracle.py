"""ovapipe's inventory resolver against govmomi's own finder (what govc, CAPV and Packer use).

One table of path forms runs through both on a simulator inventory with nested and same-name
folders, nested pools, a cluster in a host subfolder, a second datacenter and names stored
escaped. ovapipe must pick the object the finder picks, refuse where the finder finds several,
and where the finder finds nothing either refuse or (its documented extra readings) pick the
object the finder finds for the canonical path given in the table.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import finder_oracle
import pytest

from ovapipe.errors import ConfigError
from ovapipe.vsphere import resolve as r
from ovapipe.vsphere.tasks import wait_for_task

pytestmark = pytest.mark.simulator

KINDS = {
    "datacenter": r.DATACENTER, "folder": r.FOLDER, "datastore": r.DATASTORE,
    "network": r.NETWORK, "compute": r.COMPUTE, "cluster": r.CLUSTER, "host": r.HOST,
    "pool": r.RESOURCE_POOL, "vm": r.VM,
}

# (kind, path, canonical): canonical is None where ovapipe must do as the finder does; a path
# where the finder finds nothing and ovapipe's extra reading must find what that path names;
# OUTSIDE where the finder finds an object of another datacenter, which ovapipe refuses.
OUTSIDE = "outside"
TABLE: list[tuple[str, str, str | None]] = [
    ("datacenter", "DC0", None),
    ("datacenter", "/DC0", None),
    ("datacenter", "DC*", None),  # two: ambiguous
    ("datacenter", "nope", None),
    ("folder", "/DC0/vm/audit", None),
    ("folder", "vm/audit", None),
    ("folder", "aud*", None),
    ("folder", "dup", None),  # /DC0/vm/dup and /DC0/vm/audit/dup
    ("folder", "/DC0/vm/audit/dup", None),
    ("folder", "vm/audit/dup", None),
    ("folder", "vm", None),  # the datacenter's vm folder and /DC0/vm/vm
    ("folder", "/DC0/vm", None),
    ("folder", "vm/vm", None),
    ("folder", "DC0/vm", None),  # relative to DC0: /DC0/DC0/vm, nothing
    ("folder", "/DC0/vm/a%2fb", None),
    ("folder", "a%2fb", None),
    ("folder", "vm/a/b", "/DC0/vm/a%2fb"),  # unescaped '/'
    ("folder", "back\\slash", "/DC0/vm/back%5cslash"),
    ("folder", "pct%", "/DC0/vm/pct%25"),
    ("folder", "pct%25", None),
    ("folder", "audit/dup", "/DC0/vm/audit/dup"),  # relative to the VM folder
    ("folder", "/DC0/vm/[ad]u*", None),
    ("folder", "/DC0/vm/[", None),  # a bad pattern
    ("folder", "../x", None),
    ("pool", "*/Resources", None),
    ("pool", "DC0_C0/Resources", None),
    ("pool", "/DC0/host/DC0_C0/Resources", None),
    ("pool", "host/DC0_C0/Resources", "/DC0/host/DC0_C0/Resources"),
    ("pool", "/DC0/host/DC0_C0", None),  # a cluster names its root pool
    ("pool", "gpu", None),  # one in each compute resource
    ("pool", "DC0_C0/Resources/gpu", None),
    ("pool", "DC0_C0/Resources/gpu/child", None),
    ("pool", "child", None),
    ("pool", "/DC0/host/DC0_C0/...", None),
    ("pool", "sub/C9/Resources", None),
    ("compute", "DC0_C0", None),
    ("compute", "/DC0/host/DC0_C0", None),
    ("compute", "DC0_*", None),
    ("compute", "C9", None),
    ("compute", "host/sub/C9", "/DC0/host/sub/C9"),
    ("cluster", "DC0_H0", None),  # a standalone host is no cluster
    ("cluster", "/DC1/host/DC1_C0", OUTSIDE),
    ("host", "DC0_C0_H1", None),
    ("host", "/DC0/host/DC0_C0", None),  # three hosts
    ("host", "/DC0/host/DC0_H0", None),
    ("host", "DC0_C0/DC0_C0_H?", None),
    ("datastore", "LocalDS_0", None),
    ("datastore", "/DC0/datastore/LocalDS_0", None),
    ("datastore", "datastore/LocalDS_0", None),  # the finder's "name contains '/'" reading
    ("datastore", "datastore/Local*", "/DC0/datastore/LocalDS_0"),
    ("datastore", "/DC0/datastore/LocalDS_0/x", None),  # a datastore has no children
    ("network", "VM Network", None),
    ("network", "/DC0/network/VM Network", None),
    ("network", "DC0_DVPG*", None),
    ("network", "*", None),
    ("vm", "DC0_H0_VM0", None),
    ("vm", "/DC0/vm/audit/dup/moved", None),
    ("vm", "moved", None),
    ("vm", "vm/audit/dup/moved", "/DC0/vm/audit/dup/moved"),
    ("vm", "audit/dup/moved", None),
    ("vm", "DC0_*_VM0", None),
    ("vm", "/DC0/host/DC0_H0/DC0_H0/DC0_H0_VM1", None),  # through the host
    ("vm", "./...", None),
]


def _folder(parent: Any, name: str) -> Any:
    return parent.CreateFolder(name)


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest) -> Iterator[tuple[Any, dict[str, str]]]:
    from pyVmomi import vim

    from ovapipe.simulator import Simulator, SimulatorOptions
    from ovapipe.vsphere.connect import session

    with Simulator(SimulatorOptions()) as sim, session(sim.connection) as service:
        content = service.RetrieveContent()
        inventory = r.Inventory.read(service)
        dc0 = inventory.resolve(r.DATACENTER, "DC0").obj
        audit = _folder(dc0.vmFolder, "audit")
        _folder(dc0.vmFolder, "dup")
        nested = _folder(audit, "dup")
        _folder(dc0.vmFolder, "vm")
        for name in ("a%2fb", "back%5cslash", "pct%25"):
            _folder(dc0.vmFolder, name)
        vm = inventory.resolve(r.VM, "DC0_C0_RP0_VM1").obj
        wait_for_task(vm.Rename_Task("moved"), "rename")
        wait_for_task(nested.MoveIntoFolder_Task([vm]), "move")
        for compute in ("DC0_C0", "DC0_H0"):
            root = inventory.resolve(r.COMPUTE, compute, inventory.resolve(
                r.DATACENTER, "DC0").node).obj.resourcePool
            gpu = root.CreateResourcePool("gpu", _pool_spec(vim))
            if compute == "DC0_C0":
                gpu.CreateResourcePool("child", _pool_spec(vim))
        sub = _folder(dc0.hostFolder, "sub")
        sub.CreateClusterEx("C9", vim.cluster.ConfigSpecEx())
        dc1 = content.rootFolder.CreateDatacenter("DC1")
        dc1.hostFolder.CreateClusterEx("DC1_C0", vim.cluster.ConfigSpecEx())
        yield service, sim.env


def _pool_spec(vim: Any) -> Any:
    def allocation() -> Any:
        return vim.ResourceAllocationInfo(
            reservation=0, expandableReservation=True, limit=-1,
            shares=vim.SharesInfo(level="normal", shares=0))

    return vim.ResourceConfigSpec(cpuAllocation=allocation(), memoryAllocation=allocation())


def test_the_table_covers_thirty_path_forms() -> None:
    assert len(TABLE) >= 30
    assert len({(kind, path) for kind, path, _ in TABLE}) == len(TABLE)


def test_ovapipe_picks_what_govmomis_finder_picks(site: tuple[Any, dict[str, str]]) -> None:
    service, env = site
    inventory = r.Inventory.read(service)
    queries = [{"kind": kind, "datacenter": "DC0", "path": path} for kind, path, _ in TABLE]
    queries += [{"kind": kind, "datacenter": "DC0", "path": canonical}
                for kind, _, canonical in TABLE if canonical and canonical != OUTSIDE]
    answers = finder_oracle.ask(env, queries)
    extra = [c for _, _, c in TABLE if c and c != OUTSIDE]
    canonical_answers = dict(zip(extra, answers[len(TABLE):], strict=True))
    dc0 = inventory.resolve(r.DATACENTER, "DC0").node
    mismatches = []
    for (kind, path, canonical), answer in zip(TABLE, answers[:len(TABLE)], strict=True):
        expected = {f["ref"] for f in answer["found"]}
        datacenter = None if kind == "datacenter" else dc0
        try:
            strict = {e.node.id for e in inventory.find(KINDS[kind], path, datacenter)}
        except ConfigError:
            strict = set()
        if strict != expected:
            mismatches.append(f"{kind} {path!r}: finder {sorted(expected)} "
                              f"({answer['error']}), ovapipe {sorted(strict)}")
            continue
        try:
            chosen: str | None = inventory.resolve(KINDS[kind], path, datacenter).node.id
        except ConfigError:
            chosen = None
        if canonical == OUTSIDE:
            assert len(expected) == 1
            want: str | None = None
        elif canonical:
            target = canonical_answers[canonical]["found"]
            assert not expected, f"{kind} {path!r}: the finder resolves it; no extra reading"
            assert len(target) == 1, f"{kind} {canonical!r}: the finder does not find it"
            want = target[0]["ref"]
        else:
            want = next(iter(expected)) if len(expected) == 1 else None
        if chosen != want:
            mismatches.append(f"{kind} {path!r}: want {want}, ovapipe chose {chosen}")
    assert not mismatches, "\n".join(mismatches)


def test_a_refusal_lists_full_inventory_paths(site: tuple[Any, dict[str, str]]) -> None:
    service, _ = site
    inventory = r.Inventory.read(service)
    dc0 = inventory.datacenter("DC0").node
    with pytest.raises(ConfigError) as ambiguous:
        inventory.resolve(r.FOLDER, "dup", dc0, source="--folder")
    assert "/DC0/vm/audit/dup" in ambiguous.value.message
    assert "/DC0/vm/dup" in ambiguous.value.message
    with pytest.raises(ConfigError) as missing:
        inventory.resolve(r.DATASTORE, "nope", dc0, source="--datastore")
    assert "/DC0/datastore/LocalDS_0" in missing.value.message
    with pytest.raises(ConfigError) as outside:
        inventory.resolve(r.CLUSTER, "/DC1/host/DC1_C0", dc0, source="--cluster")
    assert "outside datacenter /DC0" in outside.value.message


def test_every_printed_path_reads_back(site: tuple[Any, dict[str, str]]) -> None:
    service, _ = site
    inventory = r.Inventory.read(service)
    for node in inventory.nodes.values():
        dc = inventory.datacenter_of(node)
        kind = next((k for k in KINDS.values() if node.type in k.types), None)
        if kind is None or dc is None or (node.type in ("Folder",) and node is dc):
            continue
        path = inventory.path_of(node)
        assert inventory.resolve(kind, path, dc).node.id == node.id, path


@pytest.mark.parametrize(("request_fields", "folder", "pool"), [
    ({"datacenter": "/DC0", "cluster": "/DC0/host/DC0_C0", "folder": "/DC0/vm/audit/dup",
      "datastore": "/DC0/datastore/LocalDS_0", "network": "/DC0/network/VM Network"},
     "/DC0/vm/audit/dup", "/DC0/host/DC0_C0/Resources"),
    ({"datacenter": "DC0", "resource_pool": "/DC0/host/DC0_C0/Resources/gpu",
      "folder": "vm/audit", "datastore": "LocalDS_0", "network": "VM Network"},
     "/DC0/vm/audit", "/DC0/host/DC0_C0/Resources/gpu"),
    ({"datacenter": "DC0", "cluster": "DC0_C0", "resource_pool": "*/Resources",
      "folder": "aud*", "datastore": "LocalDS_0", "network": "VM Network"},
     "/DC0/vm/audit", "/DC0/host/DC0_C0/Resources"),
    ({"datacenter": "DC0", "resource_pool": "host/DC0_H0/Resources/gpu", "folder": "/DC0/vm",
      "datastore": "LocalDS_0", "network": "VM Network"},
     "/DC0/vm", "/DC0/host/DC0_H0/Resources/gpu"),
])
def test_publish_placement_takes_capv_style_settings(
    site: tuple[Any, dict[str, str]], request_fields: dict[str, str], folder: str, pool: str
) -> None:
    from ovapipe.vsphere.placement import PlacementRequest, resolve_placement

    service, _ = site
    placement = resolve_placement(service, PlacementRequest(**request_fields), ["VM Network"])
    inventory = r.Inventory.read(service)
    assert inventory.path_of(inventory.nodes[placement.folder._moId]) == folder
    assert inventory.path_of(inventory.nodes[placement.pool._moId]) == pool


PIECES = ["DC0", "vm", "host", "network", "datastore", "audit", "dup", "moved", "DC0_C0",
          "DC0_H0", "Resources", "gpu", "child", "sub", "C9", "LocalDS_0", "VM Network", "*",
          "?", "DC0_*", "[ad]*", "a%2fb", "..", ".", "...", "nope", "DC0_C0_H?"]


def generated_queries(count: int, seed: int = 13) -> list[tuple[str, str]]:
    """Random path forms built from the inventory's own names, globs and dots."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = [rng.choice(PIECES) for _ in range(rng.randint(1, 5))]
        lead = rng.choice(["", "/", "./"])
        out.append((rng.choice(sorted(KINDS)), lead + "/".join(parts)))
    return out


def test_generated_paths_resolve_as_the_finder_resolves_them(
    site: tuple[Any, dict[str, str]]
) -> None:
    service, env = site
    inventory = r.Inventory.read(service)
    dc0 = inventory.datacenter("DC0").node
    queries = generated_queries(400)
    answers = finder_oracle.ask(env, [{"kind": k, "datacenter": "DC0", "path": p}
                                      for k, p in queries])
    mismatches = []
    for (kind, path), answer in zip(queries, answers, strict=True):
        expected = {f["ref"] for f in answer["found"]}
        try:
            got = {e.node.id for e in inventory.find(KINDS[kind], path,
                                                     None if kind == "datacenter" else dc0)}
        except ConfigError:
            got = set()
        if got != expected:
            mismatches.append(f"{kind} {path!r}: finder {sorted(expected)} "
                              f"({answer['error']}), ovapipe {sorted(got)}")
    assert not mismatches, "\n".join(mismatches[:20])
