"""File names to ids: ``{patient}_{slide}.svs`` finds the patient in a slide's (or report's) file name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.imports.ids import id_problem

PLACEHOLDERS = ("patient", "slide", "report")


@dataclass(frozen=True)
class NamedFile:
    id: str  # the file's name without its extension: unique in a folder, so unique as an id
    patient: str


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """``{patient}`` (required) and ``{slide}`` / ``{report}`` become groups; everything else is literal. The patient is
    the shortest text that fits, so ``{patient}_{slide}`` reads ``P-01_A_HE`` as patient ``P-01``."""
    parts = re.split(r"(\{[a-z]+\})", pattern)
    names = [p[1:-1] for p in parts if p.startswith("{") and p.endswith("}")]
    unknown = sorted(set(names) - set(PLACEHOLDERS))
    if unknown or names.count("patient") != 1:
        raise ValueError(f"a name pattern has one {{patient}} and may have {{slide}} or {{report}}; {pattern!r} has {', '.join(names) or 'none'}")
    regex = "".join(f"(?P<{p[1:-1]}>.+?)" if p.startswith("{") and p.endswith("}") else re.escape(p) for p in parts)
    return re.compile(f"^{regex}$")


def match_name(pattern: str, name: str, stem: str) -> NamedFile | str:
    """The file's id and patient, or why its name does not fit. A pattern with an extension (``.svs``) is matched
    against the whole name, one without against the name less its extension (a DICOM series: the folder's name)."""
    regex = pattern_regex(pattern)
    target = name if "." in pattern.rsplit("}", 1)[-1] else stem
    found = regex.match(target)
    if found is None:
        return f"the name {name!r} does not fit the pattern {pattern!r}; rename the file or list it in a mapping CSV"
    problem = id_problem(found["patient"]) or id_problem(stem)
    if problem:
        return f"{problem} (from the file name {name!r})"
    return NamedFile(stem, found["patient"])
