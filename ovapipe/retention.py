"""Which nightly templates to delete: only this site's, in its folder, never one a VM uses.

A template is a candidate only if it carries this site's pipeline id (invoke.yaml
``ovapipe.pipeline_id``, recorded at publish), its nightly profile, lives in the folder the
template just published lives in, is complete (no run marker) and no VM depends on its disks.
Per profile and datacenter the newest ``keep`` stay; the template just published and the
newest one always stay; a build stamp in the future (a runner with a skewed clock)
is ignored for the ordering, never deleted, and reported. Local ``output/`` folders of the
same image are pruned with the same keep count.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

NIGHTLY_PROFILE_FACT: Final = "nightly.profile"
NIGHTLY_BUILD_FACT: Final = "nightly.build_id"
PIPELINE_FACT: Final = "pipeline_id"
# The UTC stamp a nightly build id starts with (ovapipe.nightly.build_stamp), wherever it
# stands in a name: PROFILE-STAMP-COMMIT-RUN, or IMAGE-kube-vX.Y.Z-STAMP-COMMIT-RUN.
_STAMP: Final = re.compile(r"(?:^|-)(\d{8}-\d{6})(?=-|$)")


@dataclass(frozen=True)
class NightlyTemplate:
    name: str
    datacenter: str
    profile: str
    build_id: str  # PROFILE-YYYYMMDD-HHMMSS-COMMIT-RUN (the nightly.build_id fact)
    obj: Any = field(default=None, compare=False)

    def stamp(self) -> dt.datetime | None:
        return build_time(self.build_id)


def build_time(build_id: str) -> dt.datetime | None:
    match = _STAMP.search(build_id)
    if not match:
        return None
    try:
        return dt.datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass
class RetentionPlan:
    doomed: list[NightlyTemplate]
    future: list[NightlyTemplate]  # ignored for ordering, kept, reported


def to_delete(
    templates: Iterable[NightlyTemplate], keep: int, just_published: set[str],
    now: dt.datetime | None = None,
) -> list[NightlyTemplate]:
    """Per profile and datacenter, all but the newest ``keep``, sparing ``just_published``."""
    return plan_retention(templates, keep, just_published, now).doomed


def plan_retention(
    templates: Iterable[NightlyTemplate], keep: int, just_published: set[str],
    now: dt.datetime | None = None,
) -> RetentionPlan:
    """What to delete, and the templates with a future build stamp (kept, reported)."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the template just published stays")
    now = now or dt.datetime.now(dt.UTC)
    groups: dict[tuple[str, str], list[NightlyTemplate]] = {}
    future: list[NightlyTemplate] = []
    for template in templates:
        stamp = template.stamp()
        if stamp is None or stamp > now:
            if template.name not in just_published:
                future.append(template)
            continue
        groups.setdefault((template.profile, template.datacenter), []).append(template)
    doomed: list[NightlyTemplate] = []
    for group in groups.values():
        newest_first = sorted(group, key=lambda t: t.stamp() or now, reverse=True)
        # newest_first[0], the newest verified one, is inside every keep >= 1.
        doomed.extend(t for t in newest_first[keep:] if t.name not in just_published)
    return RetentionPlan(sorted(doomed, key=lambda t: (t.datacenter, t.profile, t.build_id)),
                         sorted(future, key=lambda t: t.name))


def nightly_templates(service: Any, datacenter: str, pipeline_id: str,
                      folder: Any) -> Iterator[NightlyTemplate]:
    """Complete templates in ``folder`` (None: any) of ``datacenter`` that this site's nightly
    job made."""
    from pyVmomi import vim

    from ovapipe.vsphere.inventory import datacenter as find_datacenter
    from ovapipe.vsphere.inventory import retrieve
    from ovapipe.vsphere.ownership import RunMarker
    from ovapipe.vsphere.template import record_of

    dc = find_datacenter(service, datacenter)
    for vm in retrieve(service, vim.VirtualMachine,
                       ["name", "config.template", "config.annotation", "parent"], dc.obj):
        record = record_of(vm)
        if not (vm.get("config.template") and record):
            continue
        if RunMarker.parse(vm.get("config.annotation")) is not None:
            continue  # work in progress or retired: publish's recovery owns it
        if record.facts.get(PIPELINE_FACT) != pipeline_id:
            continue
        if folder is not None and vm.get("parent") != folder:
            continue
        profile = record.facts.get(NIGHTLY_PROFILE_FACT)
        build_id = record.facts.get(NIGHTLY_BUILD_FACT)
        if profile and build_id:
            yield NightlyTemplate(vm.name, datacenter, profile, build_id, vm.obj)


@dataclass
class RetentionResult:
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # with the reason
    pruned: list[str] = field(default_factory=list)  # local output folders

    def message(self) -> str:
        parts = [f"deleted {', '.join(self.deleted)}" if self.deleted else "nothing to delete"]
        parts += self.kept
        if self.pruned:
            parts.append(f"pruned local {', '.join(self.pruned)}")
        return "; ".join(parts)


