"""The content library client's small pure parts: ids in paths, vAPI error bodies, records."""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from ovapipe.vsphere.library import content
from ovapipe.vsphere.library.rest import _error_text, path_id


@given(st.text())
def test_an_id_stays_one_path_element(identifier: str) -> None:
    element = path_id(identifier)
    assert "/" not in element and "?" not in element and "#" not in element
    assert unquote(element) == "id:" + identifier


@given(st.binary(max_size=512))
def test_any_error_body_reads_without_raising(body: bytes) -> None:
    kind, text = _error_text(body)
    assert isinstance(kind, str) and isinstance(text, str)


def test_a_vapi_error_names_its_type_and_messages() -> None:
    body = (b'{"type":"com.vmware.vapi.std.errors.not_found","value":{"messages":'
            b'[{"id":"x","default_message":"no such item"}]}}')
    assert _error_text(body) == ("com.vmware.vapi.std.errors.not_found", "no such item")


@given(st.dictionaries(st.sampled_from(["id", "name", "type", "storage_backings",
                                        "publish_info"]),
                       st.one_of(st.none(), st.text(), st.integers(),
                                 st.lists(st.dictionaries(st.text(), st.text())),
                                 st.dictionaries(st.text(), st.booleans()))))
def test_a_library_answer_of_any_shape_becomes_a_record(value: dict[str, object]) -> None:
    library = content._library(value)
    assert isinstance(library.name, str) and isinstance(library.datastore_ids, tuple)


@given(st.dictionaries(st.sampled_from(["id", "name", "type", "description", "library_id"]),
                       st.one_of(st.none(), st.text(), st.integers(), st.booleans())))
def test_an_item_answer_of_any_shape_becomes_a_record(value: dict[str, object]) -> None:
    item = content._item(value)
    assert all(isinstance(getattr(item, f), str) for f in ("id", "name", "description"))


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.one_of(st.text(),
                                                                      st.integers()))))
def test_id_lists_of_any_shape_keep_only_strings(value: object) -> None:
    assert all(isinstance(v, str) for v in content._ids(value))


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["error", "errors", "messages",
                                                        "default_message", "x"]),
                                                       inner, max_size=3)),
                           max_leaves=12)


@given(st.dictionaries(st.sampled_from(["succeeded", "error", "resource_id"]), json_values))
def test_a_failed_deployment_of_any_shape_gives_its_messages(value: dict[str, object]) -> None:
    assert all(isinstance(m, str) and m for m in content.deploy_messages(value))


def test_a_failed_deployment_names_vcenters_message() -> None:
    value = {"succeeded": False, "error": {"errors": [
        {"category": "SERVER", "error": {"messages": [{"default_message": "no space"}]}}]}}
    assert content.deploy_messages(value) == ["no space"]
