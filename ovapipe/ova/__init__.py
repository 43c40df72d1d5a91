"""OVA files: read in place (``read_ova``, ``open_member``), assemble (``assemble_ova``)."""

from ovapipe.ova.archive import Member
from ovapipe.ova.assemble import AssembledOva, assemble_ova
from ovapipe.ova.descriptor import Descriptor, DiskRef, FileRef
from ovapipe.ova.facts import BuildFacts, HardwareSizes
from ovapipe.ova.manifest import ManifestEntry
from ovapipe.ova.reader import MemberWindow, OvaFormatError, OvaIndex, open_member, read_ova

__all__ = [
    "AssembledOva", "BuildFacts", "Descriptor", "DiskRef", "FileRef", "HardwareSizes",
    "ManifestEntry", "Member", "MemberWindow", "OvaFormatError", "OvaIndex", "assemble_ova",
    "open_member", "read_ova",
]
