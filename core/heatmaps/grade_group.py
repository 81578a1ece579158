"""Slide-level Gleason score and ISUP grade group from the share of tissue each Gleason pattern covers in the class map.

The thesis (ch. 2.2.3 and 2.5, after Arvaniti et al.) scores a slide from its grade percentages: a pattern counts when it
covers at least T = 10 % of the tissue ("T = 10 % as minimum number of pixels with a certain label to be considered the
corresponding grade"; the percentages are of the tissue, ch. 3.3.3), and the first and second counted patterns by area
are the primary and secondary grade; with one counted pattern it is both (4+4). The thesis notes that severity matters
too: a pattern 5 can be the secondary grade although less extensive. How a minor higher pattern enters the score
depends on the specimen (ISUP 2014, Epstein et al., Am J Surg Pathol 2016; METHODS "Biopsy convention"):

- ``biopsy`` (needle biopsy): primary = the most extensive counted pattern; secondary = the highest pattern present
  that is higher than the primary, whatever its extent, else the second most extensive counted pattern, else the
  primary. A minor higher pattern is thus included in the score (3 at 90 %, 4 at 5 % -> 3+4).
- ``prostatectomy`` (radical prostatectomy): primary and secondary by area among counted patterns (the thesis's
  rule as written); a higher pattern present but not in the score (below the threshold, or a third pattern) is
  reported as the *tertiary* pattern and does not change the score (3 at 90 %, 4 at 5 % -> 3+3 with tertiary 4).

"Present" means at least ``presence`` of the tissue (1 % by default): a class map has isolated misclassified cells,
and one stray cell must not raise a biopsy's grade. Ties in area go to the higher pattern. A slide where no pattern
reaches the threshold is reported as no tumour.

ISUP grade groups: 1 = 3+3, 2 = 3+4, 3 = 4+3, 4 = score 8 (4+4, 3+5, 5+3), 5 = score 9-10.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from core.errors import PathReviewError
from core.models.gleason import SPECIMEN_LABELS, SPECIMEN_TYPES, SpecimenType, isup_grade_group

__all__ = ["SPECIMEN_LABELS", "SPECIMEN_TYPES", "SlideGrade", "SpecimenType", "display_class_name", "gleason_pattern", "grading_rule_text",
           "isup_grade_group", "pattern_fractions", "slide_grade"]

MINOR_PATTERN_THRESHOLD = 0.10  # the thesis's T: a pattern counts in the score from 10 % of the tissue
PRESENCE_FLOOR = 0.01  # a pattern below 1 % of the tissue is taken as isolated misclassified cells

# "GG3", "G4", "Gleason 5", "Gleason pattern 3", "gleason_grade_4", "pattern 5": a class that is a Gleason pattern.
_PATTERN_NAME = re.compile(r"^\s*(?:gleason[\s_-]*(?:pattern|grade)?|gg|g|pattern|grade)[\s_-]*([345])\s*$", re.IGNORECASE)


def gleason_pattern(class_name: str) -> int | None:
    """The Gleason pattern (3, 4 or 5) a model class stands for, from its name; None for benign and other classes."""
    match = _PATTERN_NAME.match(class_name)
    return int(match.group(1)) if match else None


def display_class_name(class_name: str) -> str:
    """How a class is named to a pathologist: "Gleason pattern 4" for "GG4" (a pattern, not an ISUP grade group)."""
    pattern = gleason_pattern(class_name)
    return f"Gleason pattern {pattern}" if pattern is not None else class_name


@dataclass(frozen=True)
class SlideGrade:
    specimen: SpecimenType
    pattern_fractions: dict[int, float]  # Gleason pattern -> share of the tissue
    primary: int | None  # None: no tumour (no pattern reaches the threshold)
    secondary: int | None
    tertiary: int | None  # prostatectomy only: a higher pattern present but not in the score
    threshold: float
    presence: float

    @property
    def score(self) -> int | None:
        return None if self.primary is None or self.secondary is None else self.primary + self.secondary

    @property
    def grade_group(self) -> int:
        """ISUP grade group 1-5; 0 when there is no tumour."""
        return 0 if self.primary is None or self.secondary is None else isup_grade_group(self.primary, self.secondary)

    @property
    def summary(self) -> str:
        """"Gleason 3+4=7, grade group 2" (with ", tertiary pattern 5" when reported), or "no tumour"."""
        if self.primary is None or self.secondary is None:
            return f"no tumour (no Gleason pattern covers {self.threshold:.0%} of the tissue)"
        text = f"Gleason {self.primary}+{self.secondary}={self.score}, grade group {self.grade_group}"
        return text + (f", tertiary pattern {self.tertiary}" if self.tertiary is not None else "")


def pattern_fractions(class_fractions: Mapping[str, float]) -> dict[int, float]:
    """Share of tissue per Gleason pattern from the share per model class (classes naming the same pattern add up)."""
    patterns: dict[int, float] = {}
    for name, share in class_fractions.items():
        pattern = gleason_pattern(name)
        if pattern is not None:
            patterns[pattern] = patterns.get(pattern, 0.0) + float(share)
    return patterns


def slide_grade(class_fractions: Mapping[str, float], specimen: SpecimenType, threshold: float = MINOR_PATTERN_THRESHOLD,
                presence: float = PRESENCE_FLOOR) -> SlideGrade:
    """The slide's Gleason score and grade group from the share of tissue per class (``class_area_fractions`` of the
    class map), by the rule for its specimen type (see the module's docstring)."""
    if specimen not in SPECIMEN_TYPES:
        raise PathReviewError(f"specimen type must be {' or '.join(SPECIMEN_TYPES)} (got {specimen!r})")
    if not 0 < presence <= threshold <= 1:
        raise PathReviewError("the grading thresholds must satisfy 0 < presence <= threshold <= 1")
    shares = pattern_fractions(class_fractions)
    by_area = sorted(shares, key=lambda p: (shares[p], p), reverse=True)  # ties: the higher pattern first
    counted = [p for p in by_area if shares[p] >= threshold]
    present = [p for p in by_area if shares[p] >= presence]
    primary: int | None = counted[0] if counted else None
    secondary: int | None = None
    tertiary: int | None = None
    if primary is not None:
        secondary = counted[1] if len(counted) > 1 else primary
        higher_minor = max((p for p in present if p > max(primary, secondary)), default=None)
        if specimen == "biopsy":
            higher = max((p for p in present if p > primary), default=None)
            secondary = higher if higher is not None else secondary
        else:
            tertiary = higher_minor
    return SlideGrade(specimen=specimen, pattern_fractions=shares, primary=primary, secondary=secondary, tertiary=tertiary,
                      threshold=threshold, presence=presence)


def grading_rule_text(specimen: SpecimenType, threshold: float = MINOR_PATTERN_THRESHOLD, presence: float = PRESENCE_FLOOR) -> str:
    """The rule applied, in words, for the caption under a grade group."""
    base = (f"A Gleason pattern enters the score when it covers at least {threshold:.0%} of the tissue; primary and secondary "
            "by area (thesis ch. 2, Arvaniti's rule, T = 10 %). ")
    if specimen == "biopsy":
        return base + (f"Needle biopsy (ISUP 2014): a higher pattern present (≥ {presence:.0%} of tissue) below the threshold "
                       "becomes the secondary grade.")
    return base + (f"Radical prostatectomy (ISUP 2014): a higher pattern present (≥ {presence:.0%} of tissue) but not in the score "
                   "is reported as tertiary and does not change the grade group.")
