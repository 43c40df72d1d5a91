"""Which nightly templates to delete: only ours, never the newest N, never the one just made."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class NightlyTemplate:
    name: str
    datacenter: str
    profile: str
    build_id: str  # sortable: starts with the UTC date and time


def to_delete(
    templates: Iterable[NightlyTemplate], keep: int, just_published: set[str]
) -> list[NightlyTemplate]:
    """Per profile and datacenter, all but the newest ``keep``, sparing ``just_published``."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the template just published stays")
    groups: dict[tuple[str, str], list[NightlyTemplate]] = {}
    for template in templates:
        groups.setdefault((template.profile, template.datacenter), []).append(template)
    doomed: list[NightlyTemplate] = []
    for group in groups.values():
        newest_first = sorted(group, key=lambda t: t.build_id, reverse=True)
        doomed.extend(t for t in newest_first[keep:] if t.name not in just_published)
    return sorted(doomed, key=lambda t: (t.datacenter, t.profile, t.build_id))