def apply_retention(service: Any, datacenter: str, profile: str, keep: int,
                    just_published: set[str], pipeline_id: str | None,
                    output_dir: Path | None = None) -> RetentionResult:
    from ovapipe.vsphere.dependents import dependents
    from ovapipe.vsphere.template import destroy

    result = RetentionResult()
    if output_dir is not None:
        result.pruned = prune_output(output_dir, keep, just_published)
    if not pipeline_id:
        result.kept.append("vCenter retention is off: set ovapipe.pipeline_id in invoke.yaml "
                           "(only templates carrying this site's id are ever deleted)")
        return result
    found = list(nightly_templates(service, datacenter, pipeline_id, None))
    new = [t for t in found if t.name in just_published]
    if not new:
        result.kept.append(f"the template just published ({', '.join(sorted(just_published))}) "
                           "was not found: nothing deleted")
        return result
    from ovapipe.vsphere.inventory import properties

    folder = properties(service, new[0].obj, ["parent"]).get("parent")
    mine = [t for t in nightly_templates(service, datacenter, pipeline_id, folder)
            if t.profile == profile]
    plan = plan_retention(mine, keep, just_published)
    for template in plan.future:
        result.kept.append(f"kept {template.name}: its build stamp is in the future or "
                           "unreadable (clock skew?), ignored for the ordering")
    for template in plan.doomed:
        users = dependents(service, template.obj)
        if users:
            result.kept.append(f"kept {template.name}: {', '.join(users)} use its disks")
            continue
        destroy(template.obj, template.name)
        result.deleted.append(template.name)
    return result


def prune_output(output_dir: Path, keep: int, just_published: set[str],
                 now: dt.datetime | None = None) -> list[str]:
    """Local build folders of the same image (output/IMAGE-STAMP-...) beyond the newest
    ``keep``; the image is what the folders just published are called without their stamp."""
    now = now or dt.datetime.now(dt.UTC)
    prefixes = set()
    for name in just_published:
        match = _STAMP.search(name)
        if match:
            prefixes.add(name[:match.start()])
    try:
        entries = list(output_dir.iterdir())
    except OSError:
        return []
    builds: dict[str, list[tuple[dt.datetime, Path]]] = {}
    for entry in entries:
        match = _STAMP.search(entry.name)
        stamp = build_time(entry.name)
        prefix = entry.name[:match.start()] if match else None
        if (prefix in prefixes and stamp is not None and stamp <= now and entry.is_dir()
                and not entry.is_symlink()):
            builds.setdefault(prefix, []).append((stamp, entry))
    pruned = []
    for group in builds.values():
        group.sort(reverse=True)
        for _, entry in group[keep:]:
            if entry.name not in just_published:
                shutil.rmtree(entry)
                pruned.append(entry.name)
    return sorted(pruned)


LIBRARY_PLACE: Final = "library"  # the NightlyTemplate.datacenter of a library item


def nightly_item(item: Any, pipeline_id: str) -> NightlyTemplate | None:
    """A complete library item that this site's nightly job made (``obj``: its id), or None."""
    from ovapipe.vsphere.ownership import RunMarker
    from ovapipe.vsphere.template import TemplateRecord

    record = TemplateRecord.parse(item.description)
    if record is None or RunMarker.parse(item.description) is not None:
        return None  # not ovapipe's, or an upload in progress (publish's recovery owns it)
    if record.facts.get(PIPELINE_FACT) != pipeline_id:
        return None
    profile = record.facts.get(NIGHTLY_PROFILE_FACT)
    build_id = record.facts.get(NIGHTLY_BUILD_FACT)
    if not (profile and build_id):
        return None
    return NightlyTemplate(item.name, LIBRARY_PLACE, profile, build_id, item.id)


def nightly_items(api: Any, library_id: str, pipeline_id: str) -> Iterator[NightlyTemplate]:
    """The library's items that this site's nightly job made.

    An OVF item has no dependents: a VM deployed from it is a full copy, and the templates
    deployed from it are kept or deleted by template retention on their own."""
    from ovapipe.vsphere.library import content

    for item in content.list_items(api, library_id):
        if (found := nightly_item(item, pipeline_id)) is not None:
            yield found


def apply_library_retention(api: Any, library: str, profile: str, keep: int,
                            just_published: set[str],
                            pipeline_id: str | None) -> RetentionResult:
    """The library's items as templates are kept: this site's, this profile's, newest ``keep``;
    each deleted by its id after re-reading that it still carries this site's record."""
    from ovapipe.vsphere.library import content

    result = RetentionResult()
    if not pipeline_id:
        result.kept.append("library retention is off: set ovapipe.pipeline_id in invoke.yaml")
        return result
    found = content.find_libraries(api, library)
    if len(found) != 1:
        result.kept.append(f"content library {library}: {len(found)} libraries of that name, "
                           "nothing deleted")
        return result
    mine = [t for t in nightly_items(api, found[0].id, pipeline_id) if t.profile == profile]
    if not any(t.name in just_published for t in mine):
        result.kept.append(f"the item just published ({', '.join(sorted(just_published))}) "
                           f"is not in {library}: nothing deleted")
        return result
    plan = plan_retention(mine, keep, just_published)
    for item in plan.future:
        result.kept.append(f"kept library item {item.name}: its build stamp is in the future or "
                           "unreadable (clock skew?), ignored for the ordering")
    for item in plan.doomed:
        again = content.get_item(api, item.obj)
        if again is None or nightly_item(again, pipeline_id) is None:
            continue  # changed since it was read: not ours to delete any more
        content.delete_item(api, item.obj)
        result.deleted.append(f"{library}/{item.name}")
    return result
