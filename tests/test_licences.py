"""Every runtime dependency (and what it pulls in) has a licence an Apache-2.0 project can ship,
and README's licence table names each one."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution

from ovapipe.paths import REPO_ROOT

REFUSED = re.compile(r"\b(A?GPL|GNU (Affero )?General Public)", re.IGNORECASE)


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!\[~(]", requirement, maxsplit=1)[0].lower()


def _runtime_closure() -> dict[str, str]:
    licences: dict[str, str] = {}
    todo = [_name(r) for r in distribution("ovapipe").requires or [] if "extra ==" not in r]
    while todo:
        name = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an environment marker left it out
        key = dist.metadata["Name"].lower()
        if key in licences:
            continue
        meta = dist.metadata
        classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License")]
        licences[key] = " ".join(
            [meta.get("License-Expression") or "", (meta.get("License") or "")[:200],
             *classifiers])
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
    return licences


def test_no_gpl_at_runtime() -> None:
    licences = _runtime_closure()
    assert "pyvmomi" in licences
    refused = {name: text for name, text in licences.items()
               if REFUSED.search(text) and "LGPL" not in text.upper()}
    assert not refused, f"copyleft runtime dependencies: {refused}"


def test_readme_states_each_direct_dependency_licence() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for requirement in distribution("ovapipe").requires or []:
        if "extra ==" in requirement:
            continue
        name = _name(requirement)
        assert re.search(rf"^\| {re.escape(name)} \| \S", readme, re.MULTILINE | re.IGNORECASE), \
            f"README's licence table lacks {name}"
