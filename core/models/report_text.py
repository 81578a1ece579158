"""What the report model reads: noise removal, tokens, n-grams and term-count vectors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import torch

# Noise the report classifier should not learn from (as in the seeds' report study).
_RULE_RUNS = re.compile(r"[-|*_=~]{2,}")
_IDENTIFIERS = re.compile(r"\b(?:TCGA(?:-[A-Z0-9]{2,4}){2,}|[A-Z]{1,3}\d{2}-\d{3,}|\d{6,})\b", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TOKEN = re.compile(r"[a-z]+|\d+")

STOP_WORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or that the this to was were with
    which these those there their been being into than then also""".split()
)


def clean_report(text: str) -> str:
    """Remove rule lines, patient and sample identifiers and control characters."""
    text = _CONTROL.sub(" ", text)
    text = _IDENTIFIERS.sub(" ", text)
    return _RULE_RUNS.sub(" ", text)


def report_tokens(text: str) -> list[str]:
    """Lower-case word and number tokens of the cleaned text, stop words removed."""
    return [t for t in _TOKEN.findall(clean_report(text).lower()) if t not in STOP_WORDS]


def report_ngrams(tokens: Sequence[str], max_n: int = 2) -> list[str]:
    grams = list(tokens)
    for n in range(2, max_n + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


def term_counts(texts: Sequence[str], vocabulary: dict[str, int], max_n: int = 2) -> torch.Tensor:
    """(len(texts), len(vocabulary)) float tensor of n-gram counts; unknown n-grams are dropped."""
    counts = torch.zeros(len(texts), len(vocabulary))
    for row, text in enumerate(texts):
        for gram in report_ngrams(report_tokens(text), max_n):
            col = vocabulary.get(gram)
            if col is not None:
                counts[row, col] += 1
    return counts


def token_spans(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, model token or None) spans of the cleaned text, for showing what the model reads."""
    cleaned = clean_report(text)
    spans: list[tuple[int, int, str | None]] = []
    pos = 0
    for m in _TOKEN.finditer(cleaned.lower()):
        if m.start() > pos:
            spans.append((pos, m.start(), None))
        token = m.group(0)
        spans.append((m.start(), m.end(), None if token in STOP_WORDS else token))
        pos = m.end()
    if pos < len(cleaned):
        spans.append((pos, len(cleaned), None))
    return spans


def token_diff(original: str, edited: str) -> list[tuple[str, str]]:
    """What the model reads in the edit versus the original: (op, token) with op in equal | added | removed."""
    a, b = report_tokens(original), report_tokens(edited)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out += [("equal", t) for t in a[i1:i2]]
        else:
            out += [("removed", t) for t in a[i1:i2]] + [("added", t) for t in b[j1:j2]]
    return out
