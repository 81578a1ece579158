"""Slide Gleason score and ISUP grade group from hand-made class maps (10 x 10 cells of tissue, so one cell is 1 %)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import PathReviewError
from core.heatmaps.grade_group import display_class_name, gleason_pattern, isup_grade_group, slide_grade
from core.heatmaps.reconstruct import class_area_fractions

CLASSES = ["benign", "GG3", "GG4", "GG5"]


def class_map(cells: dict[str, int], outside: int = 20) -> dict[str, float]:
    """A 10 x 12 class map: ``cells`` tissue cells per class (benign fills the rest of 100 tissue cells), then ``outside``
    cells of glass (-1), which never count; returns the share of tissue per class as the slide panel computes it."""
    labels = []
    for name in CLASSES[1:]:
        labels += [CLASSES.index(name)] * cells.get(name, 0)
    labels += [0] * (100 - len(labels)) + [-1] * outside
    grid = np.array(labels, np.int16).reshape(10, 12)
    return dict(zip(CLASSES, class_area_fractions(grid, len(CLASSES)).tolist(), strict=True))


@pytest.mark.parametrize(("cells", "primary", "secondary", "group"), [
    ({"GG3": 60}, 3, 3, 1),  # one counted pattern is both grades
    ({"GG3": 40, "GG4": 20}, 3, 4, 2),
    ({"GG4": 40, "GG3": 20}, 4, 3, 3),
    ({"GG4": 50}, 4, 4, 4),
    ({"GG3": 40, "GG5": 30}, 3, 5, 4),
    ({"GG5": 40, "GG3": 30}, 5, 3, 4),
    ({"GG4": 40, "GG5": 30}, 4, 5, 5),
    ({"GG5": 40, "GG4": 30}, 5, 4, 5),
    ({"GG5": 70}, 5, 5, 5),
])
@pytest.mark.parametrize("specimen", ["biopsy", "prostatectomy"])
def test_every_isup_group_from_a_class_map(cells, primary, secondary, group, specimen):
    grade = slide_grade(class_map(cells), specimen)
    assert (grade.primary, grade.secondary, grade.grade_group) == (primary, secondary, group)
    assert grade.score == primary + secondary and grade.tertiary is None


def test_no_pattern_at_the_threshold_is_no_tumour():
    grade = slide_grade(class_map({"GG3": 9, "GG4": 9}), "biopsy")  # 9 % each: below T = 10 %
    assert grade.primary is None and grade.grade_group == 0 and grade.score is None
    assert grade.summary.startswith("no tumour")
    assert slide_grade(class_map({}), "prostatectomy").grade_group == 0


def test_threshold_is_inclusive_and_third_counted_pattern_is_left_out_of_the_score():
    assert slide_grade(class_map({"GG3": 50, "GG4": 10}), "prostatectomy").secondary == 4  # exactly 10 % counts
    # three counted patterns, by area 3 > 4 > 5: the prostatectomy score is 3+4 and the third, higher one is tertiary
    grade = slide_grade(class_map({"GG3": 40, "GG4": 30, "GG5": 15}), "prostatectomy")
    assert (grade.primary, grade.secondary, grade.tertiary) == (3, 4, 5)
    # the biopsy takes the highest pattern as secondary, whatever its extent
    assert slide_grade(class_map({"GG3": 40, "GG4": 30, "GG5": 15}), "biopsy").summary == "Gleason 3+5=8, grade group 4"


def test_ties_in_area_go_to_the_higher_pattern():
    grade = slide_grade(class_map({"GG3": 30, "GG4": 30}), "prostatectomy")
    assert (grade.primary, grade.secondary, grade.grade_group) == (4, 3, 3)


@pytest.mark.parametrize(("cells", "biopsy", "prostatectomy"), [
    # a minor higher pattern (below 10 %, above the 1 % floor): in a biopsy's score, a prostatectomy's tertiary
    ({"GG3": 80, "GG4": 5}, (3, 4, None, 2), (3, 3, 4, 1)),
    ({"GG4": 60, "GG3": 30, "GG5": 5}, (4, 5, None, 5), (4, 3, 5, 3)),
    ({"GG3": 50, "GG4": 40, "GG5": 3}, (3, 5, None, 4), (3, 4, 5, 2)),
    ({"GG4": 90, "GG5": 2}, (4, 5, None, 5), (4, 4, 5, 4)),
    # a minor *lower* pattern is neither: 4 + 4 in both
    ({"GG4": 90, "GG3": 5}, (4, 4, None, 4), (4, 4, None, 4)),
    # below the presence floor (0 cells of 100 < 1 %): isolated cells change nothing
    ({"GG3": 80}, (3, 3, None, 1), (3, 3, None, 1)),
])
def test_tertiary_pattern_rule_by_specimen(cells, biopsy, prostatectomy):
    for specimen, expected in (("biopsy", biopsy), ("prostatectomy", prostatectomy)):
        grade = slide_grade(class_map(cells), specimen)
        assert (grade.primary, grade.secondary, grade.tertiary, grade.grade_group) == expected, specimen


def test_presence_floor_keeps_stray_cells_out_of_a_biopsy_score():
    fractions = {"benign": 0.495, "GG3": 0.5, "GG5": 0.005}  # half a percent of pattern 5: stray cells
    assert slide_grade(fractions, "biopsy").summary == "Gleason 3+3=6, grade group 1"
    assert slide_grade(fractions, "biopsy", presence=0.005).summary == "Gleason 3+5=8, grade group 4"


def test_summary_names_the_tertiary_pattern():
    assert slide_grade(class_map({"GG3": 80, "GG4": 5}), "prostatectomy").summary == "Gleason 3+3=6, grade group 1, tertiary pattern 4"


def test_class_names_as_gleason_patterns():
    assert [gleason_pattern(n) for n in ["GG3", "G4", "Gleason 5", "gleason_pattern_3", "Pattern 4", "benign", "tumour", "GG6"]] == \
        [3, 4, 5, 3, 4, None, None, None]
    assert display_class_name("GG4") == "Gleason pattern 4" and display_class_name("benign") == "benign"


def test_bad_inputs_are_refused():
    with pytest.raises(PathReviewError, match="specimen type"):
        slide_grade({"GG3": 1.0}, "resection")  # type: ignore[arg-type]
    with pytest.raises(PathReviewError, match="patterns are 3, 4 or 5"):
        isup_grade_group(2, 3)
    with pytest.raises(PathReviewError, match="thresholds"):
        slide_grade({"GG3": 1.0}, "biopsy", threshold=0.01, presence=0.05)
