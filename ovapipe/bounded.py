"""YAML and JSON from outside, read under hard caps on nesting and alias expansion.

A safe YAML loader shares an aliased node instead of copying it, so ``&a [*a, *a, ...]`` nested
a few levels loads quickly, but every walk over the result (schema checks, placeholder
substitution, dumping) visits each alias again: nine levels of ten aliases are 10**9 nodes.
So before a document is loaded, its event stream is read once and the nodes a full walk would
visit are counted, each alias costing the size of what it names. A document over the caps, or
one whose alias names a node that contains it, is refused with the file and line. JSON has no
aliases; its nesting is capped alike, so no reader recurses without bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ovapipe.errors import ConfigError

# Nodes reachable only through aliases, over the whole document. Hand-written anchors (a
# shared block of labels, say) stay far below; a bomb is refused after a few thousand.
MAX_ALIAS_NODES: Final = 10_000
# Nesting of mappings and sequences. Kubernetes objects nest about 15 deep, CRD schemas 40.
MAX_DEPTH: Final = 100


@dataclass
class _Open:
    anchor: str | None
    nodes: int = 1


def check_yaml(text: str, where: str) -> None:
    """ConfigError naming ``where`` and the line when ``text`` exceeds the caps."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        DocumentStartEvent,
        ScalarEvent,
    )

    sizes: dict[str, int] = {}
    stack: list[_Open] = []
    through_aliases = 0

    def refuse(event: Any, rule: str) -> ConfigError:
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        return ConfigError(f"{where}: line {line}: {rule}")

    def add(nodes: int) -> None:
        if stack:
            stack[-1].nodes += nodes

    try:
        for event in YAML(typ="safe", pure=True).parse(text):
            if isinstance(event, DocumentStartEvent):
                sizes.clear()
            elif isinstance(event, ScalarEvent):
                if event.anchor:
                    sizes[event.anchor] = 1
                add(1)
            elif isinstance(event, CollectionStartEvent):
                stack.append(_Open(event.anchor))
                if len(stack) > MAX_DEPTH:
                    raise refuse(event, f"nested more than {MAX_DEPTH} levels deep (ovapipe's cap)")
            elif isinstance(event, CollectionEndEvent):
                closed = stack.pop()
                if closed.anchor:
                    sizes[closed.anchor] = closed.nodes
                add(closed.nodes)
            elif isinstance(event, AliasEvent):
                if any(frame.anchor == event.anchor for frame in stack):
                    raise refuse(event, f"alias *{event.anchor} refers to a node that contains "
                                        "it (a recursive structure)")
                size = sizes.get(event.anchor, 1)  # an undefined alias: the loader reports it
                through_aliases += size
                if through_aliases > MAX_ALIAS_NODES:
                    raise refuse(event, f"aliases expand to more than {MAX_ALIAS_NODES} nodes "
                                        f"(ovapipe's cap; *{event.anchor} alone is {size})")
                add(size)
    except YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None


def load_yaml(text: str, where: str) -> Any:
    """One YAML document, plain Python values, within the caps."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    check_yaml(text, where)
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None


def check_depth(value: Any, where: str) -> None:
    """ConfigError when loaded JSON/YAML values nest more than MAX_DEPTH levels."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep "
                                  "(ovapipe's cap)")
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)


def load_json(
    text: str, where: str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> Any:
    """json.loads within the nesting cap; json.JSONDecodeError (with line) passes through."""
    try:
        value = json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep "
                          "(ovapipe's cap)") from None
    check_depth(value, where)
    return value


_YAML_RISK: Final = frozenset("&*[{")


def refuse_hostile_project_config(tasks_file: str | Path) -> None:
    """Check the invoke.yaml/.yml/.json beside tasks.py before Invoke loads it (exit 2 if over
    a cap).

    Invoke reads these with PyYAML and deep-copies the result while merging, which expands
    every alias; ruamel is only imported when the text has anchors, aliases or flow nesting.
    """
    import sys

    folder = Path(tasks_file).parent
    for name in ("invoke.yaml", "invoke.yml", "invoke.json"):
        path = folder / name
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if not _YAML_RISK.intersection(text) and max(
            (len(line) - len(line.lstrip(" ")) for line in text.splitlines()), default=0
        ) < MAX_DEPTH:
            continue
        try:
            check_yaml(text, str(path))
        except ConfigError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
