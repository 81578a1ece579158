"""The ids a lab may give patients, slides and reports: they appear in URLs, file names and the case store."""

from __future__ import annotations

import re

ID_MAX_CHARS = 64  # the case store's id columns
# \w is Unicode-aware: letters and digits of any script, and "_". No spaces, slashes or quotes: an id is a URL path
# segment and a file-name stem.
_ID = re.compile(r"^[^\W_][\w.\-]*$")
ID_RULE = (f"1 to {ID_MAX_CHARS} characters: letters (any alphabet), digits, '_', '-' and '.', "
           "starting with a letter or digit (no spaces)")


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id, or None when it can."""
    if not value:
        return f"the id is empty; ids are {ID_RULE}"
    if len(value) > ID_MAX_CHARS or not _ID.match(value):
        return f"id {value!r} is not allowed; ids are {ID_RULE}"
    return None


def is_valid_id(value: str) -> bool:
    return id_problem(value) is None
