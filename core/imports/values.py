"""Cell values of imported CSVs: numbers, dates, labels and inferred column kinds, each with the message a lab admin reads."""

from __future__ import annotations

import math
from datetime import date
from typing import Literal

ColumnKind = Literal["number", "text"]
_TRUE, _FALSE = {"true", "yes"}, {"false", "no"}


def parse_number(text: str) -> float:
    """A finite number; ``ValueError`` naming the value otherwise (NaN and infinity cannot be stored)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"non-numeric value {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number; leave the cell empty when the value is unknown")
    return value


def parse_label(text: str) -> int:
    """A class index (0, 1, ...), as the models' class names number them."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"label {text!r} is not a class number (0, 1, ...)") from None
    if not value.is_integer() or value < 0:
        raise ValueError(f"label {text!r} is not a class number (0, 1, ...)")
    return int(value)


def parse_day(text: str) -> float:
    value = parse_number(text)
    if value < 0:
        raise ValueError(f"day {text!r} is negative; days count from the patient's first visit (day 0)")
    return value


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"date {text!r} is not a date written YYYY-MM-DD") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def infer_kind(values: list[str]) -> ColumnKind:
    """A column is numbers when most of its filled cells are (its other cells are then errors to fix), text otherwise."""
    filled = [v for v in values if v != ""]
    numbers = sum(_is_number(v) for v in filled)
    return "number" if filled and numbers * 2 >= len(filled) else "text"


def attribute_value(text: str, kind: ColumnKind, integers: bool) -> str | int | float | bool | None:
    """A patient attribute as stored: empty is unknown (None); numbers stay whole when the column is whole numbers."""
    if text == "":
        return None
    if kind == "number":
        value = parse_number(text)
        return int(value) if integers else value
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    return text


def whole_numbers(values: list[str]) -> bool:
    """Every filled cell is a whole number (an age in years, a count): stored as integers, shown without decimals."""
    filled = [v for v in values if v != "" and _is_number(v)]
    return bool(filled) and all(math.isfinite(float(v)) and float(v).is_integer() and "." not in v for v in filled)
