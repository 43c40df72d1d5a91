"""Go's path functions as ported for the resolver, and the resolver on arbitrary input."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovapipe.errors import ConfigError
from ovapipe.vsphere import govpath
from ovapipe.vsphere import resolve as r

PATH_TEXT = st.text(alphabet="ab/.%*?[]^\\-", max_size=24)


@given(PATH_TEXT)
def test_clean_is_idempotent_and_normal(path: str) -> None:
    cleaned = govpath.clean(path)
    assert govpath.clean(cleaned) == cleaned
    assert "//" not in cleaned and "/./" not in cleaned
    if not path.startswith("//"):
        assert cleaned == posixpath.normpath(path or ".")


@pytest.mark.parametrize(("path", "cleaned"), [
    ("", "."), ("//a", "/a"), ("/../x", "/x"), ("a/../..", ".."), ("./a/", "a"), ("/", "/"),
])
def test_clean_as_go(path: str, cleaned: str) -> None:
    assert govpath.clean(path) == cleaned


@given(st.text(alphabet="ab.%-", max_size=12))
def test_a_pattern_without_magic_matches_only_itself(name: str) -> None:
    assert govpath.match(name, name)
    assert not govpath.match(name, name + "x")


@given(st.text(alphabet="ab*?", max_size=8), st.text(alphabet="ab", max_size=8))
def test_star_and_question_mark_match_as_fnmatch(pattern: str, name: str) -> None:
    assert govpath.match(pattern, name) == fnmatch.fnmatchcase(name, pattern)


@pytest.mark.parametrize(("pattern", "name", "matched"), [
    ("[^a]", "b", True), ("[^a]", "a", False), ("[a-c]x", "bx", True), ("\\*", "*", True),
    ("\\*", "a", False), ("*", "a/b", False), ("[]a]", "a", False),
])
def test_go_specifics(pattern: str, name: str, matched: bool) -> None:
    try:
        assert govpath.match(pattern, name) is matched
    except govpath.BadPattern:
        assert pattern == "[]a]"  # Go: a class may not start with ']'


@pytest.mark.parametrize("pattern", ["[", "a\\", "[a", "[a-", "[]"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(govpath.BadPattern):
        govpath.match(pattern, "a")


def _inventory() -> tuple[r.Inventory, r.Node]:
    def node(ident: str, kind: str, name: str, parent: str | None, **props: object) -> r.Node:
        return r.Node(SimpleNamespace(_moId=ident), kind, name, parent, dict(props))

    nodes = [node("root", "Folder", "Datacenters", None), node("dc", "Datacenter", "DC0", "root",
             vmFolder=SimpleNamespace(_moId="vm")),
             node("vm", "Folder", "vm", "dc", childType=["VirtualMachine"]),
             node("f1", "Folder", "a%2fb", "vm", childType=["VirtualMachine"]),
             node("f2", "Folder", "dup", "vm", childType=["VirtualMachine"]),
             node("f3", "Folder", "dup", "f1", childType=["VirtualMachine"]),
             node("v1", "VirtualMachine", "node", "f3")]
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        if n.parent:
            by_id[n.parent].children.append(n.id)
    return r.Inventory(by_id["root"], by_id), by_id["dc"]


@given(st.text(max_size=40))
def test_the_resolver_answers_or_refuses_any_text(arg: str) -> None:
    inventory, dc = _inventory()
    for kind in (r.FOLDER, r.VM, r.DATACENTER):
        try:
            found = inventory.resolve(kind, arg, None if kind is r.DATACENTER else dc)
        except ConfigError as exc:
            assert "\n" not in exc.message or "\n" in arg
            continue
        assert found.node.type in kind.types


@given(st.text(max_size=20))
def test_unescape_inverts_vcenters_escaping(name: str) -> None:
    escaped = re.sub(r"[%/\\]", lambda m: {"%": "%25", "/": "%2f", "\\": "%5c"}[m.group()],
                     name)
    assert r.unescape(escaped) == name


def test_an_escaped_name_resolves_both_ways() -> None:
    inventory, dc = _inventory()
    assert inventory.resolve(r.VM, "/DC0/vm/a%2fb/dup/node", dc).node.id == "v1"
    assert inventory.resolve(r.FOLDER, "vm/a/b", dc).node.id == "f1"
    assert inventory.resolve(r.FOLDER, "vm/a%2fb", dc).node.id == "f1"
