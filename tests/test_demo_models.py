"""The demo's models really learn: held-out AUC >= 0.85, recomputed here from the saved models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from sqlalchemy import select

from core.demo.build import _slide_label
from core.demo.patch_dataset import slide_patches
from core.demo.train_patch import predict_patches
from core.demo.train_report import report_probabilities
from core.demo.train_sequence import visit_risks
from core.models.visit_encoding import encode_sequences
from core.store.schema import Patient, Report, Slide

MIN_AUC = 0.85


def test_held_out_split_is_a_real_minority(held_out):
    assert 5 <= len(held_out) < 30


def test_manifests_record_held_out_metrics(workspace):
    assert set(workspace.config.models) == {"patch-cnn", "mil-attention", "mil-lse", "niv-gru", "report-tfidf", "clam-sb-features",
                                            "abmil-features"}
    for model_id in workspace.config.models:
        metrics = workspace.manifest(model_id).metrics
        assert metrics.auc >= MIN_AUC, model_id
        assert metrics.n_test > 0 and metrics.roc_fpr and metrics.confusion


def _held_out_slides(workspace, held_out):
    with workspace.store.session() as s:
        return list(s.scalars(select(Slide).where(Slide.patient_id.in_(held_out)).order_by(Slide.id)))


def test_patch_cnn_and_attention_mil_generalise_to_held_out_slides(workspace, held_out):
    cnn, mil, lse = workspace.model("patch-cnn"), workspace.model("mil-attention"), workspace.model("mil-lse")
    labels, scores, lse_scores, patch_true, patch_probs = [], [], [], [], []
    for slide in _held_out_slides(workspace, held_out):
        class_map = np.asarray(Image.open(workspace.slides_dir / slide.mask_file))
        patches = slide_patches(slide.id, workspace.slides_dir / slide.file, class_map)
        probs, feats = predict_patches(cnn.module.cpu(), patches.images)
        pure = (patches.purity >= 0.75) & (patches.tissue >= 0.5)
        patch_true.append(patches.label[pure])
        patch_probs.append(probs[pure])
        with torch.no_grad():
            logits, attention = mil.module.cpu()(torch.from_numpy(feats).float())
        assert attention.shape == (len(feats),) and float(attention.sum()) == pytest.approx(1.0, abs=1e-5)
        scores.append(float(torch.softmax(logits, 0)[1]))
        with torch.no_grad():
            bag_probs, contribution = lse.module.cpu()(torch.from_numpy(feats).float())
        assert contribution.shape == (len(feats),)
        lse_scores.append(float(bag_probs[1]))
        labels.append(_slide_label(class_map))
        assert slide.label == labels[-1]
    assert 0 < sum(labels) < len(labels), "held-out slides must hold both classes"
    assert roc_auc_score(labels, scores) >= MIN_AUC
    assert roc_auc_score(labels, lse_scores) >= MIN_AUC  # the pooling baseline learns too
    y, p = np.concatenate(patch_true), np.concatenate(patch_probs)
    assert roc_auc_score(y, p, multi_class="ovr", labels=[0, 1, 2, 3]) >= MIN_AUC
    assert (p.argmax(1) == y).mean() >= 0.8


def test_heads_over_the_demo_clam_feature_files_generalise_to_held_out_slides(workspace, held_out):
    """The CLAM-SB and ABMIL heads, read back through the lab path (registered feature set, manifest, strict load),
    separate the held-out slides, and CLAM-SB's instance scores are probabilities per class."""
    from core.features.feature_sets import slide_features
    from core.features.maps import predict

    slides = _held_out_slides(workspace, held_out)
    labels = [s.label for s in slides]
    assert 0 < sum(labels) < len(labels)
    for model_id in ("clam-sb-features", "abmil-features"):
        model = workspace.model(model_id)
        assert model.manifest.feature_set == "demo-patch-cnn" and model.manifest.patch_encoder is not None
        predictions = [predict(model.module.cpu(), slide_features(workspace.root, workspace.store, "demo-patch-cnn", s.id)) for s in slides]
        assert roc_auc_score(labels, [p.probabilities[1] for p in predictions]) >= MIN_AUC, model_id
        if model_id == "clam-sb-features":
            assert all(p.instance_scores.shape == (p.attention_raw.shape[1], 2) for p in predictions)
            assert all(((p.instance_scores >= 0) & (p.instance_scores <= 1)).all() for p in predictions)


def _held_out_visits(workspace, held_out, spec):
    with workspace.store.session() as s:
        patients = list(s.scalars(select(Patient).where(Patient.id.in_(held_out)).order_by(Patient.id)))
        seqs = [[(v.day, v.features, v.label) for v in p.visits] for p in patients]
    return encode_sequences(seqs, spec.features, spec.feature_means, spec.feature_stds, spec.categorical)


def test_sequence_net_generalises_to_held_out_patients(workspace, held_out):
    model = workspace.model("niv-gru")
    data = _held_out_visits(workspace, held_out, model.manifest.input)
    risks = visit_risks(model.module.cpu(), data)
    mask = data.labels >= 0
    assert 0 < float(data.labels[mask].sum()) < int(mask.sum())
    assert roc_auc_score(data.labels[mask].numpy(), risks[mask].numpy()) >= MIN_AUC


def test_report_classifier_generalises_to_held_out_patients(workspace, held_out):
    model = workspace.model("report-tfidf")
    with workspace.store.session() as s:
        reports = list(s.scalars(select(Report).where(Report.patient_id.in_(held_out))))
    probs = report_probabilities(model.module.cpu(), [r.text for r in reports], model.vocabulary)[:, 1]
    labels = [r.label for r in reports]
    assert 0 < sum(labels) < len(labels)
    assert roc_auc_score(labels, probs) >= MIN_AUC


def test_sequence_net_beats_its_untrained_self_and_the_best_single_feature(workspace, held_out):
    """Guards against a task so easy that no learning is needed: the trained net must beat both the
    same architecture before training and the strongest single raw feature (FVC) on held-out visits."""
    from core.models.registry import resolve_architecture

    model = workspace.model("niv-gru")
    data = _held_out_visits(workspace, held_out, model.manifest.input)
    mask = data.labels >= 0
    y = data.labels[mask].numpy()
    trained = roc_auc_score(y, visit_risks(model.module.cpu(), data)[mask].numpy())
    untrained_aucs = []
    for seed in range(3):
        torch.manual_seed(seed)
        net = resolve_architecture(model.manifest.architecture)(**model.manifest.params).eval()
        untrained_aucs.append(roc_auc_score(y, visit_risks(net, data)[mask].numpy()))
    fvc = data.numeric[..., model.manifest.input.features.index("fvc_percent")][mask].numpy()
    assert trained > float(np.mean(untrained_aucs)) + 0.1
    assert trained > roc_auc_score(y, -fvc)
