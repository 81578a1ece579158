"""One patch under the microscope: its pixels at model resolution, class probabilities,
MC-dropout spread and class activation maps by every method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.explain.cam import METHODS, class_activation_maps
from core.heatmaps.slide_heatmap import SlideHeatmap
from core.slides.grid import PatchGrid
from core.slides.patches import read_patches
from core.slides.slide_stain import slide_input
from core.slides.stain import normalise_stain
from core.store.cases import slide_record
from core.workspace import Workspace


@dataclass
class PatchInspection:
    index: int
    origin: tuple[int, int]  # level-0 top-left
    image: np.ndarray  # (px, px, 3) uint8, what the model reads (stain-normalised when its manifest says so)
    class_names: list[str]
    probabilities: np.ndarray  # (C,)
    mc_mean: np.ndarray  # (C,) mean over MC-dropout passes
    mc_std: np.ndarray  # (C,)
    target_class: str
    maps: dict[str, np.ndarray]  # method -> raw (h, w) map for the target class


def read_heatmap_patches(workspace: Workspace, heatmap: SlideHeatmap, indices: list[int]) -> np.ndarray:
    """Patches of a heatmap's grid at model resolution, as the model read them: uint8 (n, px, px, 3)."""
    manifest = workspace.manifest(heatmap.model_id)
    with workspace.store.session() as s:
        path = workspace.slides_dir / slide_record(s, heatmap.slide_id).file
    grid = PatchGrid(heatmap.slide_size[0], heatmap.slide_size[1], heatmap.slide_mpp, *manifest.patch_geometry(),
                     heatmap.params.overlap, heatmap.origins, heatmap.cell_index, np.ones(len(heatmap.origins)))
    return read_patches(path, grid, np.asarray(indices))


def inspect_patch(workspace: Workspace, heatmap: SlideHeatmap, index: int, target_class: str | None = None,
                  methods: tuple[str, ...] = METHODS, mc_passes: int = 30, seed: int = 0) -> PatchInspection:
    model = workspace.model(heatmap.model_id)
    manifest = model.manifest
    raw = read_heatmap_patches(workspace, heatmap, [index])
    seen = normalise_stain(torch.from_numpy(raw).to(model.device), slide_input(workspace, heatmap.slide_id, manifest.input))  # as declared
    x = seen.permute(0, 3, 1, 2).float().div(255)
    image = seen[0].cpu().numpy()
    net = model.module
    with torch.no_grad():
        probs = torch.softmax(net(x), 1)[0].cpu().numpy()
        torch.manual_seed(seed)
        dropouts = [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]
        for m in dropouts:
            m.train()  # Monte Carlo dropout
        try:
            samples = torch.softmax(net(x.expand(mc_passes, -1, -1, -1)), 1).cpu().numpy()
        finally:
            for m in dropouts:
                m.eval()
    names = list(manifest.class_names)
    target = target_class if target_class in names else names[int(probs.argmax())]
    cls = torch.tensor([names.index(target)], device=model.device)
    maps = {m: class_activation_maps(net, x, cls, m, manifest.cam_target_layer)[0].detach().cpu().numpy() for m in methods}
    x0, y0 = (int(v) for v in heatmap.origins[index])
    return PatchInspection(index, (x0, y0), image, names, probs, samples.mean(0),
                           samples.std(0), target, maps)
