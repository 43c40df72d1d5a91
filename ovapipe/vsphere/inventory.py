"""Inventory lookups by bulk property retrieval.

Properties are always read with RetrievePropertiesEx over a container view: one round trip
for many objects, and unset properties come back absent instead of crashing the govmomi
simulator's PropertyCollector.Fetch (a lazy ``vm.snapshot`` read does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ovapipe.errors import ConfigError


@dataclass(frozen=True)
class Found:
    obj: Any
    props: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.props.get("name", self.obj._moId))

    def get(self, key: str, default: Any = None) -> Any:
        return self.props.get(key, default)


def retrieve(
    service: Any, vimtype: Any, paths: Sequence[str], root: Any = None
) -> list[Found]:
    """Every object of ``vimtype`` under ``root`` (default: the root folder) with ``paths``."""
    return retrieve_types(service, vimtype, {vimtype: paths}, root)


def retrieve_types(
    service: Any,
    viewtype: Any,
    specs: Mapping[Any, Sequence[str]],
    root: Any = None,
    *,
    include_root: bool = False,
) -> list[Found]:
    """Every ``viewtype`` object under ``root``, with the paths ``specs`` names for its type.

    One round trip (plus continuations) whatever the number of types; ``include_root``
    adds ``root`` itself, which a container view leaves out.
    """
    from pyVmomi import vmodl

    content = service.RetrieveContent()
    container = root or content.rootFolder
    view = content.viewManager.CreateContainerView(container, [viewtype], True)
    collector_types = vmodl.query.PropertyCollector
    try:
        objects = [
            collector_types.ObjectSpec(
                obj=view,
                skip=True,
                selectSet=[
                    collector_types.TraversalSpec(
                        name="view", path="view", skip=False, type=type(view)
                    )
                ],
            )
        ]
        if include_root:
            objects.append(collector_types.ObjectSpec(obj=container, skip=False))
        spec = collector_types.FilterSpec(
            objectSet=objects,
            propSet=[collector_types.PropertySpec(type=vimtype, pathSet=list(paths))
                     for vimtype, paths in specs.items()],
        )
        collector = content.propertyCollector
        result = collector.RetrievePropertiesEx([spec], collector_types.RetrieveOptions())
        found: list[Found] = []
        while result:
            for item in result.objects:
                found.append(Found(item.obj, {p.name: p.val for p in item.propSet or []}))
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(result.token)
        return found
    finally:
        view.Destroy()


def properties(service: Any, obj: Any, paths: Sequence[str]) -> dict[str, Any]:
    """Named properties of one object (absent when unset)."""
    from pyVmomi import vmodl

    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=type(obj), pathSet=list(paths))],
    )
    content = service.RetrieveContent()
    result = content.propertyCollector.RetrievePropertiesEx(
        [spec], vmodl.query.PropertyCollector.RetrieveOptions()
    )
    if not result or not result.objects:
        return {}
    return {p.name: p.val for p in result.objects[0].propSet or []}


def by_name(items: Sequence[Found], kind: str, name: str, where: str = "") -> Found:
    """The one item called ``name``, else a ConfigError listing what is there."""
    matches = [item for item in items if item.name == name]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(sorted({item.name for item in items})) or "none"
    scope = f" in {where}" if where else ""
    if not matches:
        raise ConfigError(f"{kind} '{name}' not found{scope}; available: {available}")
    raise ConfigError(f"{kind} '{name}' is ambiguous{scope}: {len(matches)} objects have that name")


def datacenter(service: Any, path: str | None, source: str = "--datacenter") -> Found:
    """The datacenter an inventory path names (ovapipe.vsphere.resolve); the only one if None."""
    from ovapipe.vsphere.resolve import Inventory

    found = Inventory.read(service).datacenter(path, source=source)
    return Found(found.obj, {"name": found.name})
