"""Figure export (PNG/SVG/PDF with provenance), the server-side slide figure and the case report."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from xml.etree import ElementTree

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select

from core.errors import PathReviewError
from core.export.case_report import CaseReportContent, ReportFigure, case_report_html, case_report_pdf
from core.export.figure_export import FORMATS, MEDIA_TYPES, export_figure, export_filename, read_provenance
from core.export.provenance import Provenance, model_provenance
from core.export.report_content import ModalitySummary
from core.export.slide_figure import SlideRegion, nice_scale_length, slide_figure, viewport_region
from core.heatmaps.cam_maps import cam_cache_path
from core.heatmaps.overlay import OverlayStyle
from core.heatmaps.slide_heatmap import HeatmapParams, compute_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.slides.adjust import DisplayAdjustment, adjust_pixels
from core.store.schema import Slide

PROVENANCE = Provenance("patch-cnn", "0123456789abcdef" * 4, "Grad-CAM", {"overlap": 0.5, "cmap": "Viridis"}, seed=0,
                        created="2026-11-22T10:00:00+00:00")


def bar_figure() -> go.Figure:
    fig = go.Figure(go.Bar(x=["GG3", "GG4", "GG5"], y=[0.2, 0.5, 0.3]))
    fig.update_layout(title="Grade fractions", margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def test_provenance_caption_is_one_short_line():
    caption = PROVENANCE.caption()
    assert caption == "model patch-cnn (weights 0123456789…) · Grad-CAM · overlap=0.5, cmap=Viridis · seed 0 · 2026-11-22 10:00 UTC"
    assert "\n" not in caption
    assert PROVENANCE.as_dict()["weights_sha256"] == "0123456789abcdef" * 4
    assert Provenance("m", "").created.endswith("+00:00")  # defaults to now, in UTC


def test_model_provenance_takes_the_manifest_weights_hash(workspace):
    p = model_provenance(workspace, "patch-cnn", "Grad-CAM", {"overlap": 0.5}, seed=3)
    assert p.weights_sha256 == workspace.manifest("patch-cnn").weights_sha256 and len(p.weights_sha256) == 64
    assert p.seed == 3 and p.settings == {"overlap": 0.5}
    with pytest.raises(PathReviewError):
        model_provenance(workspace, "no-such-model")


def test_png_export_has_the_requested_size_and_its_provenance():
    data = export_figure(bar_figure(), "png", PROVENANCE, width=640, height=400, scale=2.0)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (1280, 800)
    assert image.text["Software"] == "PathReview" and image.text["Description"] == PROVENANCE.caption()
    assert read_provenance(data, "png") == PROVENANCE.as_dict()


def test_svg_export_is_xml_with_its_provenance():
    data = export_figure(bar_figure(), "svg", PROVENANCE, width=640, height=400)
    root = ElementTree.fromstring(data)
    assert root.tag.endswith("svg")
    assert read_provenance(data, "svg") == PROVENANCE.as_dict()
    assert "Grade fractions" in data.decode()


def test_pdf_export_opens_with_pypdf_and_carries_its_provenance():
    data = export_figure(bar_figure(), "pdf", PROVENANCE, width=640, height=400)
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    assert reader.metadata["/Creator"] == "PathReview" and reader.metadata["/Subject"] == PROVENANCE.caption()
    assert read_provenance(data, "pdf") == PROVENANCE.as_dict()


def test_export_without_provenance_embeds_none_and_the_caller_figure_is_untouched():
    fig = bar_figure()
    before = fig.to_dict()
    with_caption = export_figure(fig, "png", PROVENANCE, width=500, height=300, scale=1)
    plain = export_figure(fig, "png", None, width=500, height=300, scale=1)
    assert fig.to_dict() == before and len(fig.layout.annotations) == 0
    assert read_provenance(plain, "png") is None
    assert Image.open(io.BytesIO(plain)).size == Image.open(io.BytesIO(with_caption)).size == (500, 300)
    # The caption band is drawn: the two renders differ near the bottom edge.
    a = np.asarray(Image.open(io.BytesIO(plain)).convert("L"))[-30:]
    b = np.asarray(Image.open(io.BytesIO(with_caption)).convert("L"))[-30:]
    assert (a != b).any()


def test_bad_format_and_size_are_refused_with_a_clear_message():
    with pytest.raises(PathReviewError, match="png, svg, pdf"):
        export_figure(bar_figure(), "gif")
    with pytest.raises(PathReviewError):
        export_figure(bar_figure(), "png", width=0)
    with pytest.raises(PathReviewError):
        read_provenance(b"not a png", "png")
    assert set(MEDIA_TYPES) == set(FORMATS) and MEDIA_TYPES["svg"] == "image/svg+xml"


def test_export_filename_is_safe():
    assert export_filename("P001-S1 Grad-CAM (v2)", "png") == "P001-S1_Grad-CAM_v2.png"
    assert export_filename("../../etc/passwd", "pdf") == "etc_passwd.pdf"
    assert export_filename("///", "svg") == "figure.svg"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", export_filename("Gleason ≥ 4 · µm", "png"))
    with pytest.raises(PathReviewError):
        export_filename("x", "exe")


def test_exports_from_several_threads_share_one_browser_safely():
    results: dict[int, bytes] = {}

    def export(i: int) -> None:
        fig = bar_figure().update_layout(title=f"figure {i}")
        results[i] = export_figure(fig, "svg", None, width=400, height=300)

    threads = [threading.Thread(target=export, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 1, 2, 3]
    for i, data in results.items():  # each caller gets its own figure back, not a neighbour's
        assert f"figure {i}" in data.decode()


# --- slide figure ---


@pytest.fixture(scope="module")
def slide_and_heat(workspace):
    with workspace.store.session() as s:
        slide = s.scalars(select(Slide).where(Slide.mask_file.is_not(None)).order_by(Slide.id)).first()
        slide_id = slide.id
    heat = compute_heatmap(workspace, slide_id, "patch-cnn", HeatmapParams())
    return slide_id, heat, heat.slide_size


def figure_image(fig: go.Figure) -> np.ndarray:
    source = fig.data[0].source
    assert source.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).convert("RGB"))


def annotation_texts(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_slide_figure_region_has_its_aspect_and_the_overlay_shows(workspace, slide_and_heat):
    slide_id, heat, (width, height) = slide_and_heat
    region = SlideRegion(width // 8, height // 4, width // 2, height // 4)
    plain, plain_prov = slide_figure(workspace, slide_id, region=region, output_width=600)
    over, prov = slide_figure(workspace, slide_id, region=region, output_width=600, heat=heat, opacity=0.5)
    clear, _ = slide_figure(workspace, slide_id, region=region, output_width=600, heat=heat, opacity=0.0)
    a, b, c = figure_image(plain), figure_image(over), figure_image(clear)
    assert a.shape == (round(600 * region.height / region.width), 600, 3)  # the region's aspect (2:1 on a square slide, 4:1 on a biopsy)
    assert abs(a.shape[1] / a.shape[0] - region.width / region.height) < 0.01
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # the heatmap changed pixels
    assert np.array_equal(a, c)  # opacity 0 is no overlay
    caption = " ".join(annotation_texts(over))
    assert slide_id in caption and "patch-cnn" in caption and "opacity 0.5" in caption
    assert re.search(r"\b\d+(\.\d+)? (µm|mm)\b", " ".join(annotation_texts(plain)))  # scale bar label
    assert any(shape.type == "line" for shape in over.layout.shapes)
    assert any(getattr(t.marker, "showscale", False) for t in over.data[1:])  # a colour bar for P(tumour)
    assert prov.model_id == "patch-cnn" and prov.weights_sha256 == heat.weights_sha256
    assert prov.settings["opacity"] == 0.5 and prov.settings["layer"] == "tumour"
    assert plain_prov.model_id == ""
    assert not over.layout.xaxis.visible and over.layout.yaxis.scaleanchor == "x"


def test_slide_figure_shows_the_tissue_as_the_viewer_adjusts_it(workspace, slide_and_heat):
    slide_id, heat, (width, height) = slide_and_heat
    region = SlideRegion(0, 0, width // 2, height // 2)
    plain, plain_prov = slide_figure(workspace, slide_id, region=region, output_width=300)
    same, _ = slide_figure(workspace, slide_id, region=region, output_width=300, adjustment=DisplayAdjustment())
    gamma = DisplayAdjustment(gamma=2.0)
    lifted, prov = slide_figure(workspace, slide_id, region=region, output_width=300, adjustment=gamma)
    a, b = figure_image(plain), figure_image(lifted)
    assert np.array_equal(a, figure_image(same)) and plain_prov.settings == {}
    assert np.array_equal(b, adjust_pixels(a, gamma))  # the tiles' arithmetic, on the same pixels
    assert prov.settings["gamma"] == 2.0 and "gamma 2" in " ".join(annotation_texts(lifted))


def test_slide_figure_whole_slide_reads_a_pyramid_level_and_exports(workspace, slide_and_heat):
    slide_id, heat, (width, height) = slide_and_heat
    fig, prov = slide_figure(workspace, slide_id, output_width=400, heat=heat, style=OverlayStyle(layer="argmax"))
    image = figure_image(fig)
    assert image.shape[1] == 400 and abs(image.shape[0] - round(400 * height / width)) <= 1
    assert not any(getattr(t.marker, "showscale", False) for t in fig.data[1:])  # argmax: a legend, no colour bar
    assert {t.name for t in fig.data[1:]} <= {"Gleason pattern 3", "Gleason pattern 4", "Gleason pattern 5"} and len(fig.data) > 1
    png = export_figure(fig, "png", prov, width=fig.layout.width, height=fig.layout.height, scale=1)
    assert read_provenance(png, "png")["explainer"] == "grade (argmax)"


def test_slide_figure_computes_the_cam_layer_it_shows(workspace, slide_and_heat):
    slide_id, heat, (width, height) = slide_and_heat
    fig, prov = slide_figure(workspace, slide_id, region=SlideRegion(0, 0, width // 2, height // 2), output_width=300,
                             heat=heat, style=OverlayStyle(layer="cam:gradcam"))
    assert prov.explainer == "Grad-CAM" and "Grad-CAM" in " ".join(annotation_texts(fig))
    assert cam_cache_path(workspace, heat, "gradcam").is_file() and slide_layers(workspace, heat).ready("cam:gradcam")


def test_slide_region_validation(workspace, slide_and_heat):
    slide_id, heat, (width, height) = slide_and_heat
    with pytest.raises(PathReviewError, match="outside the slide"):
        slide_figure(workspace, slide_id, region=SlideRegion(width + 10, 0, 100, 100))
    with pytest.raises(PathReviewError):
        SlideRegion(0, 0, 0, 10)
    with pytest.raises(PathReviewError):
        SlideRegion(0, 0, -5, 10)
    with pytest.raises(PathReviewError):
        slide_figure(workspace, slide_id, opacity=1.5)
    with pytest.raises(PathReviewError, match="layer"):
        slide_figure(workspace, slide_id, heat=heat, style=OverlayStyle(layer="GG9"))
    assert SlideRegion(-50, -50, 200, 100).clipped(width, height) == SlideRegion(0, 0, 150, 50)


def test_viewport_region_inverts_the_map_bounds():
    max_zoom, width, height = 12, 4096, 3000
    scale = 2.0**max_zoom
    whole = [[-height / scale, 0.0], [0.0, width / scale]]  # as dashboard.components.slide_viewer.map_bounds
    assert viewport_region(whole, max_zoom) == SlideRegion(0, 0, width, height)
    view = {"_southWest": {"lat": -900 / scale, "lng": 100 / scale}, "_northEast": {"lat": -300 / scale, "lng": 700 / scale}}
    assert viewport_region(view, max_zoom) == SlideRegion(100, 300, 600, 600)
    with pytest.raises(PathReviewError):
        viewport_region("nonsense", max_zoom)


def test_scale_bar_lengths_are_nice():
    assert nice_scale_length(409.6) == 500
    assert nice_scale_length(120) == 100
    assert nice_scale_length(0.3) == 0.2
    assert nice_scale_length(1800) == 2000


# --- case report ---


def report_content(n_figures: int, reviews: list[dict] | None = None) -> CaseReportContent:
    figures = [ReportFigure(f"Figure {i}", bar_figure(), PROVENANCE if i % 2 == 0 else None, note=f"note {i}",
                            modality=("slide", "patient", "patient", "report")[i % 4]) for i in range(n_figures)]
    return CaseReportContent(
        patient_id="P-0042", workspace_name="demo", summary=[("Age", "64"), ("Sex", "M")],
        model_outputs=[{"subject": "slide P-0042-S1", "model_id": "patch-cnn", "weights_sha256": "ab" * 32,
                        "output": "P(GG≥4) = 0.83", "label": "GG4"}],
        reviews=reviews if reviews is not None else [
            {"modality": "slide", "verdict": "agree", "comment": "Tumour focus matches the heatmap <script>alert(1)</script>",
             "flags": ["stain artefact"], "signed_off": True, "user": "dr.rossi", "at": "2026-11-20 09:30", "version": 2}],
        figures=figures, modalities=[ModalitySummary("slide", [("Diagnosis", "slide P-0042-S1: P(GG≥4) = 0.83"),
                                                               ("Consensus", "one reviewer signed off (dr.rossi: agree)")])],
    )


def pdf_text(data: bytes, page: int = 0) -> str:
    return PdfReader(io.BytesIO(data)).pages[page].extract_text()


@pytest.mark.parametrize(("n_figures", "pages"), [(0, 2), (3, 2), (6, 4)])
def test_case_report_pdf_groups_figures_by_modality_up_to_four_a_page(n_figures, pages):
    calls = []
    data = case_report_pdf(report_content(n_figures), progress=lambda done, total: calls.append((done, total)))
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == pages  # the case page, then modalities packed at most four figures a page
    assert all(p.mediabox.width > p.mediabox.height for p in reader.pages)  # landscape
    first = pdf_text(data)
    assert "P-0042" in first and "Tumour focus matches the heatmap" in first and "dr.rossi" in first
    assert "P(GG≥4) = 0.83" in first and "abababababab" in first
    assert calls == [(i, n_figures) for i in range(1, n_figures + 1)]
    second = pdf_text(data, 1)
    assert "Slide" in second and "Diagnosis" in second and "dr.rossi: agree" in second
    if n_figures:
        assert "Fig. 1 · Figure 0" in second and "note 0" in second
        assert reader.pages[1].images  # the rendered figure
        on_page = [n for n in range(1, n_figures + 1) if f"Fig. {n} · Figure {n - 1}" in second]
        for number in on_page:  # a figure with provenance (the even ones): once, in the footer, not under the figure
            assert second.count(f"Fig. {number}: {PROVENANCE.caption()[:40]}") == (1 if number % 2 == 1 else 0)
        record = json.loads(reader.metadata["/Keywords"])
        assert [f["provenance"] is not None for f in record["figures"]] == [i % 2 == 0 for i in range(n_figures)]


def test_case_report_pdf_keeps_page_one_to_one_page_with_many_reviews():
    reviews = [{"modality": m, "verdict": "uncertain", "comment": f"entry {v} " + "a long comment " * 80, "flags": ["x"],
                "signed_off": False, "user": "dr.b", "at": f"2026-11-{v:02d} 10:00", "version": v}
               for m in ("slide", "patient", "report") for v in range(1, 11)]
    data = case_report_pdf(report_content(1, reviews))
    assert len(PdfReader(io.BytesIO(data)).pages) == 2  # the case page, shrunk to one page, and the slide page
    first = pdf_text(data)
    assert "27 earlier entries" in first
    assert "entry 10" in first and "entry 9 " not in first  # only the latest per modality
    assert "…" in first  # long comments are cut


def test_case_report_html_is_self_contained_and_escaped():
    calls = []
    page = case_report_html(report_content(2), progress=lambda done, total: calls.append(done))
    assert page.startswith("<!DOCTYPE html>") and calls == [1, 2]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('src="data:image/svg+xml;base64,') == 2
    assert "P-0042" in page and "P(GG≥4) = 0.83" in page and PROVENANCE.caption() in page


def test_region_pixels_match_openslide_and_strips_leave_no_seams(workspace, slide_and_heat, monkeypatch):
    from core.export import slide_image
    from core.slides.reader import open_slide
    from core.slides.tiles import slide_file_path

    slide_id, _, (width, height) = slide_and_heat
    slide = open_slide(slide_file_path(workspace, slide_id))
    try:
        region = SlideRegion(width // 3, height // 3, 320, 200)
        exact = slide_image.read_region_rgb(slide, region, 320, 200)  # 1:1 at level 0
        direct = np.asarray(slide.read_region((region.x, region.y), 0, (320, 200)).convert("RGB"))
        assert np.abs(exact.astype(int) - direct.astype(int)).max() <= 1
        whole = SlideRegion(0, 0, width, height)
        one_read = slide_image.read_region_rgb(slide, whole, 300, round(300 * height / width))
        monkeypatch.setattr(slide_image, "STRIP_LEVEL_PIXELS", 20_000)  # forces many strips
        strips = slide_image.read_region_rgb(slide, whole, 300, round(300 * height / width))
        assert np.abs(one_read.astype(int) - strips.astype(int)).max() <= 2
    finally:
        slide.close()


def test_case_figures_refuse_a_foreign_slide_and_show_the_cached_lime_explanation(workspace):
    from core.errors import NotFoundError
    from core.explain.patient_explanations import PatientExplainers
    from core.explain.report_explanations import lime_cache_path, report_explanation, report_model_id, stored_report_text
    from core.explain.text import LimeSettings
    from core.export.case_figures import CaseView, case_figure
    from core.export.report_figures import word_weight_figure
    from core.store.schema import Report

    explainers = PatientExplainers(workspace)
    with workspace.store.session() as s:
        slide = s.scalars(select(Slide).order_by(Slide.id)).first()
        report = s.scalars(select(Report).order_by(Report.id)).first()
        other_patient = s.scalar(select(Slide.patient_id).where(Slide.patient_id != slide.patient_id).limit(1))
    with pytest.raises(NotFoundError, match=f"not part of case {other_patient}"):
        case_figure(workspace, explainers, "slide", CaseView(patient_id=other_patient, slide_id=slide.id))

    settings = LimeSettings(num_samples=300)
    model_id, text = report_model_id(workspace), stored_report_text(workspace, report.id)
    shown = report_explanation(workspace, model_id, text, settings)[0]  # what the report panel showed
    assert lime_cache_path(workspace, model_id, text, settings).is_file()
    figure = case_figure(workspace, explainers, "lime", CaseView(patient_id=report.patient_id, report_id=report.id,
                                                                  lime={"num_samples": 300}))
    assert f"p = {shown.predicted.probability:.3f}" in figure.note and shown.predicted.class_name in figure.note
    expected = word_weight_figure(shown, settings.num_features)
    assert [list(t.x) for t in figure.figure.data] == [list(t.x) for t in expected.data] and len(figure.figure.data[0].x) > 0
    assert [list(t.y) for t in figure.figure.data] == [list(t.y) for t in expected.data]


def test_an_exported_waterfall_names_its_shap_background(workspace):
    from core.explain.patient_explanations import PatientExplainers
    from core.export.case_figures import CaseView, case_figure

    explainers = PatientExplainers(workspace)
    with workspace.store.session() as s:
        patient = s.scalar(select(Slide.patient_id).order_by(Slide.patient_id).limit(1))
    for kind in ("zero", "cohort", "sampled"):
        figure = case_figure(workspace, explainers, "waterfall", CaseView(patient_id=patient, visit=0, background=kind))
        expected = explainers.explain(patient, background=kind)
        stored = read_provenance(export_figure(figure.figure, "png", figure.provenance, width=600, height=400, scale=1.0), "png")
        assert stored["settings"]["background"] == kind
        assert stored["settings"]["background_visits"] == expected.background.description
        assert stored["settings"]["expected_value"] == pytest.approx(float(expected.shap.base[0]), abs=1e-6)
        assert expected.background.description in figure.note and f"{expected.shap.base[0]:.3f}" in figure.note


def test_the_case_page_exports_the_slide_as_its_viewer_adjusts_it(workspace):
    from core.export.case_figures import CaseView, case_figure
    from dashboard.components.case_export import case_view

    with workspace.store.session() as s:
        slide = s.scalars(select(Slide).order_by(Slide.id)).first()
        patient_id, slide_id = slide.patient_id, slide.id
    view = case_view({"patient_id": patient_id, "slide_id": slide_id, "region_mode": "slide", "width": 300,
                      "parts": [{"gamma": 2, "brightness": 1, "contrast": None}]})
    assert view.adjustment == {"gamma": 2, "brightness": 1}
    plain = case_figure(workspace, None, "slide", CaseView(patient_id=patient_id, slide_id=slide_id, output_width=300))
    lifted = case_figure(workspace, None, "slide", view)
    assert np.array_equal(figure_image(lifted.figure), adjust_pixels(figure_image(plain.figure), DisplayAdjustment(gamma=2.0)))
    assert lifted.provenance.settings["gamma"] == 2.0
    with pytest.raises(PathReviewError, match="gamma '9' is outside"):
        case_figure(workspace, None, "slide", CaseView(patient_id=patient_id, slide_id=slide_id, output_width=300, adjustment={"gamma": 9}))


def test_the_case_reports_thumbnail_of_the_shown_slide_is_adjusted_as_viewed(workspace):
    from core.export.slide_thumbnail import slide_thumbnail

    with workspace.store.session() as s:
        slide_id = s.scalars(select(Slide.id).order_by(Slide.id)).first()
    plain, plain_caption = slide_thumbnail(workspace, slide_id, width=120)
    lifted, caption = slide_thumbnail(workspace, slide_id, width=120, adjustment=DisplayAdjustment(gamma=2.0))
    a, b = (np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int) for png in (plain, lifted))
    assert a.shape == b.shape and b.mean() > a.mean() + 5  # gamma 2 lifts the mid-tones
    assert "gamma 2" in caption and "gamma" not in plain_caption
