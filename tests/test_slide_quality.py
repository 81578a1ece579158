"""Slide quality control and stain normalisation on the demo: measured in the heatmap's pass and stored, drawn as
layers, left out on request, summarised per case for the worklist; the patch model's declared Macenko normalisation
applied in inference and in the tiles; and what it costs or gains on held-out slides."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from core.demo.patch_dataset import PATCH_MPP, PATCH_PX, slide_patches
from core.demo.slide_synthesis import BASE_MPP
from core.demo.train_patch import held_out_auc_with_and_without_normalisation
from core.heatmaps.inference import classify_patches
from core.heatmaps.overlay import _LAYER_CACHE as overlay_grids
from core.heatmaps.overlay import QC_COLOURS, OverlayStyle, grade_fractions, layer_grid, render_overlay_tile
from core.heatmaps.patch_inspection import read_heatmap_patches
from core.heatmaps.quality_layers import kept_mil_probability, quality_summary, record_slide_quality
from core.heatmaps.slide_heatmap import compute_heatmap
from core.heatmaps.slide_layers import slide_layers
from core.slides.quality import FLAGS, PatchQuality, load_quality, quality_cache_path
from core.slides.slide_stain import estimate_stain, slide_input, tissue_sample
from core.slides.tiles import TileService
from core.store.cohort import cohort_page, worklist_counts
from core.store.schema import Slide, SlideQuality
from core.workspace import open_workspace
from dashboard.pages.cohort import _display, scored_models
from tests.helpers import copy_demo

SLIDE = "P004-S1"


@pytest.fixture(scope="module")
def own(demo_workspace, tmp_path_factory):
    """A copy of the demo with this module's slide: its cache and case store are written here, never the shared ones."""
    return open_workspace(copy_demo(demo_workspace, tmp_path_factory.mktemp("quality") / "ws", slides=(SLIDE,), keep_cache=False))


@pytest.fixture(scope="module")
def heat(own):
    return compute_heatmap(own, SLIDE, "patch-cnn")


def test_the_demo_patch_model_declares_macenko(workspace):
    spec = workspace.manifest("patch-cnn").input
    assert spec.stain_normalisation == "macenko" and spec.stain_fit == "slide" and spec.stain_source is None
    assert len(spec.stain_target.stain_matrix) == 3 and len(spec.stain_target.max_concentrations) == 2
    assert spec.stain_statistics is not None and spec.stain_statistics.n_patches > 100


def test_inference_applies_the_declared_normalisation(own, heat):
    model = own.model("patch-cnn")
    idx = list(range(min(24, len(heat.probs))))
    patches = read_heatmap_patches(own, heat, idx)
    bound = slide_input(own, SLIDE, model.manifest.input)
    with own.store.session() as s:
        file = s.get(Slide, SLIDE).file
    # The slide's stains: estimated once, from an even sample of its tissue patches, and kept in the workspace cache.
    assert bound.stain_source == estimate_stain(tissue_sample(own.slides_dir / file, BASE_MPP, PATCH_PX, PATCH_MPP), "macenko")
    assert len(list((own.cache_dir / "stain").glob("*.json"))) == 1
    declared = classify_patches(model.module, model.device, patches, 8, bound)
    per_patch = classify_patches(model.module, model.device, patches, 8, model.manifest.input.model_copy(update={"stain_fit": "patch"}))
    raw = classify_patches(model.module, model.device, patches, 8)
    assert np.allclose(heat.probs[idx], declared, atol=1e-4)
    assert not np.allclose(heat.probs[idx], raw, atol=1e-3)
    assert not np.allclose(heat.probs[idx], per_patch, atol=1e-3)
    with pytest.raises(ValueError, match="per slide"):  # the unbound spec never reads a slide's patches by mistake
        classify_patches(model.module, model.device, patches, 8, model.manifest.input)


