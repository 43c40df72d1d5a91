"""What a Packer HCL2 template declares: its variables, read with python-hcl2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovapipe.errors import ConfigError
from ovapipe.paths import PACKER_DIR


@dataclass(frozen=True)
class TemplateVariable:
    name: str
    type: str
    has_default: bool
    default: Any
    sensitive: bool


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    variables: dict[str, TemplateVariable]

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(name for name, var in self.variables.items() if var.sensitive)


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals ('"x"'); older releases did not."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    if isinstance(value, list):
        return [_unquote(item) for item in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def _type_name(raw: Any) -> str:
    text = str(raw or "any")
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return text


def template_dir(name: str) -> Path:
    return PACKER_DIR / name


def read_template(path: Path) -> Template:
    """Every ``variable`` block of the ``*.pkr.hcl`` files in ``path`` (as Packer loads them)."""
    import hcl2

    files = sorted(path.glob("*.pkr.hcl"))
    if not files:
        raise ConfigError(f"{path}: no *.pkr.hcl files (not a Packer HCL2 template folder)")
    variables: dict[str, TemplateVariable] = {}
    for file in files:
        try:
            with file.open(encoding="utf-8") as handle:
                document = hcl2.load(handle)
        except Exception as exc:
            raise ConfigError(f"{file}: cannot parse HCL: {exc}") from None
        for block in document.get("variable", []):
            for raw_name, body in block.items():
                name = _unquote(raw_name)
                body = body or {}
                variables[name] = TemplateVariable(
                    name=name,
                    type=_type_name(body.get("type")),
                    has_default="default" in body,
                    default=_unquote(body.get("default")),
                    sensitive=bool(body.get("sensitive", False)),
                )
    return Template(path.name, path, variables)
