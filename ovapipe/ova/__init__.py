"""OVA files: read in place (``read_ova``, ``open_member``), assemble (``assemble_ova``).

The names below are loaded on first use, so that importing one submodule (the validator
imports ``ovapipe.ova.reader``) does not also import the writer and its dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Member": "archive", "AssembledOva": "assemble", "assemble_ova": "assemble",
    "Descriptor": "descriptor", "DiskRef": "descriptor", "FileRef": "descriptor",
    "BuildFacts": "facts", "HardwareSizes": "facts", "ManifestEntry": "manifest",
    "MemberWindow": "reader", "OvaFormatError": "reader", "OvaIndex": "reader",
    "open_member": "reader", "read_ova": "reader",
}

if TYPE_CHECKING:
    from ovapipe.ova.archive import Member
    from ovapipe.ova.assemble import AssembledOva, assemble_ova
    from ovapipe.ova.descriptor import Descriptor, DiskRef, FileRef
    from ovapipe.ova.facts import BuildFacts, HardwareSizes
    from ovapipe.ova.manifest import ManifestEntry
    from ovapipe.ova.reader import MemberWindow, OvaFormatError, OvaIndex, open_member, read_ova


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ovapipe.ova' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ovapipe.ova.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AssembledOva", "BuildFacts", "Descriptor", "DiskRef", "FileRef", "HardwareSizes",
    "ManifestEntry", "Member", "MemberWindow", "OvaFormatError", "OvaIndex", "assemble_ova",
    "open_member", "read_ova",
]
