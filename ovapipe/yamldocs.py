"""Multi-document YAML edited one document at a time, the rest kept byte for byte.

ruamel.yaml's round trip keeps comments, key order and quotes, but re-flows some scalars (a
long plain scalar folded over two lines comes back on one). So a file is split into its
documents as text; only the documents being changed go through ruamel, with the dump settings
that reproduce that document unchanged; all other documents are copied as they were.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Final

from ovapipe.bounded import check_yaml, load_yaml
from ovapipe.errors import ConfigError

# A document separator is '---' at column 0 (block scalar content is always indented).
_SEPARATOR_RE: Final = re.compile(r"^---(?:[ \t].*)?$")

# (width, mapping indent, sequence indent, dash offset) tried in order.
_STYLES: Final = ((80, 2, 2, 0), (4096, 2, 2, 0), (80, 2, 4, 2), (4096, 2, 4, 2))


@dataclass
class YamlDocument:
    separator: str  # the '---' line with its newline, or '' before a first document without one
    body: str

    @property
    def text(self) -> str:
        return self.separator + self.body


def split_documents(text: str) -> list[YamlDocument]:
    documents: list[YamlDocument] = []
    separator = ""
    lines: list[str] = []
    for line in text.splitlines(keepends=True):
        if _SEPARATOR_RE.match(line.rstrip("\r\n")):
            if separator or lines:
                documents.append(YamlDocument(separator, "".join(lines)))
            separator, lines = line, []
        else:
            lines.append(line)
    if separator or lines:
        documents.append(YamlDocument(separator, "".join(lines)))
    return documents


def join_documents(documents: list[YamlDocument]) -> str:
    return "".join(document.text for document in documents)


def load_safe(document: YamlDocument, where: str) -> Any:
    return load_yaml(document.body, where)


class RoundTrip:
    """One document loaded for editing and dumped back in the style it came in."""

    def __init__(self, body: str, where: str) -> None:
        from ruamel.yaml.error import YAMLError

        check_yaml(body, where)
        self.where = where
        self.original = body
        self.exact = False
        self.style = _STYLES[0]
        try:
            for style in _STYLES:
                data = self._yaml(style).load(body)
                if self._dump(data, style) == body:
                    self.style, self.exact, self.data = style, True, data
                    break
            else:
                self.data = self._yaml(self.style).load(body)
        except YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from None

    @staticmethod
    def _yaml(style: tuple[int, int, int, int]) -> Any:
        from ruamel.yaml import YAML

        width, mapping, sequence, offset = style
        yaml = YAML()
        yaml.preserve_quotes = True
        yaml.width = width
        yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        return yaml

    def _dump(self, data: Any, style: tuple[int, int, int, int]) -> str:
        stream = io.StringIO()
        self._yaml(style).dump(data, stream)
        return stream.getvalue()

    def dump(self) -> str:
        return self._dump(self.data, self.style)


def dump_new(data: Any) -> str:
    """A new document in clusterctl's style (2-space maps, dashes at the parent's column)."""
    stream = io.StringIO()
    RoundTrip._yaml(_STYLES[0]).dump(data, stream)
    return stream.getvalue()
