"""The demo build: realistic slides that OpenSlide opens, reuse of an identical build, no half-built workspace."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from core.demo.build import BUILD_MARKER, REDUCED_SPEC, build_demo
from core.errors import WorkspaceError
from core.slides.reader import open_slide
from core.store.database import open_store
from core.store.schema import Patient, Report, Slide, Visit


def test_demo_slides_are_pyramidal_tiffs_with_ground_truth(demo_workspace):
    store = open_store(f"sqlite:///{demo_workspace / 'cases.db'}")
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) >= 24
        slides = list(s.scalars(select(Slide)))
        visit_counts = s.execute(select(func.count()).select_from(Visit).group_by(Visit.patient_id)).scalars().all()
        texts = [r.text for r in s.scalars(select(Report))]
    store.dispose()
    assert min(visit_counts) >= 3 and max(visit_counts) <= 15
    assert any("Gleason" in t for t in texts) and any("No " in t or "Negative" in t for t in texts)
    slide = open_slide(demo_workspace / "slides" / slides[0].file)
    assert slide.level_count >= 3 and float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
    assert slide.dimensions == (slides[0].width, slides[0].height)
    region = np.asarray(slide.read_region((0, 0), slide.level_count - 1, slide.level_dimensions[-1]))[..., :3]
    slide.close()
    mask = np.asarray(Image.open(demo_workspace / "slides" / slides[0].mask_file))
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4} and (mask > 0).any()
    assert region.std() > 10  # tissue and background, not a flat image


def test_identical_build_is_reused(demo_workspace):
    marker = (demo_workspace / BUILD_MARKER).stat().st_mtime_ns
    assert build_demo(demo_workspace, REDUCED_SPEC, progress=lambda m: None) == demo_workspace
    assert (demo_workspace / BUILD_MARKER).stat().st_mtime_ns == marker
    assert json.loads((demo_workspace / BUILD_MARKER).read_text())["spec"]["n_patients"] == REDUCED_SPEC.n_patients


def test_build_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("lab data")
    with pytest.raises(WorkspaceError, match="not a demo workspace"):
        build_demo(tmp_path, REDUCED_SPEC, progress=lambda m: None)
    assert (tmp_path / "precious.txt").read_text() == "lab data"
