"""Inventory paths as govc reads them: one resolver for every argument that names an object.

This is govmomi's finder (``github.com/vmware/govmomi/find``, what govc, CAPV and Packer use)
over one bulk read of the inventory tree:

- ``/DC0/vm/a/b``: an absolute inventory path;
- ``a/b``: relative to the datacenter's folder of the object's kind (``vm`` for VMs,
  ``host`` for clusters, hosts and resource pools, ``datastore``, ``network``; the datacenter
  itself for VM folders, so ``vm/a`` is a folder);
- ``name``: found anywhere below that folder;
- glob patterns (``*``, ``?``, ``[a-z]``, Go's ``path.Match``) in any element;
- ``path/...``: everything below ``path``.

Exactly one object must match; none or several is a ConfigError (exit 2) that lists full
inventory paths. Where the finder finds nothing, two readings it lacks are tried: a relative
path from the datacenter itself (``host/DC0_C0/Resources``, ``vm/a/vm1``) or, for folders,
from the VM folder (``a/b``); and names vCenter stores escaped (``%2f`` for ``/``, ``%5c`` for
``\\``, ``%25`` for ``%``) written unescaped. Paths are printed the way vCenter stores names,
so every printed path reads back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ovapipe.errors import ConfigError
from ovapipe.vsphere import govpath

PATH_FORMS: Final = (
    "an absolute path (/DC0/vm/templates/x), a path relative to the datacenter's folder of "
    "that kind (templates/x, host/DC0_C0/Resources, */Resources), a name found anywhere "
    "below it, or a glob (ubuntu-*)"
)

# What govmomi's list.Lister reads to list the children of each managed object type (a
# vSphere property spec for a type also covers its subtypes: Folder covers StoragePod).
_CHILD_PROPERTIES: Final[dict[str, tuple[str, ...]]] = {
    "Folder": ("childEntity",),
    "Datacenter": ("vmFolder", "hostFolder", "datastoreFolder", "networkFolder"),
    "ComputeResource": ("host", "resourcePool"),
    "ResourcePool": ("resourcePool",),
    "VirtualApp": ("resourcePool", "vm"),
    "HostSystem": ("datastore", "network", "vm"),
    "VirtualMachine": (),
    "Datastore": (),
    "Network": (),
    "DistributedVirtualSwitch": ("portgroup",),
}
_BASE_TYPE: Final = {
    "StoragePod": "Folder",
    "ClusterComputeResource": "ComputeResource",
    "OpaqueNetwork": "Network",
    "DistributedVirtualPortgroup": "Network",
    "VmwareDistributedVirtualSwitch": "DistributedVirtualSwitch",
}
_TRAVERSABLE_BY_LISTER: Final = frozenset({
    "Folder", "StoragePod", "Datacenter", "ComputeResource", "ClusterComputeResource",
    "ResourcePool", "HostSystem", "VirtualApp", "VmwareDistributedVirtualSwitch",
    "DistributedVirtualSwitch",
})
# Read with the tree because callers need them: VM folders' child types, pools' owners.
EXTRA_PROPERTIES: Final[dict[str, tuple[str, ...]]] = {
    "Folder": ("childType",),
    "ResourcePool": ("owner",),
}
_ESCAPED = re.compile(r"%(2[fF]|5[cC]|25)")
_UNESCAPED = {"2f": "/", "5c": "\\", "25": "%"}


def unescape(name: str) -> str:
    """A name as vCenter stores it (``a%2fb``) as the user wrote it (``a/b``)."""
    return _ESCAPED.sub(lambda m: _UNESCAPED[m.group(1).lower()], name)


@dataclass
class Node:
    obj: Any
    type: str
    name: str
    parent: str | None
    props: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.obj._moId)


@dataclass(frozen=True)
class Element:
    """One finder result: the object and the path it was reached by."""

    node: Node
    path: str


@dataclass(frozen=True)
class Kind:
    """How the finder looks for one kind of object (a Finder.*List method)."""

    name: str  # what messages call it
    types: tuple[str, ...]  # what the method keeps
    pivot: str  # "root", "datacenter" or a datacenter folder property
    parents: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    nested: tuple[str, ...] = ()
    contents: bool = False
    fallback_pivot: str = "datacenter"
    expand_hosts: bool = False

    def traversable(self, node: Node, parents: Sequence[str]) -> bool:
        if node.type == "Datacenter":
            return self.include != ("Datacenter",)
        if node.type == "Folder":
            return True
        return node.type in parents

    def wanted(self, node: Node) -> bool:
        return not self.include or node.type in self.include


_COMPUTE_TYPES: Final = ("ComputeResource", "ClusterComputeResource")
_NETWORK_TYPES: Final = ("Network", "OpaqueNetwork", "DistributedVirtualPortgroup",
                         "DistributedVirtualSwitch", "VmwareDistributedVirtualSwitch")
DATACENTER: Final = Kind("datacenter", ("Datacenter",), "root", include=("Datacenter",),
                         fallback_pivot="")
FOLDER: Final = Kind(
    "folder", ("Folder", "StoragePod"), "datacenter",
    parents=(*_COMPUTE_TYPES, "HostSystem", "VirtualApp", "StoragePod"),
    fallback_pivot="vmFolder",
)
DATASTORE: Final = Kind("datastore", ("Datastore",), "datastoreFolder", parents=("StoragePod",))
NETWORK: Final = Kind("network", _NETWORK_TYPES, "networkFolder")
COMPUTE: Final = Kind("cluster or host", _COMPUTE_TYPES, "hostFolder")
CLUSTER: Final = Kind("cluster", ("ClusterComputeResource",), "hostFolder")
HOST: Final = Kind("host", ("HostSystem",), "hostFolder", parents=_COMPUTE_TYPES,
                   include=("HostSystem",), expand_hosts=True)
RESOURCE_POOL: Final = Kind("resource pool", ("ResourcePool",), "hostFolder",
                            parents=(*_COMPUTE_TYPES, "VirtualApp"), nested=("ResourcePool",),
                            contents=True)
VM: Final = Kind("VM or template", ("VirtualMachine",), "vmFolder", parents=("VirtualApp",))
ATTACHABLE_NETWORKS: Final = ("Network", "OpaqueNetwork", "DistributedVirtualPortgroup")


@dataclass(frozen=True)
class Resolved:
    """The one object an argument names, with its inventory path."""

    node: Node
    path: str

    @property
    def obj(self) -> Any:
        return self.node.obj

    @property
    def name(self) -> str:
        return self.node.name


class _TraverseError(Exception):
    pass


class Inventory:
    """The whole inventory tree (names, parents, children), read in one bulk call."""

    def __init__(self, root: Node, nodes: dict[str, Node]) -> None:
        self.root = root
        self.nodes = nodes

    @classmethod
    def read(cls, service: Any) -> Inventory:
        from pyVmomi import vim

        from ovapipe.vsphere.inventory import retrieve_types

        specs = {getattr(vim, t): ("name", "parent", *props, *EXTRA_PROPERTIES.get(t, ()))
                 for t, props in _CHILD_PROPERTIES.items()}
        content = service.RetrieveContent()
        found = retrieve_types(service, vim.ManagedEntity, specs, include_root=True)
        nodes: dict[str, Node] = {}
        for item in found:
            obj = item.obj
            node = Node(obj, obj._wsdlName, str(item.props.get("name", obj._moId)),
                        _id(item.props.get("parent")), item.props)
            for prop in _CHILD_PROPERTIES.get(_BASE_TYPE.get(node.type, node.type), ()):
                value = item.props.get(prop)
                if value is None:
                    continue
                refs = value if isinstance(value, list) else [value]
                node.children.extend(r._moId for r in refs)
            nodes[node.id] = node
        root = nodes[content.rootFolder._moId]
        return cls(root, nodes)

    # ------------------------------------------------------------------ paths and tree

    def path_of(self, node: Node) -> str:
        """The canonical inventory path (parent chain), names as vCenter stores them."""
        names: list[str] = []
        current: Node | None = node
        while current is not None and current.id != self.root.id:
            names.append(current.name)
            current = self.nodes.get(current.parent) if current.parent else None
        return "/" + "/".join(reversed(names)) if names else "/"

    def children(self, element: Element) -> list[Element]:
        node = element.node
        if node.type not in _TRAVERSABLE_BY_LISTER:
            raise _TraverseError(f"cannot traverse type {node.type}")
        out = []
        for child_id in node.children:
            child = self.nodes.get(child_id)
            if child is not None:
                out.append(Element(child, govpath.join(element.path, child.name)))
        return out

    def datacenter_of(self, node: Node) -> Node | None:
        current: Node | None = node
        while current is not None:
            if current.type == "Datacenter":
                return current
            current = self.nodes.get(current.parent) if current.parent else None
        return None

    def is_below(self, node: Node, ancestor: Node) -> bool:
        current: Node | None = node
        while current is not None:
            if current.id == ancestor.id:
                return True
            current = self.nodes.get(current.parent) if current.parent else None
        return False

    def by_path(self, path: str) -> Node | None:
        """SearchIndex.FindByInventoryPath: the object at an exact path."""
        node = self.root
        for part in govpath.clean(path).strip("/").split("/"):
            if not part:
                continue
            if node.type not in _TRAVERSABLE_BY_LISTER:
                return None
            child = next((self.nodes[c] for c in node.children
                          if c in self.nodes and self.nodes[c].name == part), None)
            if child is None:
                return None
            node = child
        return node

    def _pivot(self, which: str, datacenter: Node | None) -> Node:
        if which == "root" or datacenter is None:
            return self.root
        if which == "datacenter":
            return datacenter
        ref = datacenter.props.get(which)
        return self.nodes[ref._moId] if ref is not None else datacenter

    # ------------------------------------------------------------------ the finder

    def find(self, kind: Kind, arg: str, datacenter: Node | None = None, *,
             pivot: str | None = None, lenient: bool = False) -> list[Element]:
        """Finder.<Kind>List(arg): every match, before choosing one (finder.find + recurser)."""
        is_path = "/" in arg
        root = Element(self.root, "/")
        parts = _to_parts(arg)
        if parts and parts[0] == "..":
            raise ConfigError(f"{kind.name} {arg!r}: '..' cannot go up the inventory tree")
        if parts and parts[0] == ".":
            node = self._pivot(pivot or kind.pivot, datacenter)
            root = Element(node, self.path_of(node))
            parts = parts[1:]
        match = _lenient_match if lenient else _strict_match
        try:
            if is_path:
                found_root = self._find_root(root, parts)
                if found_root is None:
                    elements = self._list(kind, root, parts, match, lenient)
                    return self._keep(kind, elements)
                root, parts = found_root, ["*"]
            parents = (*kind.parents, *kind.nested)
            return self._keep(kind, self._find(kind, parents, root, parts, match))
        except govpath.BadPattern:
            raise ConfigError(f"{kind.name} {arg!r}: not a valid pattern (an unclosed '[' or "
                              "a trailing '\\')") from None
        except _TraverseError:
            return []

    def _find_root(self, root: Element, parts: list[str]) -> Element | None:
        if not parts or parts[-1] != "...":
            return None
        if len(parts) == 1:
            return root
        path = govpath.join(root.path, *parts[:-1])
        node = self.by_path(path)
        return Element(node, path) if node is not None else None

    def _list(self, kind: Kind, root: Element, parts: list[str],
              match: Callable[[str, Node, str], bool], lenient: bool) -> list[Element]:
        if not parts and (not kind.contents or not kind.traversable(root.node, kind.parents)):
            return [root]
        children = self.children(root)
        if not parts:
            return children
        rest = "/".join(parts)
        out: list[Element] = []
        for child in children:
            if match(parts[0], child.node, child.path):
                out.extend(self._list(kind, child, parts[1:], match, lenient))
            elif child.path.endswith("/" + govpath.join(*parts)) or (
                lenient and unescape(child.node.name) == rest
            ):
                out.append(child)  # a name that contains '/'
        return out

    def _find(self, kind: Kind, parents: Sequence[str], root: Element, parts: list[str],
              match: Callable[[str, Node, str], bool]) -> list[Element]:
        out: list[Element] = []
        if parts and match(parts[0], root.node, root.path) and kind.wanted(root.node):
            out.append(root)
        if not kind.traversable(root.node, parents):
            return out
        for child in self.children(root):
            out.extend(self._find(kind, parents, child, parts, match))
        return out

    def _keep(self, kind: Kind, elements: Iterable[Element]) -> list[Element]:
        out: dict[str, Element] = {}
        for element in elements:
            node = element.node
            if kind.expand_hosts and node.type in _COMPUTE_TYPES:
                for ref in node.props.get("host") or []:
                    host = self.nodes.get(ref._moId)
                    if host is not None:
                        out.setdefault(host.id, Element(host, self.path_of(host)))
            elif node.type in kind.types:
                out.setdefault(node.id, element)
        return list(out.values())

    # ------------------------------------------------------------------ choosing one

    def candidates(self, kind: Kind, arg: str, datacenter: Node | None = None) -> list[Element]:
        """The finder's matches; where it finds none, ovapipe's two extra readings."""
        found = self.find(kind, arg, datacenter)
        if found or not arg:
            return found
        pivots = [kind.pivot]
        if "/" in arg and not arg.startswith(("/", ".")) and kind.fallback_pivot:
            pivots.append(kind.fallback_pivot)
        extra: dict[str, Element] = {}
        for pivot in pivots:
            for element in self.find(kind, arg, datacenter, pivot=pivot, lenient=True):
                extra.setdefault(element.node.id, element)
        return list(extra.values())

    def resolve(self, kind: Kind, arg: str, datacenter: Node | None = None, *,
                source: str = "", within: Node | None = None) -> Resolved:
        """The one object ``arg`` names; ConfigError listing candidates otherwise."""
        what = f"{kind.name} {arg!r}" + (f" ({source})" if source else "")
        where = f" in datacenter {self.path_of(datacenter)}" if datacenter else ""
        if not arg:
            raise ConfigError(f"{kind.name} ({source or 'argument'}) is empty: give {PATH_FORMS}")
        found = self.candidates(kind, arg, datacenter)
        if datacenter is not None:
            outside = [e for e in found if not self.is_below(e.node, datacenter)]
            found = [e for e in found if self.is_below(e.node, datacenter)]
            if outside and not found:
                raise ConfigError(f"{what} is {self.path_of(outside[0].node)}, outside "
                                  f"datacenter {self.path_of(datacenter)}")
        if within is not None:
            found = [e for e in found if self.is_below(e.node, within)]
            where = f" in {self.path_of(within)}"
        if len(found) == 1:
            return Resolved(found[0].node, self.path_of(found[0].node))
        if not found:
            there = self.all_of(kind, datacenter if within is None else within)
            listed = _listing(self.path_of(n) for n in there)
            raise ConfigError(f"{what} not found{where}; available: {listed}. "
                              f"Give {PATH_FORMS}")
        listed = _listing(self.path_of(e.node) for e in found)
        raise ConfigError(f"{what} is ambiguous{where}: {len(found)} match: {listed}; "
                          "give the full path of one")

    def only(self, kind: Kind, datacenter: Node | None, *, flag: str,
             types: Sequence[str] | None = None) -> Resolved:
        """The default when nothing was given: the only object of that kind."""
        there = [n for n in self.all_of(kind, datacenter) if types is None or n.type in types]
        where = f"datacenter {self.path_of(datacenter)}" if datacenter else "this vCenter"
        if len(there) == 1:
            return Resolved(there[0], self.path_of(there[0]))
        raise ConfigError(
            f"no {kind.name} given and {where} has {len(there)}: "
            f"{_listing(self.path_of(n) for n in there) or 'none'}; pass {flag}"
        )

    def all_of(self, kind: Kind, below: Node | None) -> list[Node]:
        types = ("HostSystem",) if kind.expand_hosts else kind.types
        return sorted(
            (n for n in self.nodes.values()
             if n.type in types and (below is None or self.is_below(n, below))),
            key=self.path_of,
        )

    def datacenter(self, arg: str | None, *, source: str = "--datacenter") -> Resolved:
        if not arg:
            return self.only(DATACENTER, None, flag=source)
        return self.resolve(DATACENTER, arg, source=source)

    def owner_compute(self, node: Node) -> Node | None:
        """The cluster or standalone host a resource pool belongs to."""
        current: Node | None = node
        while current is not None and current.type not in _COMPUTE_TYPES:
            current = self.nodes.get(current.parent) if current.parent else None
        return current


def _strict_match(pattern: str, node: Node, path: str) -> bool:
    return govpath.match(pattern, govpath.base(path))


def _lenient_match(pattern: str, node: Node, path: str) -> bool:
    return _strict_match(pattern, node, path) or pattern == unescape(node.name)


def _to_parts(arg: str) -> list[str]:
    """govmomi list.ToParts."""
    cleaned = govpath.clean(arg)
    if cleaned == "/":
        return []
    if cleaned and cleaned[0] not in "/.":
        cleaned = "./" + cleaned
    parts = cleaned.split("/")
    return parts[1:] if parts[0] == "" else parts


def _listing(paths: Iterable[str], limit: int = 10) -> str:
    shown = sorted(set(paths))
    more = f" (and {len(shown) - limit} more)" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more if shown else "none"


def _id(ref: Any) -> str | None:
    return None if ref is None else str(ref._moId)


def find_one(service: Any, kind: Kind, arg: str, datacenter: Any = None, *,
             source: str = "") -> Resolved:
    """One lookup with its own inventory read: ``arg`` inside ``datacenter`` (a managed object)."""
    inventory = Inventory.read(service)
    node = inventory.nodes.get(datacenter._moId) if datacenter is not None else None
    return inventory.resolve(kind, arg, node, source=source)
