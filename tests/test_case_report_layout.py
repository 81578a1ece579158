"""The case report PDF laid out for a tumour board, read back from the PDF's own layout (pdfplumber): landscape pages,
two to four figures a page grouped by modality, every figure inside its page, no text over a figure, each figure's
provenance once in its page's footer and in full in the document info; the pages rendered to PNG (pdftoppm) for the docs."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pdfplumber
import pytest
from pypdf import PdfReader
from sqlalchemy import select

from core.explain.patient_explanations import PatientExplainers
from core.export.case_figures import CASE_FIGURES, case_figure_names, default_case_view
from core.export.case_report import build_case_report
from core.heatmaps.slide_heatmap import compute_heatmap
from core.store.cases import case_summary
from core.store.reviews import record_review, review_versions
from core.store.schema import Patient
from tests.system_packages import install_debian_packages

DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
TOLERANCE_PT = 0.5


def _overlaps(a: dict, b: dict) -> bool:
    return (a["x0"] < b["x1"] - TOLERANCE_PT and b["x0"] < a["x1"] - TOLERANCE_PT
            and a["top"] < b["bottom"] - TOLERANCE_PT and b["top"] < a["bottom"] - TOLERANCE_PT)


@pytest.fixture(scope="module")
def full_case(workspace) -> str:
    """A patient with slides, visits and reports, and two reviewers who signed off the slide and disagree on it."""
    with workspace.store.session() as s:
        for pid in s.scalars(select(Patient.id).order_by(Patient.id)):
            case = case_summary(s, pid)
            if case.slides and len(case.visits) >= 3 and case.reports:
                break
    for slide in case.slides:  # the overlay the report shows on the slide figure and the thumbnails
        compute_heatmap(workspace, slide.id, workspace.models_for("patch")[0])
    for user, verdict in (("dr.rossi", "agree"), ("dr.okafor", "disagree")):
        record_review(workspace.store, pid, "slide", verdict, f"{user}'s reading", [], True, user, review_versions(workspace.store, pid)["slide"])
    return pid


@pytest.fixture(scope="module")
def report_pdf(workspace, full_case) -> bytes:
    with workspace.store.session() as s:
        names = case_figure_names(case_summary(s, full_case), bool(workspace.models_for("report")))
    assert names == list(CASE_FIGURES)
    data, figures = build_case_report(workspace, PatientExplainers(workspace), default_case_view(workspace, full_case), names, "pdf")
    assert figures == len(CASE_FIGURES)
    return data


def test_the_pdf_is_landscape_grouped_by_modality_and_nothing_overlaps_a_figure(report_pdf, tmp_path):
    with pdfplumber.open(io.BytesIO(report_pdf)) as pdf:
        pages = pdf.pages
        # The case page, then slide, patient and report: five figures and the slide thumbnails on three pages at most.
        assert 2 <= len(pages) <= 4
        for page in pages:
            assert page.width > page.height  # landscape
            page_box = {"x0": 0, "top": 0, "x1": page.width, "bottom": page.height}
            for image in page.images:
                assert page_box["x0"] <= image["x0"] and image["x1"] <= page_box["x1"] + TOLERANCE_PT
                assert page_box["top"] <= image["top"] and image["bottom"] <= page_box["bottom"] + TOLERANCE_PT
            for word in page.extract_words():
                hit = [image for image in page.images if _overlaps(word, image)]
                assert not hit, f"page {page.page_number}: text {word['text']!r} lies over a figure"
        figure_pages = pages[1:]
        counts = [len(page.images) for page in figure_pages]
        assert all(2 <= n <= 4 + 4 for n in counts[:-1]) and sum(counts) >= len(CASE_FIGURES), counts  # figures and thumbnails
        text = [page.extract_text() for page in pages]

    # Page 1: the consensus per modality, from each reviewer's latest signed-off verdict.
    assert "reviewers disagree (dr.okafor: disagree, dr.rossi: agree)" in text[0]
    body = "\n".join(text[1:])
    for heading in ("Slide", "Patient (visits)", "Report", "Diagnosis", "Consensus", "Report excerpt"):
        assert heading in body
    for number in range(1, len(CASE_FIGURES) + 1):  # each figure's provenance once, in its page's footer
        assert body.count(f"Fig. {number}: model ") == 1, number
    assert "no heatmap stored" not in body and "tumour ≥ 0.5" in body  # the thumbnails carry the overlay
    record = json.loads(PdfReader(io.BytesIO(report_pdf)).metadata["/Keywords"])
    assert [f["number"] for f in record["figures"]] == list(range(1, len(CASE_FIGURES) + 1))
    assert all(f["provenance"]["weights_sha256"] for f in record["figures"])

    # The pages as images; PATHREVIEW_DOCS_IMAGES=1 also copies them into docs/images for the documentation.
    assert shutil.which("pdftoppm") or install_debian_packages("poppler-utils"), "poppler-utils (pdftoppm) is needed to render the report"
    (tmp_path / "report.pdf").write_bytes(report_pdf)
    subprocess.run(["pdftoppm", "-png", "-r", "80", str(tmp_path / "report.pdf"), str(tmp_path / "case-report")], check=True, timeout=120)
    rendered = sorted(tmp_path.glob("case-report-*.png"))
    assert len(rendered) == len(pages)
    assert all(png.stat().st_size > 10_000 for png in rendered)  # rendered pages, not blank ones
    if os.environ.get("PATHREVIEW_DOCS_IMAGES") != "1":
        return
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    for old in DOCS_IMAGES.glob("case-report-*.png"):
        old.unlink()
    for i, png in enumerate(rendered, start=1):
        shutil.copy(png, DOCS_IMAGES / f"case-report-{i}.png")


def test_the_html_report_holds_the_modalities_and_every_figure(workspace, full_case):
    data, figures = build_case_report(workspace, PatientExplainers(workspace), default_case_view(workspace, full_case),
                                      list(CASE_FIGURES), "html")
    page = data.decode("utf-8")
    assert figures == len(CASE_FIGURES) and page.count('src="data:image/svg+xml;base64,') == len(CASE_FIGURES)
    assert "reviewers disagree" in page and 'class="lime"' in page and 'class="thumbs"' in page
