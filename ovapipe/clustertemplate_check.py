"""Check: the changed VSphereMachineTemplates against CAPV's CRD schema and webhook rules.

What ovapipe wrote is judged strictly; a schema error elsewhere was in the input already, so
it is a warning naming its path, not a reason to write nothing. ``${VAR}`` placeholders are
opaque to pattern, format and length rules (validators/capv.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from ovapipe.clustertemplate_find import Path
from ovapipe.clustertemplate_patch import Patched
from ovapipe.errors import CheckFailed
from ovapipe.findings import ERROR


def check_patched(patched: Sequence[Patched], source: str, warnings: list[str],
                  notes: list[str], strict: Sequence[Path] | None = None) -> None:
    from ovapipe.validators.capv import substitution_note, validate_machine_template

    errors: list[str] = []
    for item in patched:
        check = validate_machine_template(item.data, f"{source}: {item.name}", owned=item.owned,
                                          strict=strict)
        for finding in check.report.findings:
            line = f"{item.name}: {finding.rule}: {finding.message}"
            (errors if finding.severity == ERROR else warnings).append(line)
        note = substitution_note(check.substitutions)
        if note:
            notes.append(f"{item.name}: {note}")
    if errors:
        raise CheckFailed(
            "the result does not pass CAPV's checks; nothing written:\n  " + "\n  ".join(errors)
        )
