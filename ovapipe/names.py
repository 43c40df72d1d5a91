"""Names ovapipe gives to VMs and templates: vCenter's rules, checked before any connection.

vCenter takes 1 to 80 characters. It stores '/', '\\' and '%' escaped (``%2f``, ``%5c``,
``%25``), so such names would not read back the same through inventory paths, and ``.``/``..``
or control characters make unreadable paths and files. A name that passes also names a file
or folder that stays inside the folder it is joined to (``output/NAME/``, ``NAME.packer.log``).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Final

from ovapipe.errors import ConfigError

MAX_NAME_LENGTH: Final = 80
FORBIDDEN: Final = "/\\%"
RULE: Final = (f"1 to {MAX_NAME_LENGTH} characters, no control characters, not '.' or '..', "
               f"and none of {' '.join(FORBIDDEN)}")


def name_problem(name: str) -> str | None:
    """Why vCenter (or a round trip through inventory paths) would not take ``name``."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"has {len(name)} characters, more than {MAX_NAME_LENGTH}"
    if name in (".", ".."):
        return f"is {name!r}"
    control = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if control is not None:
        return f"contains the control character {control!r}"
    bad = next((c for c in name if c in FORBIDDEN), None)
    if bad is not None:
        return (f"contains {bad!r}, which vCenter stores escaped, so the name would not read "
                "back the same")
    return None


def check_name(name: str, what: str = "--name") -> str:
    """``name`` if vCenter takes it, else a ConfigError naming the rule (exit 2)."""
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(f"{what} {name!r} {problem}: a VM or template name needs {RULE}")
    return name


def template_name(name: str | None, ova: Path) -> str:
    """The template name publish uses: ``name``, or the OVA's file name without ``.ova``."""
    if name is not None:
        return check_name(name)
    return check_name(ova.name.removesuffix(".ova"),
                      f"the template name from the OVA's file name ({ova.name}; pass --name)")


def child(directory: Path, name: str, suffix: str = "", prefix: str = "") -> Path:
    """``directory/<prefix><name><suffix>`` for a checked name: never outside ``directory``."""
    check_name(name)
    return directory / f"{prefix}{name}{suffix}"
