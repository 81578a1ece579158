"""Gleason scores and ISUP grade groups: the grading vocabulary that slide grading (``core.heatmaps.grade_group``) and
report reading (``core.models.report_grade``) share."""

from __future__ import annotations

from typing import Literal

from core.errors import PathReviewError

SpecimenType = Literal["biopsy", "prostatectomy"]
SPECIMEN_TYPES: tuple[SpecimenType, ...] = ("biopsy", "prostatectomy")
SPECIMEN_LABELS: dict[SpecimenType, str] = {"biopsy": "needle biopsy", "prostatectomy": "radical prostatectomy"}
GLEASON_PATTERNS = (3, 4, 5)


def isup_grade_group(primary: int, secondary: int) -> int:
    """ISUP 2014 grade group of a Gleason score primary + secondary (patterns 3 to 5)."""
    if primary not in GLEASON_PATTERNS or secondary not in GLEASON_PATTERNS:
        raise PathReviewError(f"Gleason patterns are 3, 4 or 5 (got {primary}+{secondary})")
    total = primary + secondary
    if total <= 6:
        return 1
    if total == 7:
        return 2 if primary == 3 else 3
    return 4 if total == 8 else 5
