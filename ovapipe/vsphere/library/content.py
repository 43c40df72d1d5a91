"""The content library calls ovapipe makes, typed: libraries, items, update sessions, deploy.

Each function is one documented ``/rest`` endpoint (vSphere Automation API, Content Library
and ``vcenter/ovf/library-item``); records are dataclasses, never the raw JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from ovapipe.errors import VSphereError
from ovapipe.vsphere.library.rest import NotFound, RestSession, path_id

LIBRARY: Final = "/com/vmware/content/library"
LOCAL_LIBRARY: Final = "/com/vmware/content/local-library"
ITEM: Final = "/com/vmware/content/library/item"
UPDATE_SESSION: Final = "/com/vmware/content/library/item/update-session"
UPDATE_SESSION_FILE: Final = "/com/vmware/content/library/item/updatesession/file"
OVF_ITEM: Final = "/com/vmware/vcenter/ovf/library-item"
ITEM_TYPE_OVF: Final = "ovf"
# A deploy answers when the VM exists with its disks copied: minutes for a large image.
DEPLOY_TIMEOUT: Final = 3600.0


@dataclass(frozen=True)
class Library:
    id: str
    name: str
    type: str
    datastore_ids: tuple[str, ...]
    published: bool
    publish_url: str | None


@dataclass(frozen=True)
class Item:
    id: str
    library_id: str
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class UpdateSession:
    id: str
    item_id: str
    state: str  # ACTIVE, DONE, ERROR, CANCELED
    error: str | None


@dataclass(frozen=True)
class UploadFile:
    name: str
    upload_url: str


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _library(value: Any) -> Library:
    if not isinstance(value, dict):
        raise VSphereError("content library: the answer is not a library")
    backings = value.get("storage_backings")
    publish = value.get("publish_info")
    if not isinstance(publish, dict):
        publish = {}
    return Library(
        id=_text(value.get("id")), name=_text(value.get("name")), type=_text(value.get("type")),
        datastore_ids=tuple(_text(b.get("datastore_id")) for b in
                            (backings if isinstance(backings, list) else [])
                            if isinstance(b, dict)),
        published=publish.get("published") is True,
        publish_url=_text(publish.get("publish_url")) or None,
    )


def _item(value: Any) -> Item:
    if not isinstance(value, dict):
        raise VSphereError("content library: the answer is not a library item")
    return Item(id=_text(value.get("id")), library_id=_text(value.get("library_id")),
                name=_text(value.get("name")), type=_text(value.get("type")),
                description=_text(value.get("description")))


def _ids(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


# ------------------------------------------------------------------------------ libraries

def find_libraries(api: RestSession, name: str) -> list[Library]:
    """Every library with this name (vCenter compares names case-insensitively)."""
    ids = _ids(api.request("POST", LIBRARY, action="find", body={"spec": {"name": name}}))
    return [get_library(api, i) for i in sorted(ids)]


def get_library(api: RestSession, library_id: str) -> Library:
    return _library(api.request("GET", f"{LIBRARY}/{path_id(library_id)}"))


def create_local_library(api: RestSession, name: str, datastore_id: str, *,
                         published: bool, description: str) -> str:
    spec: dict[str, Any] = {
        "name": name, "description": description, "type": "LOCAL",
        "storage_backings": [{"type": "DATASTORE", "datastore_id": datastore_id}],
    }
    if published:
        spec["publish_info"] = {"published": True, "authentication_method": "NONE"}
    value = api.request("POST", LOCAL_LIBRARY, body={"create_spec": spec})
    if not isinstance(value, str) or not value:
        raise VSphereError(f"creating content library {name}: no id in the answer")
    return value


def publish_library(api: RestSession, library_id: str) -> None:
    api.request("PATCH", f"{LOCAL_LIBRARY}/{path_id(library_id)}", body={"update_spec": {
        "publish_info": {"published": True, "authentication_method": "NONE"}}})


# ------------------------------------------------------------------------------ items

def list_items(api: RestSession, library_id: str) -> list[Item]:
    ids = _ids(api.request("GET", ITEM, query={"library_id": library_id}))
    return [item for i in sorted(ids) if (item := get_item(api, i)) is not None]


def find_items(api: RestSession, library_id: str, name: str) -> list[Item]:
    ids = _ids(api.request("POST", ITEM, action="find",
                        body={"spec": {"library_id": library_id, "name": name}}))
    return [item for i in sorted(ids) if (item := get_item(api, i)) is not None]


def get_item(api: RestSession, item_id: str) -> Item | None:
    try:
        return _item(api.request("GET", f"{ITEM}/{path_id(item_id)}"))
    except NotFound:
        return None


def create_item(api: RestSession, library_id: str, name: str, description: str) -> str:
    value = api.request("POST", ITEM, body={"create_spec": {
        "library_id": library_id, "name": name, "description": description,
        "type": ITEM_TYPE_OVF}})
    if not isinstance(value, str) or not value:
        raise VSphereError(f"creating library item {name}: no id in the answer")
    return value


def set_item_description(api: RestSession, item_id: str, description: str) -> None:
    api.request("PATCH", f"{ITEM}/{path_id(item_id)}",
             body={"update_spec": {"description": description}})


def rename_item(api: RestSession, item_id: str, name: str) -> None:
    api.request("PATCH", f"{ITEM}/{path_id(item_id)}", body={"update_spec": {"name": name}})


def delete_item(api: RestSession, item_id: str) -> None:
    api.request("DELETE", f"{ITEM}/{path_id(item_id)}")


# ------------------------------------------------------------------------------ update sessions

def create_update_session(api: RestSession, item_id: str) -> str:
    value = api.request("POST", UPDATE_SESSION,
                     body={"create_spec": {"library_item_id": item_id}})
    if not isinstance(value, str) or not value:
        raise VSphereError("creating an update session: no id in the answer")
    return value


def get_update_session(api: RestSession, session_id: str) -> UpdateSession | None:
    try:
        value = api.request("GET", f"{UPDATE_SESSION}/{path_id(session_id)}")
    except NotFound:
        return None
    if not isinstance(value, dict):
        return None
    error = value.get("error_message")
    return UpdateSession(session_id, _text(value.get("library_item_id")),
                         _text(value.get("state")),
                         _text(error.get("default_message")) if isinstance(error, dict) else None)


def list_update_sessions(api: RestSession) -> list[str]:
    return _ids(api.request("GET", UPDATE_SESSION))


def add_file(api: RestSession, session_id: str, name: str, size: int,
             checksum: tuple[str, str] | None) -> UploadFile:
    """Add a PUSH file to the session; ``checksum`` is (SHA1|SHA256|..., hex digest)."""
    spec: dict[str, Any] = {"name": name, "source_type": "PUSH", "size": size}
    if checksum is not None:
        spec["checksum_info"] = {"algorithm": checksum[0], "checksum": checksum[1]}
    value = api.request("POST", f"{UPDATE_SESSION_FILE}/{path_id(session_id)}", action="add",
                     body={"file_spec": spec})
    endpoint = value.get("upload_endpoint") if isinstance(value, dict) else None
    url = _text(endpoint.get("uri")) if isinstance(endpoint, dict) else ""
    if not url:
        raise VSphereError(f"adding {name} to update session: no upload endpoint")
    return UploadFile(name, url)


def end_update_session(api: RestSession, session_id: str, action: str) -> None:
    """``complete``, ``cancel`` or ``fail`` the session."""
    api.request("POST", f"{UPDATE_SESSION}/{path_id(session_id)}", action=action)


def delete_update_session(api: RestSession, session_id: str) -> None:
    api.request("DELETE", f"{UPDATE_SESSION}/{path_id(session_id)}")


# ------------------------------------------------------------------------------ deploy

@dataclass(frozen=True)
class DeployTarget:
    resource_pool_id: str
    folder_id: str
    datastore_id: str
    networks: tuple[tuple[str, str], ...]  # (OVF network name, network moref id)


def deploy_item(api: RestSession, item_id: str, name: str, annotation: str,
                target: DeployTarget) -> str:
    """Deploy the OVF item as a VM; its moref id (``vm-NN``)."""
    spec = {
        "target": {"resource_pool_id": target.resource_pool_id,
                   "folder_id": target.folder_id},
        "deployment_spec": {
            "name": name, "annotation": annotation, "accept_all_EULA": True,
            "storage_provisioning": "thin", "default_datastore_id": target.datastore_id,
            "network_mappings": [{"key": k, "value": v} for k, v in target.networks],
        },
    }
    value = api.request("POST", f"{OVF_ITEM}/{path_id(item_id)}", action="deploy", body=spec,
                     timeout=DEPLOY_TIMEOUT)
    if not isinstance(value, dict):
        raise VSphereError(f"deploying library item {item_id}: no deployment in the answer")
    resource = value.get("resource_id")
    if value.get("succeeded") and isinstance(resource, dict) and resource.get("id"):
        return str(resource["id"])
    raise VSphereError(f"deploying library item {item_id} as {name} failed: "
                       + ("; ".join(deploy_messages(value)) or "no reason given"))


def deploy_messages(value: dict[str, Any]) -> list[str]:
    """The messages of a failed deployment (``error.errors[].error.messages[]``)."""

    def field(parent: Any, key: str) -> Any:
        return parent.get(key) if isinstance(parent, dict) else None

    errors = field(field(value, "error"), "errors")
    messages = []
    for error in errors if isinstance(errors, list) else []:
        found = field(field(error, "error"), "messages")
        for message in found if isinstance(found, list) else []:
            if text := _text(field(message, "default_message")):
                messages.append(text)
    return messages
