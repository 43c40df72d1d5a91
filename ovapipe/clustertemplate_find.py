"""Find: the VSphereMachineTemplates of a clusterctl file, who references them, which to change.

A reference is any mapping with ``kind: VSphereMachineTemplate`` and a ``name`` inside another
document; where it sits says its role (capv.role_of_reference), whatever the API version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ovapipe import capv
from ovapipe.errors import ConfigError
from ovapipe.yamldocs import YamlDocument, load_safe, split_documents

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Reference:
    """One document's reference to a VSphereMachineTemplate."""

    document: int  # index of the referring document
    kind: str
    name: str  # the referring object's metadata.name
    path: Path  # to the mapping that holds kind and name
    target: str  # the VSphereMachineTemplate it names
    role: str | None  # capv.MACHINE_WORKER, MACHINE_CONTROL_PLANE or None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class TemplateFile:
    """The documents of one input file, with its machine templates and references indexed."""

    source: str
    documents: list[YamlDocument]
    loaded: list[Any]
    templates: dict[str, int] = field(default_factory=dict)  # name -> document index
    references: list[Reference] = field(default_factory=list)

    def referrers(self, template: str, role: str | None = None) -> list[Reference]:
        return [r for r in self.references
                if r.target == template and (role is None or r.role == role)]


@dataclass(frozen=True)
class Target:
    """A template to change: in place, or as a copy ``split_to`` that ``repoint`` then use."""

    name: str
    split_to: str | None = None
    repoint: tuple[Reference, ...] = ()
    shared_with: tuple[Reference, ...] = ()  # other-role users that will see the change too


def _walk(node: Any, path: Path) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    pending: list[tuple[Any, Path]] = [(node, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, Mapping):
            yield where, item
            pending.extend((value, (*where, str(key))) for key, value in item.items())
        elif isinstance(item, list):
            pending.extend((value, (*where, index)) for index, value in enumerate(item))


def _name_of(data: Mapping[str, Any]) -> str | None:
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else None


def read_template_file(text: str, source: str) -> TemplateFile:
    documents = split_documents(text)
    found = TemplateFile(source, documents, [])
    for index, document in enumerate(documents):
        data = load_safe(document, f"{source}: document {index + 1}")
        found.loaded.append(data)
        if not isinstance(data, Mapping):
            continue
        kind = data.get("kind")
        if kind == capv.KIND_MACHINE_TEMPLATE:
            name = _name_of(data)
            if name is None:
                continue
            if name in found.templates:
                raise ConfigError(
                    f"{source}: documents {found.templates[name] + 1} and {index + 1} are both "
                    f"{capv.KIND_MACHINE_TEMPLATE} {name!r}; which one to patch is ambiguous"
                )
            found.templates[name] = index
            continue
        for path, node in _walk(data, ()):
            target = node.get("name")
            if path and node.get("kind") == capv.KIND_MACHINE_TEMPLATE and isinstance(target, str):
                found.references.append(Reference(
                    index, str(kind), _name_of(data) or f"(document {index + 1})", path, target,
                    capv.role_of_reference(kind, path),
                ))
    found.references.sort(key=lambda r: (r.document, str(r.path)))
    return found


def _users(references: Sequence[Reference]) -> str:
    return ", ".join(sorted({r.label for r in references}))


def choose_targets(machine: str, found: TemplateFile) -> list[Target]:
    """Which templates ``--machine`` means, and how each is changed without surprising anyone."""
    names, source = found.templates, found.source
    available = ", ".join(sorted(names)) or "none"
    if not names:
        raise ConfigError(f"{source}: no {capv.KIND_MACHINE_TEMPLATE} documents")
    role = capv.MACHINE_ROLES.get(machine)
    if role is None:
        if machine not in names:
            raise ConfigError(
                f"{source}: no {capv.KIND_MACHINE_TEMPLATE} named {machine!r}; "
                f"available: {available} (or --machine worker / control-plane)"
            )
        users = found.referrers(machine)
        roles = {r.role for r in users if r.role}
        shared = tuple(users) if len(roles) > 1 else ()
        return [Target(machine, shared_with=shared)]
    referenced = sorted({r.target for r in found.references
                         if r.role == machine and r.target in names})
    if not referenced:
        if role.template_name not in names:
            raise ConfigError(
                f"{source}: no {machine} {capv.KIND_MACHINE_TEMPLATE}: expected one named "
                f"{role.template_name!r} or referenced by a {role.referrer_kind}"
                f"; available: {available} (pass --machine NAME)"
            )
        referenced = [role.template_name]
    targets = []
    for name in referenced:
        others = [r for r in found.referrers(name) if r.role not in (machine, None)]
        if not others:
            targets.append(Target(name))
        elif machine == capv.MACHINE_WORKER:
            split_to = f"{name}{capv.GPU_WORKER_SUFFIX}"
            if split_to in names:
                raise ConfigError(
                    f"{source}: {capv.KIND_MACHINE_TEMPLATE} {name!r} is shared with "
                    f"{_users(others)}, and the name for a separate GPU worker template, "
                    f"{split_to!r}, is taken; pass --machine NAME"
                )
            targets.append(Target(name, split_to, tuple(found.referrers(name, machine))))
        else:
            raise ConfigError(
                f"{source}: {capv.KIND_MACHINE_TEMPLATE} {name!r} serves the control plane and "
                f"also {_users(others)}: patching it gives every one of those machines GPUs. "
                f"Pass --machine {name!r} to patch the shared template anyway"
            )
    return targets