def test_quality_is_measured_in_the_heatmaps_pass_and_drawn_as_layers(own, heat):
    quality = load_quality(quality_cache_path(own.cache_dir, heat.key))
    assert quality is not None and len(quality.metrics) == len(heat.probs)
    layers = slide_layers(own, heat)
    assert all(layers.ready(f"quality-map:{flag}") for flag in FLAGS)
    summary = quality_summary(layers)
    assert summary is not None and summary.total == len(heat.probs)
    assert all(0.0 <= summary.tissue_fraction[f] <= 1.0 for f in FLAGS)
    for flag in FLAGS:
        grid = layer_grid(layers, OverlayStyle(layer=f"qc:{flag}"))
        assert grid.shape == heat.cell_shape and np.isnan(grid[~heat.tissue]).all()
    png = Image.open(io.BytesIO(render_overlay_tile(layers, OverlayStyle(layer="qc:blur"), 0, 0, 0, 0)))
    assert png.mode == "RGBA"


def test_flagged_patches_are_left_out_on_request(own, heat, tmp_path: Path):
    """Mark a third of the patches out of focus: the kept maps, grade percentages and MIL prediction leave them out."""
    layers = slide_layers(own, heat)
    n = len(heat.probs)
    metrics = np.tile([1000.0, 0.0, 0.0], (n, 1))
    blurred = np.arange(n) % 3 == 0
    metrics[blurred, 0] = 1.0
    forged = PatchQuality(metrics, np.full((n, 6), np.nan))
    from core.slides.quality import save_quality

    path = quality_cache_path(own.cache_dir, heat.key)
    original = load_quality(path)
    save_quality(path, forged)
    overlay_grids.clear()  # drawn grids are kept by heatmap key: stored measures never change outside a test
    try:
        fresh = type(layers)(own, heat)  # a new owner reads the stored measures
        summary = quality_summary(fresh)
        assert summary.flagged["blur"] == blurred.sum() and summary.excluded == blurred.sum()
        kept = fresh.get("kept-reconstruction:overlap")
        from core.heatmaps.reconstruct import reconstruct_overlap_mean
        from core.slides.grid import CELLS_PER_PATCH

        expected = reconstruct_overlap_mean(heat.probs[~blurred], heat.cell_index[~blurred], CELLS_PER_PATCH, heat.cell_shape)
        assert np.allclose(kept, expected, equal_nan=True)
        fractions = grade_fractions(fresh, "overlap", "exclude")
        assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-3)
        grid = layer_grid(fresh, OverlayStyle(layer="qc:blur"))
        assert np.nanmax(grid) == 1.0
        geometry = TileService(own).geometry(SLIDE)
        # The Deep Zoom level whose tile (0, 0) holds the whole slide: at level 0 the slide is one pixel.
        whole = geometry.max_zoom - int(np.ceil(np.log2(max(geometry.width, geometry.height) / geometry.tile_size)))
        tile = np.asarray(Image.open(io.BytesIO(render_overlay_tile(fresh, OverlayStyle(layer="qc:blur"), whole, 0, 0, geometry.max_zoom))))
        assert (tile[..., :3] == QC_COLOURS["blur"]).all(-1).any()  # flagged cells wear the legend's colour
        mil = [m for m, man in own.manifests.items() if man.task == "mil"][0]
        assert 0.0 <= kept_mil_probability(fresh, mil) <= 1.0
    finally:
        save_quality(path, original)
        overlay_grids.clear()


def test_tiles_show_what_the_model_sees(workspace):
    tiles = TileService(workspace)
    z = tiles.geometry(SLIDE).max_zoom - 2
    raw = np.asarray(Image.open(io.BytesIO(tiles.tile_jpeg(SLIDE, z, 1, 1))))
    seen = np.asarray(Image.open(io.BytesIO(tiles.tile_jpeg(SLIDE, z, 1, 1, "patch-cnn"))))
    assert raw.shape == seen.shape and np.abs(raw.astype(int) - seen).mean() > 1.0


