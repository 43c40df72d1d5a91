"""Go's ``path`` functions that govmomi's finder builds on: Clean, Join, Base and Match.

The finder (``github.com/vmware/govmomi/find``) compares each inventory path element with
Go's ``path.Match`` and cleans paths with ``path.Clean``; Python's fnmatch and posixpath differ
in the details (``[^...]``, backslash escapes, ``//`` at the start), so they are ported here.
"""

from __future__ import annotations

import re
from functools import lru_cache


class BadPattern(ValueError):
    """Go's path.ErrBadPattern: an unclosed ``[`` or a trailing backslash."""


def clean(path: str) -> str:
    """Go's path.Clean: the shortest equivalent path, '.' for an empty one."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    text = "/".join(parts)
    if rooted:
        return "/" + text
    return text or "."


def join(*elements: str) -> str:
    """Go's path.Join: the non-empty elements joined by '/' and cleaned ('' if none)."""
    given = [e for e in elements if e]
    return clean("/".join(given)) if given else ""


def base(path: str) -> str:
    """Go's path.Base: the last element ('/' for the root, '.' for an empty path)."""
    if not path:
        return "."
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


@lru_cache(maxsize=512)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            if i + 1 >= len(pattern):
                raise BadPattern(pattern)
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            i, klass = _char_class(pattern, i + 1)
            out.append(klass)
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> tuple[int, str]:
    if i >= len(pattern):
        raise BadPattern(pattern)
    char = pattern[i]
    if char in "-]":
        raise BadPattern(pattern)
    if char == "\\":
        i += 1
        if i >= len(pattern):
            raise BadPattern(pattern)
        char = pattern[i]
    if i + 1 >= len(pattern):
        raise BadPattern(pattern)
    return i + 1, char


def _char_class(pattern: str, i: int) -> tuple[int, str]:
    """``[...]`` from just after '[': (index after ']', regex class); Go rules."""
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    ranges: list[str] = []
    first = True
    while True:
        if i < len(pattern) and pattern[i] == "]" and not first:
            i += 1
            break
        first = False
        i, low = _class_char(pattern, i)
        high = low
        if i < len(pattern) and pattern[i] == "-":
            i, high = _class_char(pattern, i + 1)
        if low > high:
            raise BadPattern(pattern)
        ranges.append(f"{re.escape(low)}-{re.escape(high)}")
    body = "".join(ranges)
    return i, f"[^{body}]" if negated else f"[{body}]"


def match(pattern: str, name: str) -> bool:
    """Go's path.Match(pattern, name); BadPattern for a malformed pattern."""
    return _pattern_regex(pattern).fullmatch(name) is not None


def has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[\\")
