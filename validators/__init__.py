"""The checks: each module returns findings, never prints."""

from __future__ import annotations

from ovapipe.errors import ConfigError
from ovapipe.hardware import FIRMWARES, parse_esxi_vmx


def gate_arguments(min_vmx: str | int, firmware: str) -> int:
    """--min-vmx as 17 or vmx-17 and --firmware efi|bios (validate-ova, validate-template).

    Returns the required vmx number; ConfigError (exit 2) otherwise.
    """
    try:
        required = parse_esxi_vmx(min_vmx)
    except ValueError as exc:
        raise ConfigError(f"--min-vmx: {exc}") from None
    if firmware not in FIRMWARES:
        raise ConfigError(f"--firmware {firmware!r}: expected one of {', '.join(FIRMWARES)}")
    return required
