"""``publish --library NAME``: the OVA goes into a content library item once, then every
datacenter deploys that item (the publish steps with ``deploy`` in place of ``import``).

The item is marked like a VM (ownership.py): created with this run's in-progress marker in
its description, given the OVA's record (sha256, build facts, pipeline id) only once its
update session completed. Its undo holds the item id and re-reads the marker before
deleting; the session's undo cancels and deletes it by id. An item of the same name that
holds the same OVA is reused (nothing is uploaded); a dead run's half-made item is removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any, Final

from ovapipe.config import CLEANUP_TIMEOUT, Connection
from ovapipe.errors import CheckFailed, ConfigError, VSphereError
from ovapipe.steps import Run, Step
from ovapipe.vsphere.library import content
from ovapipe.vsphere.library.rest import RestError, RestSession
from ovapipe.vsphere.ownership import RunMarker, liveness, with_marker
from ovapipe.vsphere.publish.ova import CheckedOva, ProgressFactory
from ovapipe.vsphere.publish.records import LibrarySource, PublishOptions

LIBRARY_DESCRIPTION: Final = "OVAs published by ovapipe"


@dataclass
class LibraryRun:
    options: PublishOptions
    connection: Connection
    ova: CheckedOva
    progress: ProgressFactory
    cancelled: threading.Event
    marker: RunMarker
    service: Any = None
    api: RestSession | None = None
    datastore_id: str | None = None
    library: content.Library | None = None
    item_id: str | None = None
    reused: bool = False
    replacing: content.Item | None = None  # --replace: the complete item of another OVA
    bytes_sent: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def library_name(self) -> str:
        assert self.options.library is not None
        return self.options.library

    def check_cancel(self) -> None:
        if self.cancelled.is_set():
            raise KeyboardInterrupt

    def source(self) -> LibrarySource:
        assert self.library is not None and self.item_id is not None
        return LibrarySource(self.library.id, self.library.name, self.item_id, self.ova.name,
                             self.library.publish_url)


def item_record(ova: CheckedOva, options: PublishOptions, sha256: str) -> str:
    """The complete item's description: the same record a template carries."""
    from ovapipe.vsphere.template import TemplateRecord

    facts = {f"build.{k}": v for k, v in ova.index.descriptor.product.items()}
    facts["published"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if options.pipeline_id:
        facts["pipeline_id"] = options.pipeline_id
    facts.update(options.facts)
    return TemplateRecord(sha256, ova.index.path.name, facts).annotation()


def step_connect(state: LibraryRun, run: Run) -> None:
    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.library.rest import rest_session

    login = contextlib.ExitStack()
    state.service = login.enter_context(session(state.connection))
    state.api = login.enter_context(rest_session(state.connection))
    run.always(f"log out of {state.connection.server}", login.close)


def step_datastore(state: LibraryRun, run: Run) -> None:
    """The library's datastore: --library-datastore, else --datastore, in the first datacenter."""
    from ovapipe.vsphere.placement import PlacementRequest, resolve_placement

    options = state.options
    request = PlacementRequest(options.datacenters[0], options.cluster, options.resource_pool,
                               options.library_datastore or options.datastore, options.folder,
                               options.network)
    placement = resolve_placement(state.service, request, state.ova.index.descriptor.networks)
    state.datastore_id = placement.datastore.obj._moId


def step_library(state: LibraryRun, run: Run) -> None:
    api, name = state.api, state.library_name
    assert api is not None and state.datastore_id is not None
    found = content.find_libraries(api, name)
    if len(found) > 1:
        raise ConfigError(f"--library {name}: {len(found)} content libraries have this name "
                          f"(ids {', '.join(lib.id for lib in found)}); rename one")
    if not found:
        library_id = content.create_local_library(api, name, state.datastore_id,
                                                  published=state.options.library_publish,
                                                  description=LIBRARY_DESCRIPTION)
        run.say(f"created content library {name} ({library_id})")
        library = content.get_library(api, library_id)
    else:
        library = found[0]
        if library.type != "LOCAL":
            raise ConfigError(f"--library {name}: a {library.type.lower()} library cannot take "
                              "uploads; name a local library (or a new name to create one)")
    if state.options.library_publish and not library.published:
        content.publish_library(api, library.id)
        library = content.get_library(api, library.id)
        if not library.published:
            raise VSphereError(f"content library {name} is still not published after "
                               "enabling publishing")
    state.library = library
    if state.options.library_publish:
        run.say(f"content library {name} is published; subscribe other vCenters to "
                f"{library.publish_url}")


def _delete_item_if_ours(state: LibraryRun, item_id: str, run: Run) -> None:
    api = state.api
    assert api is not None
    api.connection_timeout(CLEANUP_TIMEOUT)
    item = content.get_item(api, item_id)
    marker = RunMarker.parse(item.description) if item else None
    if item is None or marker is None or marker.id != state.marker.id \
            or marker.state != "in-progress":
        run.say(f"cleanup: library item {item_id} is gone or no longer this run's: left alone")
        return
    content.delete_item(api, item_id)
    run.say(f"cleanup: deleted library item {item.name} ({item_id})")


def _cancel_and_delete_session(api: RestSession, session_id: str) -> None:
    """Cancel an update session and delete it (a cancelled one stays listed otherwise)."""
    with contextlib.suppress(RestError):
        content.end_update_session(api, session_id, "cancel")
    with contextlib.suppress(RestError):
        content.delete_update_session(api, session_id)


def _cancel_session(state: LibraryRun, session_id: str, run: Run) -> None:
    api = state.api
    assert api is not None
    api.connection_timeout(CLEANUP_TIMEOUT)
    _cancel_and_delete_session(api, session_id)
    run.say(f"cleanup: cancelled update session {session_id}")


def _end_sessions_of(api: RestSession, item_id: str) -> list[str]:
    """Cancel and delete the update sessions still open on a dead run's item (by its id)."""
    ended = []
    for session_id in content.list_update_sessions(api):
        found = content.get_update_session(api, session_id)
        if found is None or found.item_id != item_id or found.state != "ACTIVE":
            continue
        _cancel_and_delete_session(api, session_id)
        ended.append(session_id)
    return ended


def step_item(state: LibraryRun, run: Run) -> None:
    """Reuse the item holding this OVA, remove a dead run's half-made one, or say why not."""
    from ovapipe.vsphere.template import TemplateRecord

    api, library = state.api, state.library
    assert api is not None and library is not None
    for item in content.find_items(api, library.id, state.ova.name):
        marker = RunMarker.parse(item.description)
        if marker is not None:
            alive = liveness(marker)
            if alive.alive and marker.id != state.marker.id:
                raise CheckFailed(f"library item {item.name} in {library.name} is being "
                                  f"uploaded by {marker.describe()} ({alive.why}); try later")
            ended = _end_sessions_of(api, item.id)
            content.delete_item(api, item.id)
            run.say(f"removed library item {item.name} ({item.id}) that "
                    f"{marker.describe()} left half-made ({alive.why})"
                    + (f", and its update session(s) {', '.join(ended)}" if ended else ""))
            continue
        record = TemplateRecord.parse(item.description)
        if record is None:
            raise CheckFailed(f"library item {item.name} in {library.name} was not made by "
                              "ovapipe (no record in its description): choose another --name")
        sha = (state.ova.content_sha256(state.progress) if state.options.replace
               else state.ova.identity(state.progress))
        if record.ova_sha256 != sha and state.options.replace:
            state.replacing = item
            run.say(f"library item {item.name} in {library.name} holds another OVA (sha256 "
                    f"{record.ova_sha256}): uploading this one beside it, then replacing it")
            continue
        if record.ova_sha256 != sha:
            raise CheckFailed(f"library item {item.name} in {library.name} holds another OVA "
                              f"(sha256 {record.ova_sha256}, this one is {sha}): publish "
                              "under another --name")
        state.item_id, state.reused = item.id, True
        run.say(f"library item {item.name} in {library.name} already holds this OVA "
                f"(sha256 {sha}); nothing to upload")


def step_upload(state: LibraryRun, run: Run) -> None:
    if state.reused:
        return
    from ovapipe.vsphere.library.upload import complete_session, upload_ova

    api, library, ova = state.api, state.library, state.ova
    assert api is not None and library is not None
    description = with_marker(f"ovapipe is uploading {ova.index.path.name}\n", state.marker)
    state.check_cancel()
    # Beside an item being replaced, under a temporary name until it is complete.
    name = f"{ova.name}.op-tmp-{state.marker.id[:8]}" if state.replacing else ova.name
    item_id = content.create_item(api, library.id, name, description)
    run.on_failure(f"delete library item {ova.name} ({item_id})",
                   lambda: _delete_item_if_ours(state, item_id, run))
    state.item_id = item_id
    session_id = content.create_update_session(api, item_id)
    run.on_failure(f"cancel update session {session_id}",
                   lambda: _cancel_session(state, session_id, run))
    total = sum(m.size for m in ova.index.members)
    with state.progress(f"library {library.name}: upload {ova.index.path.name}",
                        total) as progress:
        uploaded = upload_ova(api, session_id, ova.index, progress=progress,
                              check=state.check_cancel,
                              whole_file_sha256=ova.sha256 is None)
    from ovapipe.faults import checkpoint

    checkpoint("publish.library.uploaded")
    complete_session(api, session_id, state.check_cancel)
    if uploaded.ova_sha256 is not None:
        ova.learned(uploaded.ova_sha256)
    state.bytes_sent = uploaded.bytes_sent
    sha = ova.identity(state.progress)
    if state.replacing is not None:  # still marked: an undo from here on deletes it
        _replace_item(state, state.replacing, item_id, run)
    content.set_item_description(api, item_id, item_record(ova, state.options, sha))
    run.say(f"library {library.name}: uploaded {uploaded.files} file(s), "
            f"{uploaded.bytes_sent} bytes, into item {ova.name} ({item_id})")


def _replace_item(state: LibraryRun, old: content.Item, new_id: str, run: Run) -> None:
    """Delete the old item (re-read: still the complete one found), then the new takes its
    name. Between the two calls no item has the name: one call long, as publish's swap."""
    from ovapipe.vsphere.template import TemplateRecord

    api = state.api
    assert api is not None
    again = content.get_item(api, old.id)
    if again is not None:
        if (again.description != old.description or TemplateRecord.parse(again.description)
                is None or RunMarker.parse(again.description) is not None):
            raise CheckFailed(f"library item {old.name} ({old.id}) changed while this run "
                              "uploaded its replacement: left alone")
        content.delete_item(api, old.id)
    content.rename_item(api, new_id, state.ova.name)
    run.say(f"replaced library item {old.name} ({old.id} deleted)")


LIBRARY_STEPS: Final = [
    Step("library-connect", step_connect),
    Step("library-datastore", step_datastore),
    Step("library", step_library),
    Step("library-item", step_item),
    Step("library-upload", step_upload),
]
