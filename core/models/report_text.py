"""What the report model reads: noise removal, tokens, n-grams and term-count vectors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import torch

# Noise the report classifier must not learn from (as in the seeds' report study), and anything that identifies a
# patient or a specimen: a model that reads "P001" or a signing year learns who the patient is, not the grade.
_RULE_RUNS = re.compile(r"[-|*_=~]{2,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATES = re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{2,4}}\b|\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b"
                    rf"|\b\d{{1,4}}[/.-]\d{{1,2}}[/.-]\d{{1,4}}\b|\b{_MONTH}\s+\d{{4}}\b", re.IGNORECASE)
# A word holding both letters and digits (P001, S21-12345, MRN1234567, TCGA-2A-1234, LAB-0001) is an identifier;
# grade groups written "GG2" are spelled out first, and TNM stages (pT3a, N1) are kept as words (their digits are
# removed like other numbers that are not grades).
_GRADE_GROUP_SHORT = re.compile(r"\bGG\s?([1-5])\b", re.IGNORECASE)
_STAGE_WORD = r"\b[pcy]?T[0-4][a-c]?\b|\b[pc]?N[0-3xX]\b|\b[pc]?M[0-1][a-c]?\b"
_STAGE = re.compile(_STAGE_WORD)
_MIXED_WORD = re.compile(r"\b[A-Za-z0-9]+(?:[-_/.#:][A-Za-z0-9]+)*\b")
_IDENTIFIER_KEYS = re.compile(r"\b(?:mrn|medical record(?: number)?|patient id|accession(?: number| no\.?)?|hospital number)\s*[:#]?\s*\S*\d\S*",
                              re.IGNORECASE)
# Numbers that are grade evidence: after a grade word (Gleason, score, pattern, grade, group, primary, ...), a chain of
# small numbers joined by + = and or , / ( ) of or spaces: "Gleason score 3+4=7", "primary pattern 4", "grade group 2 of 5".
# Spaces count so that the model's own tokens, joined ("gleason score 3 4 7"), read the same again (LIME's text path).
# Every other number (PSA values, lengths, percentages, counts, years) is removed.
_GRADE_NUMBERS = re.compile(
    r"\b(?:gleason|scores?|patterns?|grades?|groups?|primary|secondary|tertiary|isup|sum|total)\b[\s:#]*"
    r"\d{1,2}(?![.,]\d)(?:\s*(?:\+|=|,|/|\(|\)|\band\b|\bor\b|\bof\b)?\s*\d{1,2}(?![.,]\d))*", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
REMOVED = {"id": "[ID]", "date": "[DATE]", "number": "[#]"}  # what the shown text has in place of removed parts
_TOKEN = re.compile(r"\[(?:ID|DATE|#)\]|[a-z]+|\d+", re.IGNORECASE)

STOP_WORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or that the this to was were with
    which these those there their been being into than then also""".split()
)


def _without_identifiers(text: str) -> str:
    def mixed(m: re.Match[str]) -> str:
        word = m.group(0)
        has_digit, has_letter = any(c.isdigit() for c in word), any(c.isalpha() for c in word)
        return REMOVED["id"] if has_digit and has_letter and not _STAGE.fullmatch(word) else word

    text = _IDENTIFIER_KEYS.sub(lambda m: m.group(0).split()[0] + " " + REMOVED["id"], text)
    return _MIXED_WORD.sub(mixed, text)


def _without_other_numbers(text: str) -> str:
    keep = [m.span() for m in _GRADE_NUMBERS.finditer(text)]

    def number(m: re.Match[str]) -> str:
        inside = any(a <= m.start() and m.end() <= b for a, b in keep)
        return m.group(0) if inside and m.group(0).isdigit() and int(m.group(0)) <= 10 else REMOVED["number"]

    return _NUMBER.sub(number, text)


def clean_report(text: str) -> str:
    """The text the report model reads: rule lines and control characters removed; identifiers (case, patient,
    accession and sample numbers, TCGA barcodes), dates and every number that is not a Gleason pattern, score or grade
    group replaced by [ID], [DATE] and [#], which the model does not read."""
    text = _CONTROL.sub(" ", text)
    text = _RULE_RUNS.sub(" ", text)
    text = _DATES.sub(REMOVED["date"], text)
    text = _GRADE_GROUP_SHORT.sub(r"grade group \1", text)
    text = _without_identifiers(text)
    return _without_other_numbers(text)


class ModelWords(str):
    """Text already in the report model's words: its tokens, in order, joined by single spaces (LIME's perturbed reports).
    It is read as it stands and not cleaned again: cleaning depends on context (a number is grade evidence only after a
    grade word), and a perturbation that removes "pattern" from "pattern 3" keeps the word "3", which a second cleaning
    would drop."""

    __slots__ = ()

    @classmethod
    def of(cls, tokens: Sequence[str]) -> ModelWords:
        return cls(" ".join(tokens))


def _is_token(match: str) -> bool:
    return not match.startswith("[") and match.lower() not in STOP_WORDS


def report_tokens(text: str) -> list[str]:
    """Lower-case word and number tokens of the cleaned text; stop words and removed parts are not tokens."""
    if isinstance(text, ModelWords):
        return text.split()
    return [t.lower() for t in _TOKEN.findall(clean_report(text)) if _is_token(t)]


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
    for m in _TOKEN.finditer(cleaned):
        if m.start() > pos:
            spans.append((pos, m.start(), None))
        token = m.group(0)
        spans.append((m.start(), m.end(), token.lower() if _is_token(token) else None))
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
