"""Batched LIME for reports: the maths against hand computations and lime itself, both evaluation paths, bad input."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from lime.lime_base import LimeBase
from lime.lime_text import LimeTextExplainer
from sklearn.linear_model import Ridge

from core.explain.text import (
    MAX_REPORT_BYTES,
    LimeSettings,
    ReportTextError,
    WeightedMoments,
    explain_report,
    explanation_stability,
    kernel_weights,
    lime_masks,
    masked_term_counts,
    model_text_predictor,
    perturbed_texts,
    report_features,
    select_features,
    weighted_ridge,
)
from core.export.report_figures import word_weight_figure
from core.models.manifest import ModelManifest
from core.models.registry import LoadedModel
from core.models.report_classifier import TfidfLogisticRegression
from core.models.report_text import report_tokens, token_diff
from core.store.schema import Report
from dashboard.pages.report import layout as report_layout

CPU = torch.device("cpu")


def test_kernel_matches_a_hand_computation():
    masks = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]])
    w = kernel_weights(masks, 25.0)
    d = (1 - 1 / np.sqrt(3)) * 100
    assert w.tolist() == pytest.approx([1.0, np.sqrt(np.exp(-(d**2) / 25**2)), np.sqrt(np.exp(-(100**2) / 25**2))])


def test_weighted_ridge_matches_a_hand_computation_and_scikit_learn():
    fit = weighted_ridge(torch.tensor([[1.0], [0.0]]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), alpha=1.0)
    # centred x = y = [0.5, -0.5]: coef = 0.5 / (0.5 + 1) = 1/3, intercept = 0.5 - 0.5 / 3 = 1/3
    assert fit.coef.tolist() == pytest.approx([1 / 3]) and fit.intercept == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    x, y, w = rng.integers(0, 2, (200, 5)).astype(float), rng.random(200), rng.random(200)
    ours = weighted_ridge(torch.tensor(x), torch.tensor(y), torch.tensor(w))
    ref = Ridge(alpha=1.0).fit(x, y, sample_weight=w)
    assert ours.coef.numpy() == pytest.approx(ref.coef_, abs=1e-5)
    assert ours.intercept == pytest.approx(ref.intercept_, abs=1e-6)
    assert ours.r2 == pytest.approx(ref.score(x, y, sample_weight=w), abs=1e-6)


def test_feature_selection_agrees_with_lime():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, (400, 12)).astype(float)
    x[0] = 1
    y = x @ rng.normal(0, 1, 12) + rng.normal(0, 0.1, 400)
    w = rng.random(400)
    base = LimeBase(kernel_fn=lambda d: d, random_state=0)
    moments = WeightedMoments.of(torch.tensor(x), torch.tensor(w))
    for method in ("forward_selection", "highest_weights"):
        ours = select_features(moments, torch.tensor(y), torch.tensor(x[0]), 5, method)
        theirs = base.feature_selection(x, y, w, 5, method)
        assert ours == list(theirs), method


def test_masks_follow_lime_sampling():
    masks = lime_masks(10, 2000, seed=3, device=CPU)
    assert masks[0].tolist() == [1.0] * 10
    removed = (1 - masks[1:]).sum(1)
    assert removed.min() >= 1 and removed.max() == 10
    assert torch.equal(masks, lime_masks(10, 2000, seed=3, device=CPU))
    assert not torch.equal(masks, lime_masks(10, 2000, seed=4, device=CPU))


def _keyword_model(words: list[str], keyword: str) -> LoadedModel:
    vocabulary = {w: i for i, w in enumerate(words)}
    module = TfidfLogisticRegression(len(words), 2)
    with torch.no_grad():
        module.linear.weight.zero_()
        module.linear.bias.zero_()
        module.linear.weight[1, vocabulary[keyword]] = 30.0  # tf-idf rows are L2-normalised: about 1/sqrt(30) per word
        module.linear.bias[1] = -2.0
    manifest = ModelManifest(id="kw", name="keyword", task="report", architecture="tfidf_logistic_regression", weights="w.safetensors",
                             weights_sha256="0" * 64, class_names=["low grade", "high grade"])
    return LoadedModel(manifest, module.eval(), CPU, vocabulary)


PLANTED = ("Prostate biopsy cores show glandular tissue with stromal fibrosis and chronic inflammation. "
           "Cores reviewed: right base, right mid, left apex. Cribriform zebra architecture noted in one core. "
           "Margins assessed; PSA history reviewed; follow up advised.")


def test_planted_keyword_is_the_top_word_on_both_paths():
    words = sorted(set(report_tokens(PLANTED)))
    model = _keyword_model(words, "zebra")
    by_counts = explain_report(PLANTED, model, LimeSettings(num_samples=2000, seed=1))
    assert by_counts.predicted.class_name == "high grade"
    assert next(iter(by_counts.predicted.weights)) == "zebra"
    assert by_counts.predicted.weights["zebra"] > 0 and by_counts.classes[0].weights["zebra"] < 0
    by_text = explain_report(PLANTED, predictor=lambda texts: np.array([[0.1, 0.9] if "zebra" in t else [0.9, 0.1] for t in texts]),
                             settings=LimeSettings(num_samples=2000, seed=1), class_names=["low grade", "high grade"])
    assert next(iter(by_text.classes[1].weights)) == "zebra" and by_text.classes[1].r2 > 0.9


def test_position_mode_keeps_every_occurrence_of_a_repeated_word():
    text = "Gleason grade 4 grade 4 grade 3 cribriform zebra grade"  # "grade" four times, "4" twice
    words = sorted(set(report_tokens(text)))
    explanation = explain_report(text, _keyword_model(words, "grade"), LimeSettings(num_samples=2000, seed=1, mode="position"))
    tokens = explanation.features.tokens
    assert len(tokens) == 10 and tokens.count("grade") == 4
    weights = explanation.predicted.weights
    assert len(weights) == 6 and set(weights) <= {str(i) for i in range(len(tokens))}  # keyed by position, none overwritten
    assert {tokens[int(k)] for k in weights} & {"grade"}  # the keyword's occurrences carry weight
    figure = word_weight_figure(explanation)
    labels = [label for trace in figure.data for label in trace.y]
    assert len(set(labels[:6])) == 6  # each position its own bar
    assert "grade (word 2)" in labels or "grade (word 4)" in labels or "grade (word 6)" in labels or "grade (word 10)" in labels
    assert "cribriform" not in {label.split(" (")[0] for label in labels if "(word" in label}  # a word seen once keeps its plain name


def test_a_grade_number_stays_when_its_grade_word_is_removed_on_both_paths():
    """LIME removes the word "pattern" from "pattern 4": the model then reads "4" on its own, on either path."""
    features = report_features("Predominant pattern 4 with cribriform glands", "bow")
    assert features.tokens == ["predominant", "pattern", "4", "cribriform", "glands"]
    masks = torch.tensor([[1.0, 0, 1, 1, 1]])  # features in order: predominant, pattern, 4, cribriform, glands
    assert perturbed_texts(features, masks) == ["predominant 4 cribriform glands"]
    model = _keyword_model(sorted(set(features.tokens)), "4")
    by_counts = torch.softmax(model.module(masked_term_counts(features, masks, model.vocabulary)), 1).detach().numpy()
    by_text = model_text_predictor(model)(perturbed_texts(features, masks))
    assert by_text == pytest.approx(by_counts, abs=1e-7) and by_text[0, 1] > 0.5  # the keyword "4" is still read


@pytest.mark.parametrize("mode", ["bow", "position"])
def test_count_tensor_and_string_paths_agree_on_the_same_masks(workspace, mode):
    model = workspace.model("report-tfidf")
    with workspace.store.session() as s:
        texts = [r.text for r in s.query(Report).order_by(Report.id).limit(4)]
    predict = model_text_predictor(model)
    for text in texts:
        features = report_features(text, mode)
        masks = lime_masks(len(features.features), 500, seed=2, device=model.device)
        with torch.no_grad():
            by_counts = torch.softmax(model.module(masked_term_counts(features, masks, model.vocabulary)), 1).cpu().numpy()
        assert np.abs(by_counts - predict(perturbed_texts(features, masks))).max() < 1e-6


def test_explanations_agree_with_lime_on_a_demo_report(workspace):
    model = workspace.model("report-tfidf")
    with workspace.store.session() as s:
        text = s.get(Report, "P001-R1").text
    ours = explain_report(text, model, LimeSettings(num_samples=5000, seed=0))
    peer = LimeTextExplainer(class_names=list(model.manifest.class_names), split_expression=report_tokens, bow=True, random_state=0)
    label = list(model.manifest.class_names).index(ours.predicted.class_name)
    theirs = peer.explain_instance(" ".join(report_tokens(text)), model_text_predictor(model), num_features=6, num_samples=5000,
                                   labels=(label,))
    assert len(set(ours.predicted.weights) & {str(w) for w, _ in theirs.as_list(label=label)}) >= 4
    assert ours.predicted.probability == pytest.approx(float(model_text_predictor(model)([text])[0, label]), abs=1e-5)
    assert ours.provenance["weights_sha256"] == model.weights_sha256 and ours.provenance["settings"]["seed"] == 0
    assert 0.0 <= ours.predicted.r2 <= 1.0


def test_stability_reports_spread_and_overlap(workspace):
    model = workspace.model("report-tfidf")
    with workspace.store.session() as s:
        text = s.get(Report, "P002-R1").text
    report = explanation_stability(text, model, LimeSettings(num_samples=1000), n_seeds=4)
    assert report.seeds == [0, 1, 2, 3] and 0.0 <= report.top_k_overlap <= 1.0
    assert set(report.weight_std) == set(report.weight_mean) and all(v >= 0 for v in report.weight_std.values())
    few = explanation_stability(text, model, LimeSettings(num_samples=20), n_seeds=4)
    assert few.top_k_overlap <= report.top_k_overlap  # fewer samples, less agreement across seeds


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("the and of with; --- |||| ***", "no words the model reads"),
    ("TCGA-AB-1234 123456789 ------", "no words the model reads"),
    ("word " * (MAX_REPORT_BYTES // 4), "kB"),
])
def test_bad_reports_get_clear_messages(workspace, text, message):
    with pytest.raises(ReportTextError, match=message):
        explain_report(text, workspace.model("report-tfidf"))


def test_bad_settings_are_refused(workspace):
    from core.errors import PathReviewError

    for bad in (LimeSettings(num_samples=1), LimeSettings(num_features=0), LimeSettings(kernel_width=-1), LimeSettings(mode="chars")):
        with pytest.raises(PathReviewError):
            explain_report("Gleason score 4+4=8", workspace.model("report-tfidf"), bad)


def test_non_utf8_bytes_in_a_stored_report_are_replaced_and_flagged(workspace, demo_workspace, tmp_path):
    import shutil

    from core.workspace import open_workspace

    copy = tmp_path / "ws"
    shutil.copytree(demo_workspace, copy, ignore=shutil.ignore_patterns("*.tiff", "cache"))
    with sqlite3.connect(copy / "cases.db") as db:
        db.execute("UPDATE reports SET text = CAST(? AS TEXT) WHERE id = 'P003-R1'", (b"Gleason score 4+4=8 \xff\xfe high grade",))
    ws = open_workspace(copy)
    page = str(report_layout(ws, "P003-R1"))
    assert "report-encoding-warning" in page and "not valid UTF-8" in page
    with ws.store.session() as s:
        text = s.get(Report, "P003-R1").text
    assert "\ufffd" in text
    assert explain_report(text, ws.model("report-tfidf"), LimeSettings(num_samples=500)).probabilities
    ws.store.dispose()


def test_token_diff_shows_what_the_model_reads_differently():
    diff = token_diff("Gleason score 4+4=8, poorly differentiated", "Gleason score 3+3=6, well differentiated")
    assert ("removed", "poorly") in diff and ("added", "well") in diff and ("equal", "gleason") in diff


def test_a_cached_explanation_keeps_each_class_weights_in_rank_order(workspace):
    from core.explain.report_explanations import lime_cache_path, report_explanation, report_model_id, stored_report_text

    with workspace.store.session() as s:
        report_id = s.query(Report.id).order_by(Report.id).first()[0]
    ws = workspace
    text, model_id, settings = stored_report_text(ws, report_id), report_model_id(ws), LimeSettings(num_samples=300, seed=7)
    lime_cache_path(ws, model_id, text, settings).unlink(missing_ok=True)  # the first call computes, the second reads
    computed, _, first = report_explanation(ws, model_id, text, settings)
    cached, _, second = report_explanation(ws, model_id, text, settings)
    assert (first, second) == ("computed", "cache")
    for a, b in zip(computed.classes, cached.classes, strict=True):
        assert list(b.weights.items()) == list(a.weights.items())
        strengths = [abs(w) for w in b.weights.values()]
        assert strengths == sorted(strengths, reverse=True) and len(strengths) >= 2
