"""The demo builds: realistic slides that OpenSlide opens, one coherent prostate cohort (men, specimens whose reports
match their slides, one identity and one calendar per patient, a stated minority of discordant reports), reuse of an
identical build, no half-built workspace, and the visits-only ALS demo."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sqlalchemy import func, select

from core.demo.build import BUILD_MARKER, REDUCED_SPEC, REFERRED_EVERY, DemoSpec, build_demo, is_high_grade, mask_gleason
from core.demo.prostate_history import GRADE_GROUP
from core.demo.slide_synthesis import LAB_NAMES
from core.errors import WorkspaceError
from core.slides.reader import open_slide
from core.store.database import open_store
from core.store.schema import Patient, Slide, Visit


@pytest.fixture(scope="module")
def cohort(demo_workspace):
    store = open_store(f"sqlite:///{demo_workspace / 'cases.db'}")
    with store.session() as s:
        patients = list(s.scalars(select(Patient).order_by(Patient.id)))
        data = {p.id: {"attributes": p.attributes, "slides": list(p.slides), "reports": list(p.reports), "visits": list(p.visits)}
                for p in patients}
    store.dispose()
    return data


def _mask(demo_workspace, slide):
    return np.asarray(Image.open(demo_workspace / "slides" / slide.mask_file))


def test_demo_slides_are_pyramidal_tiffs_with_ground_truth(demo_workspace):
    store = open_store(f"sqlite:///{demo_workspace / 'cases.db'}")
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) >= 40
        slides = list(s.scalars(select(Slide).order_by(Slide.id)))
        visit_counts = s.execute(select(func.count()).select_from(Visit).group_by(Visit.patient_id)).scalars().all()
    store.dispose()
    assert min(visit_counts) >= 3 and max(visit_counts) <= 15
    slide = open_slide(demo_workspace / "slides" / slides[0].file)
    assert slide.level_count >= 3 and float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    assert slide.dimensions == (slides[0].width, slides[0].height)
    region = np.asarray(slide.read_region((0, 0), slide.level_count - 1, slide.level_dimensions[-1]))[..., :3]
    slide.close()
    mask = _mask(demo_workspace, slides[0])
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4} and (mask > 0).any()
    assert region.std() > 10  # tissue and background, not a flat image


def test_every_man_records_where_his_slides_were_stained(cohort, held_out):
    assert all(45 <= p["attributes"]["age"] <= 85 for p in cohort.values())
    assert all("sex" not in p["attributes"] for p in cohort.values())  # a prostate cohort: every man would read "M"
    labs = {pid: p["attributes"]["stained_at"] for pid, p in cohort.items()}
    assert {labs[pid] for pid in cohort if pid not in held_out} == {LAB_NAMES[0]}  # the models train on the lab's own
    referred = sorted(held_out)[::REFERRED_EVERY]
    assert [labs[pid] for pid in referred] == [LAB_NAMES[1 + k % 2] for k in range(len(referred))]
    assert {labs[pid] for pid in held_out - set(referred)} == {LAB_NAMES[0]}


def _specimen_slides(patient, report):
    """A specimen's slides: those of its report's day (each specimen of a patient has its own day)."""
    return [s for s in patient["slides"] if s.day == report.day]


def test_each_report_is_one_specimen_whose_wording_and_slides_match(demo_workspace, cohort):
    kinds = defaultdict(int)
    for patient in cohort.values():
        assert patient["reports"] and {s.day for s in patient["slides"]} == {r.day for r in patient["reports"]}
        assert len({r.day for r in patient["reports"]}) == len(patient["reports"])
        for report in patient["reports"]:
            slides = _specimen_slides(patient, report)
            assert slides and all(s.day == report.day for s in slides)
            text = report.text.lower()
            if "prostatectomy" in text:
                assert not re.search(r"\bcores?\b", text), report.id  # no biopsy wording ("core length")
                assert len(slides) == 1
                mask = _mask(demo_workspace, slides[0])
                assert (mask > 0).mean() > 0.35  # one large section fills the slide
                kinds["prostatectomy"] += 1
            else:
                assert ("biops" in text or " bx" in text) and "prostatectomy" not in text, report.id
                for slide in slides:  # thin cores, some broken: at least three pieces of tissue, each a strip
                    pieces, _ = ndimage.label(_mask(demo_workspace, slide) > 0)
                    shapes = [(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in ndimage.find_objects(pieces)]
                    assert len(shapes) >= 3 and all(width >= 1.5 * height for height, width in shapes), (slide.id, shapes)
                    assert sum(width for _, width in shapes) >= 3 * 3 * max(height for height, _ in shapes)  # three long cores
                kinds["biopsy"] += 1
    assert kinds["biopsy"] > kinds["prostatectomy"] > 0


def test_one_patient_identity_and_one_calendar_per_patient(cohort):
    mrns = {}
    for pid, patient in cohort.items():
        ids, first_visits = set(), set()
        last = None
        for report in sorted(patient["reports"], key=lambda r: r.day):
            ids.add((re.search(r"MRN (\d{7})", report.text).group(1), re.search(r"Case (\S+)", report.text).group(1)))
            collected = datetime.strptime(re.search(r"Collected: (\d{2} \w{3} \d{4})", report.text).group(1), "%d %b %Y")
            signed = datetime.strptime(re.search(r"signed (\d{2}/\d{2}/\d{4})", report.text).group(1), "%m/%d/%Y")
            assert collected <= signed <= collected + timedelta(days=14)
            assert last is None or collected >= last
            last = collected
            first_visits.add(collected - timedelta(days=round(report.day)))
        assert len(ids) == 1 and next(iter(ids))[1] == pid, pid
        assert len(first_visits) == 1, pid  # every report's date is the first visit's date plus its day
        mrns[pid] = next(iter(ids))[0]
        days = [v.day for v in patient["visits"]]
        assert days == sorted(days) and days[0] == 0
        assert all(s.day is not None and s.day >= 0 for s in patient["slides"])
    assert len(set(mrns.values())) == len(mrns)


def _stated(text):
    """The grade a report states: (primary, secondary) when it gives both patterns, else its grade group."""
    for pattern in (r"(\d)\s*\+\s*(\d)", r"[Pp]rimary pattern (\d), secondary(?: pattern)? (\d)", r"[Pp]redominant pattern (\d) .*? pattern (\d)"):
        m = re.search(pattern, text)
        if m:
            return "gleason", (int(m.group(1)), int(m.group(2)))
    m = re.search(r"(?:[Gg]rade group|GG) ?(\d)", text)
    return ("group", int(m.group(1))) if m else ("benign", None)


def test_reports_agree_with_their_slides_masks_but_for_a_stated_minority(demo_workspace, cohort):
    discordant, total = 0, 0
    for patient in cohort.values():
        for report in patient["reports"]:
            truth = mask_gleason([_mask(demo_workspace, s) for s in _specimen_slides(patient, report)])
            kind, stated = _stated(report.text)
            if kind == "gleason":
                agree = stated == truth
            elif kind == "group":
                agree = truth is not None and GRADE_GROUP[truth] == stated
            else:
                agree = truth is None
            discordant += not agree
            total += 1
            assert report.label == int(is_high_grade(truth))  # labels come from the slides
    assert 0.05 <= discordant / total <= 0.10, (discordant, total)


def test_identical_build_is_reused(demo_workspace):
    marker = (demo_workspace / BUILD_MARKER).stat().st_mtime_ns
    assert build_demo(demo_workspace, REDUCED_SPEC, progress=lambda m: None) == demo_workspace
    assert (demo_workspace / BUILD_MARKER).stat().st_mtime_ns == marker
    built = json.loads((demo_workspace / BUILD_MARKER).read_text())
    assert built["spec"]["n_patients"] == REDUCED_SPEC.n_patients
    assert any("blur" in a for a in built["artefacts"].values()) and any("pen" in a for a in built["artefacts"].values())


def test_build_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("lab data")
    with pytest.raises(WorkspaceError, match="not a demo workspace"):
        build_demo(tmp_path, REDUCED_SPEC, progress=lambda m: None)
    assert (tmp_path / "precious.txt").read_text() == "lab data"
    with pytest.raises(WorkspaceError, match="unknown demo"):
        build_demo(tmp_path / "x", DemoSpec(cohort="melanoma"), progress=lambda m: None)
