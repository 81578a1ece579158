"""The ALS demo (``--demo als``): the non-invasive-ventilation cohort, visits only; every page handles its patients,
who have no slides and no reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import func, select

from core.demo.build import ALS_SPEC, BUILD_MARKER, build_demo
from core.explain.patient_explanations import PatientExplainers
from core.slides.tiles import TileService
from core.store.cohort import cohort_page
from core.store.schema import Patient, Prediction, Report, Slide, Visit
from core.workspace import open_workspace
from dashboard.app import render_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def als(tmp_path_factory):
    root = build_demo(tmp_path_factory.mktemp("als") / "workspace", ALS_SPEC, progress=lambda m: None)
    ws = open_workspace(root)
    yield ws
    ws.store.dispose()


def test_visits_only_with_the_cohorts_attributes(als):
    with als.store.session() as s:
        assert s.scalar(select(func.count()).select_from(Slide)) == 0 and s.scalar(select(func.count()).select_from(Report)) == 0
        assert s.scalar(select(func.count()).select_from(Patient)) == ALS_SPEC.n_patients
        onsets = {p.attributes["onset_type"] for p in s.scalars(select(Patient))}
        visits = s.scalar(select(func.count()).select_from(Visit))
    assert onsets == {"spinal", "bulbar", "mixed"} and visits > 3 * ALS_SPEC.n_patients
    assert als.config.models == ["niv-gru"] and list(als.patient_attributes()) == ["age", "sex", "onset_type"]


def test_niv_model_is_honest_and_calibrated(als):
    metrics = als.manifest("niv-gru").metrics
    assert 0.80 <= metrics.auc <= 0.97
    baselines = json.loads((als.root / BUILD_MARKER).read_text())["baselines"]["niv-gru"]
    assert len(baselines) == 2 and all(metrics.auc >= auc + 0.03 for auc in baselines.values()), baselines
    with als.store.session() as s:
        scores = np.array(s.scalars(select(Prediction.score).where(Prediction.subject_kind == "visit")).all())
    assert ((scores < 0.01) | (scores > 0.99)).mean() < 0.30


def test_every_page_handles_a_patient_without_slides_or_reports(als):
    tiles, explainers = TileService(als), PatientExplainers(als)
    with als.store.session() as s:
        pid = s.scalars(select(Patient.id).order_by(Patient.id)).first()
        rows = cohort_page(s, ["niv-gru"], page_size=5, attributes=list(als.patient_attributes())).rows
    assert rows[0]["slides"] == 0 and rows[0]["reports"] == 0 and rows[0]["attr:onset_type"] in {"spinal", "bulbar", "mixed"}
    case = str(render_page(als, tiles, f"/case/{pid}", explainers))
    assert "No slides for this patient." in case and "No reports." in case and "Onset" in case
    for path in ("/", "/patients", f"/patient/{pid}", "/models"):
        page = str(render_page(als, tiles, path, explainers))
        assert "Traceback" not in page and "alert-danger" not in page, path
