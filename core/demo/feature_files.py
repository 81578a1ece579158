"""The demo as a CLAM lab would bring it: the patch CNN's embeddings written as CLAM feature files (``patches/<slide>.h5``
with CLAM's coords attributes, ``h5_files/<slide>.h5`` with ``features`` and level-0 ``coords``), registered as a
feature set, and an ABMIL and a CLAM-SB head trained on them and saved as lab models that name the set and the encoder
(the patch CNN's trunk, through a ``package.module:factory``), so region refinement works on the demo too."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from sqlalchemy import select
from torch import nn

from core.demo.patch_dataset import PATCH_MPP, PATCH_PX, SlidePatches
from core.demo.reproducible import reproducible_torch
from core.demo.slide_synthesis import BASE_MPP
from core.features.feature_sets import register_feature_set
from core.heatmaps.feature_layers import compute_slide_prediction
from core.models.clam import ABMIL, CLAMSB, AttentionMIL
from core.models.manifest import read_manifest
from core.models.metrics import binary_metrics
from core.models.patch_cnn import PatchResNet
from core.models.registry import file_sha256, save_model
from core.slides.reader import level_for_downsample, open_slide
from core.store.database import CaseStore
from core.store.schema import ModelRecord, Prediction, Slide
from core.workspace import Workspace, WorkspaceConfig

FEATURE_SET = "demo-patch-cnn"
ENCODER_NAME = "demo patch CNN (ResNet-style, 128-d)"
ENCODER_LICENCE = "CC0-1.0 (synthetic demo model, trained in the build)"
CLASS_NAMES = ["no pattern 4/5", "pattern 4/5 present"]
EPOCHS = 5
CLAM_BAG_WEIGHT = 0.7  # CLAM main.py default: loss = 0.7 * bag loss + 0.3 * instance loss


class PatchCNNEncoder(PatchResNet):
    """The demo patch CNN as a patch encoder: RGB in [0, 1] -> its pooled 128-d embedding (the demo heads' input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def patch_cnn_encoder(**params: object) -> nn.Module:
    """``core.demo.feature_files:patch_cnn_encoder``: the factory the demo heads' manifests name for their encoder."""
    return PatchCNNEncoder(**params)  # type: ignore[arg-type]


def _write_rows(fh: h5py.File, key: str, values: np.ndarray) -> h5py.Dataset:
    """As CLAM ``utils/file_utils.py`` save_hdf5 creates a dataset: resizable, chunked by 32 rows."""
    return fh.create_dataset(key, shape=values.shape, maxshape=(None,) + values.shape[1:], chunks=(32,) + values.shape[1:],
                             dtype=values.dtype, data=values)


def write_clam_files(out: Path, slide_id: str, slide_path: Path, features: np.ndarray, grid_rc: np.ndarray) -> None:
    """CLAM's ``patches/<slide>.h5`` (create_patches_fp) and ``h5_files/<slide>.h5`` (extract_features_fp) for one slide."""
    side0 = int(round(PATCH_PX * PATCH_MPP / BASE_MPP))
    coords = np.stack([grid_rc[:, 1] * side0, grid_rc[:, 0] * side0], axis=1)
    slide = open_slide(slide_path)
    try:
        level = level_for_downsample(slide, side0 / PATCH_PX)
        downsample = float(slide.level_downsamples[level])
        level_dim, level0_dim = slide.level_dimensions[level], slide.level_dimensions[0]
    finally:
        slide.close()
    (out / "patches").mkdir(parents=True, exist_ok=True)
    (out / "h5_files").mkdir(parents=True, exist_ok=True)
    with h5py.File(out / "patches" / f"{slide_id}.h5", "w") as fh:
        dset = _write_rows(fh, "coords", coords.astype(np.int64))
        # wsi_core/WholeSlideImage.py process_contour's attributes: patch size at the read level, that level, its downsample
        dset.attrs.update({"patch_size": int(round(side0 / downsample)), "patch_level": level, "downsample": (downsample, downsample),
                           "downsampled_level_dim": tuple(level_dim), "level_dim": tuple(level0_dim), "name": slide_id,
                           "save_path": str(out / "patches")})
    with h5py.File(out / "h5_files" / f"{slide_id}.h5", "w") as fh:  # attr_dict=None: no attributes
        _write_rows(fh, "features", features.astype(np.float32))
        _write_rows(fh, "coords", coords.astype(np.int32))


def _bag_logits(head: AttentionMIL, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, softmaxed attention (N,), h (N, hidden)), as CLAM's forward computes them."""
    h = head.attention_net[:3](bag)
    raw = head.attention_net[3](h).T  # (1, N)
    weights = torch.softmax(raw, dim=1)
    return head.bag_logits(weights @ h), weights[0], h


def clam_instance_loss(head: CLAMSB, weights: torch.Tensor, h: torch.Tensor, label: int) -> torch.Tensor:
    """CLAM ``inst_eval`` for the slide's own class: the k most attended patches labelled 1 and the k least attended 0
    for that class's instance classifier (cross-entropy, CLAM's ``inst_loss='ce'``); non-subtyping, so no out-of-class term."""
    k = min(head.k_sample, len(weights) // 2)
    top, bottom = torch.topk(weights, k).indices, torch.topk(-weights, k).indices
    logits = head.instance_classifiers[label](torch.cat([h[top], h[bottom]]))
    targets = torch.cat([torch.ones(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)])
    return nn.functional.cross_entropy(logits, targets)


def train_head(head: AttentionMIL, bags: list[np.ndarray], labels: np.ndarray, seed: int) -> AttentionMIL:
    """CLAM's training step, one bag at a time, on one CPU thread: bags of a few hundred patches are too small for
    several threads, which only wait on each other (four times slower on two shared cores)."""
    with reproducible_torch(threads=1):
        return _train(head, bags, labels, seed)


def _train(head: AttentionMIL, bags: list[np.ndarray], labels: np.ndarray, seed: int) -> AttentionMIL:
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(head.parameters(), lr=2e-4, weight_decay=1e-5)  # CLAM main.py defaults
    tensors = [torch.from_numpy(b).float() for b in bags]
    head.train()
    for _ in range(EPOCHS):
        for i in torch.randperm(len(tensors)).tolist():
            logits, weights, h = _bag_logits(head, tensors[i])
            loss = nn.functional.cross_entropy(logits[None], torch.tensor([int(labels[i])]))
            if isinstance(head, CLAMSB) and len(weights) >= 2:
                loss = CLAM_BAG_WEIGHT * loss + (1 - CLAM_BAG_WEIGHT) * clam_instance_loss(head, weights, h, int(labels[i]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return head.eval()


def write_demo_feature_heads(root: Path, store: CaseStore, cnn_id: str, bags: dict[str, np.ndarray], patches: dict[str, SlidePatches],
                             labels: dict[str, int], test_slides: set[str], scored_only: set[str], seed: int,
                             say: Callable[[str], None]) -> list[str]:
    """Write the CLAM files, register them, train the two heads on every slide neither held out nor ``scored_only``,
    save them and store their slide readings; return the heads' ids."""
    bags = {s: b for s, b in bags.items() if len(b)}  # CLAM writes no feature file for a slide without tissue patches
    (root / "cache").mkdir(mode=0o700, exist_ok=True)
    workspace = Workspace(root, WorkspaceConfig(name="demo build"), store, {})
    with tempfile.TemporaryDirectory(prefix="clam-") as tmp:
        for slide_id, bag in bags.items():
            write_clam_files(Path(tmp), slide_id, root / "slides" / f"{slide_id}.tiff", bag, patches[slide_id].grid_rc)
        register_feature_set(root, store, FEATURE_SET, ENCODER_NAME, "clam_h5", Path(tmp), {s: s for s in bags})
    say(f"CLAM feature files registered as feature set {FEATURE_SET}: {len(bags)} slides")
    cnn_dir = root / "models" / cnn_id
    cnn = read_manifest(cnn_dir)
    ids = list(bags)
    train = [s for s in ids if s not in test_slides and s not in scored_only and len(bags[s])]
    test = [s for s in ids if s in test_slides and len(bags[s])]
    dim = next(iter(bags.values())).shape[1]
    heads = [("clam-sb-features", "CLAM-SB", CLAMSB(gate=True, size_arg="small", dropout=0.25, k_sample=8, n_classes=2, embed_dim=dim),
              {"gate": True, "size_arg": "small", "dropout": 0.25, "k_sample": 8, "n_classes": 2, "embed_dim": dim}, "clam_sb"),
             ("abmil-features", "ABMIL", ABMIL(gate=True, size_arg="small", dropout=0.25, n_classes=2, embed_dim=dim),
              {"gate": True, "size_arg": "small", "dropout": 0.25, "n_classes": 2, "embed_dim": dim}, "abmil")]
    saved = []
    for model_id, label, head, params, architecture in heads:
        torch.manual_seed(seed)
        head = train_head(head, [bags[s] for s in train], np.array([labels[s] for s in train]), seed)
        with torch.no_grad():
            scores = np.array([float(torch.softmax(head.explain(torch.from_numpy(bags[s]).float())[0], 0)[1]) for s in test])
        folder = root / "models" / model_id
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cnn_dir / cnn.weights, folder / "encoder.safetensors")
        manifest = save_model(folder, {
            "id": model_id, "name": f"Slide: pattern 4/5 present ({label} over CLAM feature files)",
            "description": f"{label} head trained on the demo's CLAM-format feature files (feature set {FEATURE_SET}), registered "
                           "as a lab's CLAM project would be.",
            "task": "mil", "architecture": architecture, "params": params, "class_names": CLASS_NAMES,
            "positive_class": CLASS_NAMES[1], "feature_set": FEATURE_SET,
            "patch_encoder": {"name": ENCODER_NAME, "architecture": "core.demo.feature_files:patch_cnn_encoder",
                              "params": dict(cnn.params), "weights": "encoder.safetensors",
                              "weights_sha256": file_sha256(folder / "encoder.safetensors"), "licence": ENCODER_LICENCE,
                              "patch_size_px": PATCH_PX, "mpp": PATCH_MPP, "channel_mean": (0.0, 0.0, 0.0), "channel_std": (1.0, 1.0, 1.0),
                              "stain_normalisation": cnn.input.stain_normalisation, "stain_target": cnn.input.stain_target.model_dump(),
                              "stain_fit": cnn.input.stain_fit},
            "metrics": binary_metrics(np.array([labels[s] for s in test]), scores, split="held-out patients' slides"),
        }, head)
        with store.session() as s:
            s.add(ModelRecord(id=manifest.id, task=manifest.task, architecture=manifest.architecture,
                              weights_sha256=manifest.weights_sha256, metrics=manifest.metrics.model_dump()))
        workspace.manifests[model_id] = manifest
        # Stored readings of every slide (the slides page reads them; a lab's are computed by jobs), and the scores the
        # cohort page compares with labels, as for the demo's other models.
        scored = {s: float(compute_slide_prediction(workspace, s, model_id).prediction.probabilities[1]) for s in ids}
        with store.session() as s:
            owners = dict(s.execute(select(Slide.id, Slide.patient_id).where(Slide.id.in_(ids))).tuples().all())
            per_patient: dict[str, float] = {}
            for slide_id, score in scored.items():
                per_patient[owners[slide_id]] = max(per_patient.get(owners[slide_id], 0.0), score)
            s.add_all(Prediction(model_id=model_id, weights_sha256=manifest.weights_sha256, subject_kind="slide", subject_id=sid,
                                 patient_id=owners[sid], score=score) for sid, score in scored.items())
            s.add_all(Prediction(model_id=model_id, weights_sha256=manifest.weights_sha256, subject_kind="patient", subject_id=pid,
                                 patient_id=pid, score=score) for pid, score in per_patient.items())
        say(f"model {model_id}: held-out AUC {manifest.metrics.auc:.3f} (n={manifest.metrics.n_test})")
        saved.append(model_id)
    return saved
