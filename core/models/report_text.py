"""What the report model reads: noise removal, tokens, n-grams and term-count vectors."""

from __future__ import annotations

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
