"""Reviewers' tumour regions as the ground truth of the Dice / F1+ / F1− comparison, on the heatmap's cell grid.

The source is one reviewer's tumour regions (``reviewer:<name>``) or the consensus (``consensus:union`` or
``consensus:majority``, ``core.annotations.agreement``). A cell is tumour when its centre lies in the region
(``core.annotations.statistics.region_cells``); nothing is rasterised at full resolution.
"""

from __future__ import annotations

import numpy as np

from core.annotations.agreement import CONSENSUS_RULES, consensus, tumour_by_reviewer
from core.annotations.statistics import region_cells
from core.errors import PathReviewError
from core.heatmaps.groundtruth import TUMOUR_LABEL_MIN, mask_on_cells, read_label_mask
from core.heatmaps.slide_heatmap import SlideHeatmap
from core.store.annotations import current_regions
from core.store.cases import slide_record
from core.workspace import Workspace

MASK_SOURCE = "mask"


def truth_sources(workspace: Workspace, slide_id: str, has_mask: bool) -> list[dict[str, str]]:
    """The ground truths a slide offers, as dropdown options: its mask, each reviewer with tumour regions, the consensus."""
    reviewers = list(tumour_by_reviewer(current_regions(workspace.store, slide_id), workspace.config.annotation_classes))
    options = [{"label": "ground-truth mask", "value": MASK_SOURCE}] if has_mask else []
    options += [{"label": f"{name}'s tumour regions", "value": f"reviewer:{name}"} for name in reviewers]
    if len(reviewers) > 1:
        options += [{"label": f"consensus of tumour regions ({rule})", "value": f"consensus:{rule}"} for rule in CONSENSUS_RULES]
    return options


def annotation_truth(workspace: Workspace, slide_id: str, source: str, cell_level0: float, shape: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool: the cells inside the chosen reviewer's or the consensus tumour region."""
    by_reviewer = tumour_by_reviewer(current_regions(workspace.store, slide_id), workspace.config.annotation_classes)
    kind, _, name = source.partition(":")
    if kind == "reviewer" and name in by_reviewer:
        region = by_reviewer[name]
    elif kind == "consensus" and name in CONSENSUS_RULES and by_reviewer:
        region = consensus(by_reviewer, name)
    else:
        raise PathReviewError(f"no tumour regions for {source!r} on slide {slide_id}; choose another ground truth")
    return region_cells(region, cell_level0, shape)


def truth_cells(workspace: Workspace, heat: SlideHeatmap, slide_id: str, source: str) -> np.ndarray:
    """The chosen ground truth on the heatmap's cell grid: the slide's mask resampled (tumour labels), or reviewers'
    tumour regions (``annotation_truth``)."""
    if source != MASK_SOURCE:
        return annotation_truth(workspace, slide_id, source, heat.cell_level0, heat.cell_shape)
    with workspace.store.session() as s:
        record = slide_record(s, slide_id)
        if not record.mask_file or not record.mask_mpp:
            raise PathReviewError("this slide has no ground-truth mask; choose reviewers' tumour regions instead")
        labels, mask_mpp = read_label_mask(workspace.slides_dir / record.mask_file), record.mask_mpp
    return mask_on_cells(labels, mask_mpp, heat.cell_um, heat.cell_shape) >= TUMOUR_LABEL_MIN


def truth_label(source: str) -> str:
    """A ground truth in words, for the scores' heading."""
    kind, _, name = source.partition(":")
    return {"mask": "the ground-truth mask", "reviewer": f"{name}'s tumour regions",
            "consensus": f"the {name} consensus of tumour regions"}.get(kind, source)
