"""PCI vendor/device IDs: parsing user input, vSphere's signed shorts, names from pci.ids."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ovapipe.errors import ConfigError

# The PCI ID Project's database (pci-ids.ucw.cz): Debian's `pci.ids` package puts it in
# /usr/share/misc, Fedora/RHEL/Arch (hwdata) in /usr/share/hwdata. Only names need it.
PCI_IDS_ENV: Final = "OVAPIPE_PCI_IDS"
PCI_IDS_PATH: Final = Path("/usr/share/misc/pci.ids")
PCI_IDS_CANDIDATES: Final = (
    PCI_IDS_PATH,
    Path("/usr/share/hwdata/pci.ids"),
    Path("/usr/share/pci.ids"),
    Path("/usr/local/share/pci.ids"),
    Path("/usr/local/share/hwdata/pci.ids"),
)
PCI_ID_MAX: Final = 0xFFFF

_HEX = r"[0-9a-fA-F]"
# "10de:1eb8", "10DE:1EB8", "0x10de:0x1eb8", "0x10de 0x1eb8"; bare "10de 1eb8" only as 4+4 digits.
_PAIR_RE = re.compile(r"^(?:0[xX])?(\w+)\s*(?::|\s)\s*(?:0[xX])?(\w+)$")
_BARE_PAIR_RE = re.compile(rf"^({_HEX}{{4}})\s+({_HEX}{{4}})$")
_HEX_RE = re.compile(rf"^{_HEX}+$")


@dataclass(frozen=True, order=True)
class PciId:
    """A vendor:device pair, both unsigned 16-bit."""

    vendor: int
    device: int

    def __post_init__(self) -> None:
        for field_name, value in (("vendor", self.vendor), ("device", self.device)):
            if not 0 <= value <= PCI_ID_MAX:
                raise ConfigError(
                    f"PCI {field_name} ID {value:#x} is out of range (0x0000 to 0xffff)"
                )

    @property
    def hex(self) -> str:
        """'10de:1eb8', the form lspci and pci.ids use."""
        return f"{self.vendor:04x}:{self.device:04x}"

    def __str__(self) -> str:
        return self.hex


def unsigned16(value: int) -> int:
    """vSphere's HostPciDevice.vendorId/deviceId are xsd:short: 0x8086 arrives as -32634.

    The one place that maps them back to the unsigned ID (values already unsigned pass).
    """
    if -0x8000 <= value < 0:
        return value + 0x10000
    if 0 <= value <= PCI_ID_MAX:
        return value
    raise ValueError(f"not a 16-bit PCI ID: {value}")


def _hex_part(text: str, what: str, original: str) -> int:
    if not _HEX_RE.match(text):
        raise ConfigError(
            f"{original!r}: {what} ID {text!r} is not hexadecimal "
            "(expected VENDOR:DEVICE such as 10de:1eb8)"
        )
    value = int(text, 16)
    if value > PCI_ID_MAX:
        raise ConfigError(
            f"{original!r}: {what} ID 0x{text} is out of range (PCI IDs are 4 hex digits, "
            "0000 to ffff)"
        )
    return value


def looks_like_hex_pair(text: str) -> bool:
    stripped = text.strip()
    return ":" in stripped or stripped.lower().startswith("0x") or bool(
        _BARE_PAIR_RE.match(stripped)
    )


def parse_hex_pair(text: str) -> PciId:
    """'10DE:1EB8', '10de:1eb8', '0x10de 0x1eb8' -> PciId; ConfigError otherwise."""
    stripped = text.strip()
    match = _PAIR_RE.match(stripped)
    if not match:
        raise ConfigError(
            f"{text!r} is not a PCI ID pair: expected VENDOR:DEVICE in hex, "
            "e.g. 10de:1eb8 or '0x10de 0x1eb8'"
        )
    return PciId(
        _hex_part(match.group(1), "vendor", text), _hex_part(match.group(2), "device", text)
    )


@dataclass(frozen=True)
class PciName:
    pci_id: PciId
    vendor_name: str
    device_name: str

    @property
    def label(self) -> str:
        return f"{self.vendor_name} {self.device_name}"


class PciDatabase:
    """The vendor and device lines of a pci.ids file, read once on first use.

    Subsystem lines (two tabs) and the device-class section (lines starting with 'C ') are
    skipped: the names of a vendor:device pair are all ovapipe needs.
    """

    def __init__(self, path: Path | None = PCI_IDS_PATH) -> None:
        self.path = path  # None: no database on this machine, every name is unknown
        self._vendors: dict[int, str] | None = None
        self._devices: dict[PciId, str] = {}

    def _load(self) -> dict[int, str]:
        if self._vendors is not None:
            return self._vendors
        vendors: dict[int, str] = {}
        devices: dict[PciId, str] = {}
        vendor: int | None = None
        if self.path is None:
            self._vendors = vendors
            return vendors
        try:
            handle = self.path.open(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the PCI ID database {self.path}: {exc.strerror} "
                "(install the Debian package pci.ids)"
            ) from None
        with handle:
            for line in handle:
                if not line or line[0] == "#" or line == "\n":
                    continue
                if line[0] == "\t":
                    if vendor is None or line[1] == "\t":
                        continue
                    code, _, name = line[1:].partition("  ")
                    if len(code) == 4:
                        devices[PciId(vendor, int(code, 16))] = name.strip()
                    continue
                if line.startswith("C "):
                    break  # the class section follows all vendors
                code, _, name = line.partition("  ")
                if len(code) == 4:
                    vendor = int(code, 16)
                    vendors[vendor] = name.strip()
        self._vendors = vendors
        self._devices = devices
        return vendors

    def vendor_name(self, vendor: int) -> str | None:
        return self._load().get(vendor)

    def device_name(self, pci_id: PciId) -> str | None:
        self._load()
        return self._devices.get(pci_id)

    def name(self, pci_id: PciId) -> PciName | None:
        vendor = self.vendor_name(pci_id.vendor)
        device = self.device_name(pci_id)
        if vendor is None or device is None:
            return None
        return PciName(pci_id, vendor, device)

    def find(self, text: str) -> list[PciName]:
        """Devices whose name matches ``text`` (case-insensitive).

        An exact match of the whole name or of a bracketed marketing name ('Tesla T4' in
        'TU104GL [Tesla T4]') wins over substring matches. 'NVIDIA Tesla T4' narrows the
        search to vendors whose name starts with 'NVIDIA'.
        """
        if self.path is None:
            raise ConfigError(
                f"{text!r}: looking up a device by name needs the PCI ID database, and none was "
                f"found (looked in {', '.join(str(p) for p in PCI_IDS_CANDIDATES)}; install "
                f"pci.ids or hwdata, or set {PCI_IDS_ENV}); hex IDs such as 10de:1eb8 need none"
            )
        vendors = self._load()
        query = " ".join(text.split()).casefold()
        if not query:
            return []
        candidates: list[tuple[str, dict[int, str]]] = [(query, vendors)]
        first, _, rest = query.partition(" ")
        if rest:
            narrowed = {
                code: name for code, name in vendors.items()
                if name.casefold().split(" ")[0] == first
            }
            if narrowed:
                candidates.insert(0, (rest, narrowed))
        for needle, vendor_set in candidates:
            exact: list[PciName] = []
            partial: list[PciName] = []
            # Whole words only: 'a100' must not match 'FastTrak100' or the chip name 'GA100'.
            pattern = re.compile(rf"(?<![0-9a-z]){re.escape(needle)}(?![0-9a-z])")
            for pci_id, device in self._devices.items():
                if pci_id.vendor not in vendor_set:
                    continue
                folded = device.casefold()
                if not pattern.search(folded):
                    continue
                entry = PciName(pci_id, vendor_set[pci_id.vendor], device)
                if needle == folded or needle in _marketing_names(folded):
                    exact.append(entry)
                else:
                    partial.append(entry)
            if exact or partial:
                return sorted(exact or partial, key=lambda n: n.pci_id)
        return []


def _marketing_names(folded_name: str) -> set[str]:
    """'tu104gl [tesla t4]' -> {'tesla t4'}; 'ad102gl [l6000 / rtx 6000]' -> both names."""
    names: set[str] = set()
    for bracketed in re.findall(r"\[([^\]]+)\]", folded_name):
        names.add(bracketed.strip())
        names.update(part.strip() for part in bracketed.split("/"))
    return names


def find_pci_ids(env: Mapping[str, str] | None = None) -> Path | None:
    """$OVAPIPE_PCI_IDS, else the first pci.ids in the usual places, else None."""
    env = os.environ if env is None else env
    chosen = env.get(PCI_IDS_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"{PCI_IDS_ENV}={chosen}: no such file (expected a pci.ids file)")
        return path
    return next((path for path in PCI_IDS_CANDIDATES if path.is_file()), None)


@functools.lru_cache(maxsize=4)
def _database_at(path: Path | None) -> PciDatabase:
    return PciDatabase(path)


def database(path: Path | None = None) -> PciDatabase:
    """One parsed database per path for the whole process (found by find_pci_ids)."""
    return _database_at(path or find_pci_ids())


def decimal_reading(text: str, as_hex: PciId, db: PciDatabase) -> str | None:
    """A warning when '4318:7864' (CAPV's decimals pasted back) was read as an unknown hex pair."""
    halves = [half.strip() for half in text.strip().split(":")]
    if len(halves) != 2 or not all(half.isdigit() for half in halves):
        return None
    if db.name(as_hex) is not None:
        return None
    vendor, device = (int(half, 10) for half in halves)
    if vendor > PCI_ID_MAX or device > PCI_ID_MAX:
        return None
    decimal = PciId(vendor, device)
    named = db.name(decimal)
    label = f" ({named.label})" if named else ""
    return (
        f"{text.strip()!r} was read as hex {as_hex.hex}, which "
        f"{'pci.ids does not know' if db.path else 'has no name (no pci.ids found)'}; "
        f"if these are decimals (as in CAPV's vendorId/deviceId), the hex ID is "
        f"{decimal.hex}{label}"
    )


MAX_CANDIDATES_SHOWN: Final = 12


def resolve(value: str, db: PciDatabase | None = None) -> PciName | PciId:
    """A hex pair or a device name -> its ID (with names when pci.ids knows them).

    Raises ConfigError for bad hex, out-of-range IDs, unknown or ambiguous names.
    """
    db = db or database()
    if looks_like_hex_pair(value):
        pci_id = parse_hex_pair(value)
        return db.name(pci_id) or pci_id
    matches = db.find(value)
    if not matches:
        raise ConfigError(
            f"{value!r} is neither a hex VENDOR:DEVICE pair (e.g. 10de:1eb8) nor a device "
            f"name in {db.path}"
        )
    if len(matches) > 1:
        shown = "\n".join(
            f"  {m.pci_id.hex}  {m.vendor_name} {m.device_name}"
            for m in matches[:MAX_CANDIDATES_SHOWN]
        )
        more = len(matches) - MAX_CANDIDATES_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise ConfigError(
            f"{value!r} matches {len(matches)} devices in {db.path}; give the hex ID or a "
            f"more specific name:\n{shown}{tail}"
        )
    return matches[0]
