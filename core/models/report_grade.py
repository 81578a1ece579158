"""The Gleason score and ISUP grade group a pathology report states, read from its text.

What counts as a statement of grade:
- a Gleason score with its patterns: "Gleason score 3+4=7", "Gleason score 7 (4+3)", "Gleason pattern 4 + 3 = 7",
  "primary pattern 3, secondary pattern 4", or a bare "3+4=7" with its sum (a sum that does not match its patterns is a
  typo and is not read);
- a Gleason score alone when it fixes the group: 6 or less (group 1), 8 (group 4), 9 or 10 (group 5); "Gleason score 7"
  alone could be group 2 or 3 and is not read;
- a grade group: "grade group 2", "ISUP grade group 3", "WHO/ISUP grade group 2 of 5", "ISUP 3", "ISUP grade 4".
A statement in a negated clause ("no Gleason pattern 5", "not 4+3") is not read, nor is a tertiary pattern ("tertiary
pattern 5"), which is outside the score. When a report grades several parts (cores, nodules), its grade group is the
highest it states. A report with no statement of grade, no mention of carcinoma outside negations and a benign
diagnosis ("benign prostatic tissue", "negative for carcinoma") is "no tumour" (group 0); otherwise it has no grade.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.models.gleason import SpecimenType, isup_grade_group

_NEGATION = re.compile(r"\b(?:no|not|without|negative for|absence of|free of|rather than|rules? out)\b[^.;:\n]*$", re.IGNORECASE)
_TERTIARY = re.compile(r"\btertiary\b[^.;\n]{0,20}$", re.IGNORECASE)
_SPLIT_SCORE = re.compile(r"\bgleason\b[^.;\n]{0,40}?\b([345])\s*\+\s*([345])(?:\s*=\s*(\d{1,2}))?", re.IGNORECASE)
_BARE_SCORE = re.compile(r"(?<![\d+])\b([345])\s*\+\s*([345])\s*=\s*(\d{1,2})\b")
_WORDED_SCORE = re.compile(r"\bprimary\s+(?:gleason\s+)?(?:pattern|grade)\s*:?\s*([345])\b[,;\s]+(?:and\s+)?"
                           r"secondary\s+(?:gleason\s+)?(?:pattern|grade)\s*:?\s*([345])\b", re.IGNORECASE)
_TOTAL_SCORE = re.compile(r"\bgleason\s+(?:sum|score)\s*(?:of|is|:|=)?\s*(\d{1,2})\b(?!\s*\+)", re.IGNORECASE)
_GRADE_GROUP = re.compile(r"\b(?:(?:who\s*/\s*)?isup\s+)?grade\s+group\s*(?:of|is|:|=)?\s*([1-5])\b"
                          r"|\bisup(?:\s+grade)?\s*(?:of|is|:|=)?\s*([1-5])\b", re.IGNORECASE)
_CARCINOMA = re.compile(r"\b(?:adeno)?carcinoma\b", re.IGNORECASE)
_BENIGN = re.compile(r"\bbenign\b|\bno evidence of (?:malignancy|carcinoma|tumou?r)\b|\bnegative for (?:malignancy|carcinoma)\b"
                     r"|\bno (?:adeno)?carcinoma\b", re.IGNORECASE)


@dataclass(frozen=True)
class GradeStatement:
    grade_group: int
    primary: int | None  # the patterns, when the statement gives them
    secondary: int | None
    text: str  # the words it was read from


@dataclass(frozen=True)
class ReportGrade:
    grade_group: int | None  # 1-5; 0: the report says there is no tumour; None: it states no grade
    statements: tuple[GradeStatement, ...]  # every statement of grade read, in text order

    @property
    def summary(self) -> str:
        if self.grade_group is None:
            return "no grade stated"
        if self.grade_group == 0:
            return "no tumour"
        best = next(s for s in self.statements if s.grade_group == self.grade_group)
        score = f"Gleason {best.primary}+{best.secondary}={best.primary + best.secondary}, " if best.primary and best.secondary else ""
        return f"{score}grade group {self.grade_group}"


def _ruled_out(text: str, start: int) -> bool:
    """Whether the words just before ``start`` (same clause) negate it or make it a tertiary pattern."""
    before = text[max(0, start - 60):start]
    return bool(_NEGATION.search(before) or _TERTIARY.search(before))


def _statements(text: str) -> list[tuple[int, int, GradeStatement]]:
    found: list[tuple[int, int, GradeStatement]] = []
    taken: list[tuple[int, int]] = []

    def add(match: re.Match[str], group: int, primary: int | None = None, secondary: int | None = None) -> None:
        if any(s < match.end() and match.start() < e for s, e in taken) or _ruled_out(text, match.start()):
            return
        taken.append((match.start(), match.end()))
        found.append((match.start(), match.end(), GradeStatement(group, primary, secondary, " ".join(match.group(0).split()))))

    for pattern in (_SPLIT_SCORE, _BARE_SCORE, _WORDED_SCORE):
        for m in pattern.finditer(text):
            primary, secondary = int(m.group(1)), int(m.group(2))
            stated_sum = m.group(3) if pattern is not _WORDED_SCORE else None
            if stated_sum is not None and int(stated_sum) != primary + secondary:
                continue  # a typo: which number is wrong cannot be told
            add(m, isup_grade_group(primary, secondary), primary, secondary)
    for m in _TOTAL_SCORE.finditer(text):
        total = int(m.group(1))
        if 2 <= total <= 6:
            add(m, 1)
        elif total in (8, 9, 10):
            add(m, 4 if total == 8 else 5)
    for m in _GRADE_GROUP.finditer(text):
        add(m, int(m.group(1) or m.group(2)))
    return sorted(found, key=lambda f: f[0])


def _mentions_carcinoma(text: str) -> bool:
    return any(not _ruled_out(text, m.start()) for m in _CARCINOMA.finditer(text))


def report_grade(text: str) -> ReportGrade:
    """The grade group the report states (see the module's docstring for what is read)."""
    statements = tuple(s for _, _, s in _statements(text))
    if statements:
        return ReportGrade(max(s.grade_group for s in statements), statements)
    if _BENIGN.search(text) and not _mentions_carcinoma(text):
        return ReportGrade(0, ())
    return ReportGrade(None, ())


_PROSTATECTOMY = re.compile(r"\bprostatectom(?:y|ies)\b", re.IGNORECASE)
_BIOPSY = re.compile(r"\bbiops(?:y|ies)\b|\bcores?\b", re.IGNORECASE)


def report_specimen(text: str) -> SpecimenType | None:
    """The specimen a report describes: "prostatectomy" when it names one (a prostatectomy report may mention the earlier
    biopsy), "biopsy" for needle or core biopsies, None when it says neither."""
    if _PROSTATECTOMY.search(text):
        return "prostatectomy"
    return "biopsy" if _BIOPSY.search(text) else None