def test_tile_route_normalises_for_a_known_model_only(client):
    assert client.get(f"/slides/{SLIDE}/tiles/0/0/0.jpeg?normalise=patch-cnn").status_code == 200
    assert client.get(f"/slides/{SLIDE}/tiles/0/0/0.jpeg?normalise=no-such-model").status_code == 404
    assert client.get(f"/slides/{SLIDE}/tiles/0/0/0.jpeg?normalise=../x").status_code == 404


def test_worklist_shows_the_worst_flag_and_filters_by_it(own, heat):
    quality = load_quality(quality_cache_path(own.cache_dir, heat.key))
    record_slide_quality(own, heat, quality)
    models = scored_models(own)
    with own.store.session() as s:
        patient = s.scalar(select(Slide.patient_id).where(Slide.id == SLIDE))
        other_slide, other = s.execute(select(Slide.id, Slide.patient_id).where(Slide.patient_id != patient).order_by(Slide.id)).first()
        s.add(SlideQuality(heatmap_key="f" * 32, slide_id=other_slide, patient_id=other, model_id="patch-cnn",
                           worst_flag="pen", worst_fraction=0.2, fractions={"pen": 0.2}))
    with own.store.session() as s:
        # Displayed as the page shows them, without grade comparisons, attribute columns (cohort_page was asked for none)
        # or disagreeing pairs.
        rows = {r["patient_id"]: _display(dict(r), {}, {}, [], {}) for r in cohort_page(s, models, 0, 500).rows}
        flagged = {r["patient_id"] for r in cohort_page(s, models, 0, 500, worklist="qc").rows}
        counts = worklist_counts(s, models)
        measured = set(s.scalars(select(SlideQuality.patient_id)))
    assert rows[other]["qc"] == "Pen ink 20%"
    assert rows[patient]["qc"] != "not run"  # computed with the heatmap: "clean" or its worst flag
    assert other in flagged and counts["qc"] == len(flagged)
    assert all(rows[p]["qc"] not in ("not run", "clean") for p in flagged)
    assert all((p in measured) != (v["qc"] == "not run") for p, v in rows.items())


TRAINING_SEEDS = (1, 2, 3)  # one CNN's held-out AUC moves by about 0.01 with its seed: the claim is on their mean


@pytest.fixture(scope="module")
def held_out_aucs(workspace, held_out) -> tuple[list[float], list[float]]:
    """Held-out AUCs (one per training seed) of the patch CNN trained and scored with Macenko fitted per slide, and of the
    same without, at the demo's own training size, on the demo's held-out patients: the lab's own and referred men."""
    with workspace.store.session() as s:
        slides = list(s.scalars(select(Slide).order_by(Slide.id)))
    train, test, sources = [], [], {}
    for slide in slides:
        labels = np.asarray(Image.open(workspace.slides_dir / slide.mask_file))
        patches = slide_patches(slide.id, workspace.slides_dir / slide.file, labels)
        sources[slide.id] = estimate_stain(tissue_sample(workspace.slides_dir / slide.file, BASE_MPP, PATCH_PX, PATCH_MPP), "macenko")
        (test if slide.patient_id in held_out else train).append(patches)
    return held_out_auc_with_and_without_normalisation(train, test, sources, per_class=1000, epochs=4, seeds=TRAINING_SEEDS)


# Measured on the demo (seeds 1, 2, 3): 0.986 / 0.983 / 0.985 with Macenko per slide, 0.970 / 0.912 / 0.982 without.
NORMALISATION_COST = 0.01  # what a normalisation may lose on one seed; one that loses what tells the patterns apart loses more


def test_normalisation_costs_little_held_out_auc(held_out_aucs):
    for with_norm, without in zip(*held_out_aucs):
        assert with_norm >= without - NORMALISATION_COST


def test_normalisation_raises_held_out_auc(held_out_aucs):
    """The referred men's slides were stained darker or paler than any the CNN was trained on: read through the
    declared normalisation they are classified as well as the lab's own; read as scanned, less well."""
    with_norm, without = held_out_aucs
    assert np.mean(with_norm) > np.mean(without)
