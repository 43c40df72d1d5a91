"""Without --network: the OVA's network if the datacenter has it, else its only network."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ovapipe.errors import ConfigError
from ovapipe.vsphere.placement import PlacementRequest, default_network, resolve_placement
from ovapipe.vsphere.resolve import Inventory, Node


def inventory_with(networks: list[tuple[str, str]]) -> tuple[Inventory, Node]:
    def node(ident: str, kind: str, name: str, parent: str | None) -> Node:
        return Node(SimpleNamespace(_moId=ident), kind, name, parent)

    nodes = [node("root", "Folder", "Datacenters", None), node("dc", "Datacenter", "DC0", "root"),
             node("net", "Folder", "network", "dc")]
    nodes += [node(f"n{i}", kind, name, "net") for i, (name, kind) in enumerate(networks)]
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        if n.parent:
            by_id[n.parent].children.append(n.id)
    return Inventory(by_id["root"], by_id), by_id["dc"]


def test_the_ovas_own_network_wins() -> None:
    inventory, dc = inventory_with([("VM Network", "Network"), ("nic0", "Network")])
    chosen, why = default_network(inventory, dc, ["nic0"])
    assert chosen.path == "/DC0/network/nic0"
    assert "the OVA's network 'nic0'" in why


def test_the_only_network_is_used_and_named() -> None:
    inventory, dc = inventory_with([("VM Network", "Network"),
                                    ("DVS0", "DistributedVirtualSwitch")])
    chosen, why = default_network(inventory, dc, ["nic0"])
    assert chosen.path == "/DC0/network/VM Network"
    assert why == ("network /DC0/network/VM Network: the only network in datacenter /DC0 (the "
                   "OVA names 'nic0'); pass --network to choose another")


@pytest.mark.parametrize("networks", [
    [("VM Network", "Network"), ("pg", "DistributedVirtualPortgroup")],
    [],
])
def test_several_or_none_is_a_usage_error_listing_them(networks: list[tuple[str, str]]) -> None:
    inventory, dc = inventory_with(networks)
    with pytest.raises(ConfigError) as refused:
        default_network(inventory, dc, ["nic0"])
    assert refused.value.exit_code == 2
    assert f"it has {len(networks)}: " in refused.value.message
    for name, _ in networks:
        assert f"/DC0/network/{name}" in refused.value.message


@pytest.mark.simulator
def test_publish_placement_without_network_on_the_simulator(sim_session: Any) -> None:
    request = PlacementRequest("DC0", cluster="DC0_C0")
    said: list[str] = []
    placement = resolve_placement(sim_session, request, ["VM Network"], say=said.append)
    assert placement.network is not None and placement.network.name == "VM Network"
    assert said == ["/DC0: network /DC0/network/VM Network: the OVA's network 'VM Network'"]
    with pytest.raises(ConfigError, match=r"no network is called 'nic0' in datacenter /DC0 and it "
                       r"has 3: /DC0/network/DC0_DVPG0, /DC0/network/DVS0-DVUplinks-\d+, "
                       r"/DC0/network/VM Network; pass --network PATH"):
        resolve_placement(sim_session, request, ["nic0"])
