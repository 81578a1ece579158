"""Sequence SHAP: additivity, brute-force Shapley, shap.KernelExplainer, visit importance, cached what-if."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shap
import torch

from core.explain.timeseries import BackgroundVisit, PatientSequence, SequenceExplainer, to_shap_explanation
from core.models.sequence import VisitSequenceNet

NAMES = ["a", "b", "c", "onset", "elapsed"]


def tiny_net(cell="gru", bidirectional=False, layers=1, seed=0) -> VisitSequenceNet:
    torch.manual_seed(seed)
    return VisitSequenceNet(n_numeric=3, category_sizes=(3,), embedding_dim=2, cell=cell, hidden=6, layers=layers,
                            bidirectional=bidirectional, elapsed_time=True, dropout=0.0).eval()


def sequence(t_len=5, seed=1) -> PatientSequence:
    g = torch.Generator().manual_seed(seed)
    return PatientSequence(torch.randn(t_len, 3, generator=g), torch.randint(0, 3, (t_len, 1), generator=g),
                           torch.rand(t_len, generator=g))


def explainer(net, **kw) -> SequenceExplainer:
    return SequenceExplainer(net, BackgroundVisit.zeros(3, 1), NAMES, **kw)


def output_with_visit(net, seq: PatientSequence, t: int, values: np.ndarray) -> float:
    """The output at visit t when visit t's five features are ``values`` (a full forward pass)."""
    n, c, e = seq.numeric.clone(), seq.categories.clone(), seq.elapsed.clone()
    n[t], c[t, 0], e[t] = torch.tensor(values[:3], dtype=torch.float32), int(values[3]), float(values[4])
    with torch.no_grad():
        return float(torch.sigmoid(net(n[None], c[None], e[None]))[0, t])


def visit_vector(seq: PatientSequence, t: int) -> np.ndarray:
    return np.concatenate([seq.numeric[t].numpy(), seq.categories[t].numpy(), [float(seq.elapsed[t])]]).astype(float)


@pytest.mark.parametrize(("cell", "bidirectional", "layers"), [("gru", False, 1), ("lstm", False, 2), ("rnn", False, 1),
                                                                ("gru", True, 1), ("lstm", True, 2)])
def test_additivity_exact_and_sampled(cell, bidirectional, layers):
    net, seq = tiny_net(cell, bidirectional, layers), sequence()
    exact = explainer(net).explain_visits(seq)
    assert exact.exact and exact.additivity_residual <= 1e-4
    assert np.allclose(exact.output, explainer(net).outputs(seq), atol=1e-6)
    sampled = explainer(net, max_exact=2, n_samples=256).explain_visits(seq)
    assert not sampled.exact and sampled.additivity_residual <= 1e-4
    assert np.abs(sampled.phi - exact.phi).max() < 0.05  # sampling approximates the exact values


@pytest.mark.parametrize("bidirectional", [False, True])
def test_exact_values_match_brute_force_shapley(bidirectional):
    net, seq = tiny_net("gru", bidirectional), sequence(t_len=4, seed=3)
    result = explainer(net).explain_visits(seq)
    m = len(NAMES)
    for t in range(len(seq)):
        x = visit_vector(seq, t)
        bg = np.zeros(m)
        phi = np.zeros(m)
        for order in itertools.permutations(range(m)):  # average marginal contribution over all orders
            current = bg.copy()
            before = output_with_visit(net, seq, t, current)
            for i in order:
                current[i] = x[i]
                after = output_with_visit(net, seq, t, current)
                phi[i] += after - before
                before = after
        phi /= math.factorial(m)
        assert np.abs(phi - result.phi[t]).max() < 1e-6


def test_agrees_with_shap_kernel_explainer():
    net, seq = tiny_net("lstm"), sequence(t_len=4, seed=5)
    result = explainer(net).explain_visits(seq)
    t = 2

    def f(rows: np.ndarray) -> np.ndarray:
        return np.array([output_with_visit(net, seq, t, r) for r in rows])

    peer = shap.KernelExplainer(f, np.zeros((1, len(NAMES))))
    values = np.asarray(peer.shap_values(visit_vector(seq, t)[None], nsamples=2 ** len(NAMES), silent=True)).ravel()
    assert np.abs(values - result.phi[t]).max() <= 1e-3
    assert peer.expected_value == pytest.approx(result.base[t], abs=1e-6)


def test_visit_importance_formula_on_a_hand_made_sequence():
    net = tiny_net("gru", seed=4)
    seq = PatientSequence(torch.tensor([[0.5, -1.0, 0.2], [1.0, 0.0, -0.5], [-0.3, 2.0, 1.0]]),
                          torch.tensor([[1], [1], [1]]), torch.tensor([0.0, 0.6, 0.9]))
    result = explainer(net).visit_importance(seq)

    def final(n, c, e):
        with torch.no_grad():
            return float(torch.sigmoid(net(n[None], c[None], e[None]))[0, -1])

    out = [float(v) for v in torch.sigmoid(net(seq.numeric[None], seq.categories[None], seq.elapsed[None]))[0].detach()]
    empty = final(torch.zeros(1, 3), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1))
    # Removing a visit: the next visit's elapsed time spans the gap (0 when it becomes the first visit).
    without = [
        final(seq.numeric[[1, 2]], seq.categories[[1, 2]], torch.tensor([0.0, 0.9])),
        final(seq.numeric[[0, 2]], seq.categories[[0, 2]], torch.tensor([0.0, 1.5])),
        final(seq.numeric[[0, 1]], seq.categories[[0, 1]], torch.tensor([0.0, 0.6])),
    ]
    occlusion = np.array([out[-1] - w for w in without])
    outvar = np.array([out[0] - empty, out[1] - out[0], out[2] - out[1]])
    assert result["occlusion"] == pytest.approx(occlusion, abs=1e-6)
    assert result["outvar"] == pytest.approx(outvar, abs=1e-6)
    assert result["score"] == pytest.approx(np.tanh(4 * (0.7 * occlusion + 0.3 * outvar)), abs=1e-6)
    assert np.all(np.abs(result["score"]) <= 1)


def test_what_if_reuses_the_prefix_and_matches_a_full_recomputation():
    net, seq = tiny_net("lstm", layers=2), sequence(t_len=6)
    ex = explainer(net)
    before = ex.explain_visits(seq)
    edited = seq.with_visit(3, seq.numeric[3] + 1.5, seq.categories[3], float(seq.elapsed[3]))
    partial = ex.explain_visits(edited, from_visit=3, previous=before)
    full = ex.explain_visits(edited)
    assert np.allclose(partial.phi, full.phi, atol=1e-6) and np.allclose(partial.output, full.output, atol=1e-6)
    assert np.allclose(partial.phi[:3], before.phi[:3]) and not np.allclose(partial.phi[3], before.phi[3])


def test_duplicate_coalitions_are_evaluated_once():
    net = tiny_net()
    seq = sequence(t_len=3)
    seq = PatientSequence(seq.numeric, torch.zeros_like(seq.categories), torch.zeros(3))  # onset and elapsed equal the background
    result = explainer(net).explain_visits(seq)
    assert result.evaluations == 3 * 2**3  # only the three numeric features make inputs differ
    assert np.allclose(result.phi[:, 3:], 0)


def test_event_shap_is_additive_and_converts_for_shap_plots():
    net, seq = tiny_net(), sequence(t_len=5)
    ex = explainer(net)
    events = ex.event_shap(seq)
    assert events["exact"] and abs(events["phi"].sum() + events["base"] - events["output"]) < 1e-6
    sampled = ex.event_shap(seq, max_exact_events=3)
    assert abs(sampled["phi"].sum() + sampled["base"] - sampled["output"]) < 1e-6
    explanation = to_shap_explanation(ex.explain_visits(seq))
    assert explanation.values.shape == (5, len(NAMES)) and explanation[2].base_values == pytest.approx(ex.explain_visits(seq).base[2])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_cohort_batch_equals_patient_by_patient(cell):
    net = tiny_net(cell, layers=2)
    seqs = [sequence(t_len=n, seed=n) for n in (1, 4, 6, 3)]
    ex = explainer(net)
    together = ex.explain_cohort(seqs)
    for seq, batched in zip(seqs, together, strict=True):
        alone = ex.explain_visits(seq)
        assert np.allclose(batched.phi, alone.phi, atol=1e-6) and np.allclose(batched.output, alone.output, atol=1e-6)
        assert batched.additivity_residual <= 1e-4


def test_history_mode_attributes_the_final_output_to_all_earlier_visits():
    from core.explain.timeseries import explain_history

    net = tiny_net("gru")
    short = sequence(t_len=2, seed=7)
    exact = explain_history(explainer(net), short)  # 2 visits x 5 features = 10 players: exact
    assert exact["exact"] and exact["phi"].shape == (2, 5)
    assert abs(exact["phi"].sum() + exact["base"] - exact["output"]) < 1e-6
    sampled = explain_history(explainer(net, max_exact=4, n_samples=4000), short)
    assert not sampled["exact"] and abs(sampled["phi"].sum() + sampled["base"] - sampled["output"]) < 1e-6
    assert np.abs(sampled["phi"] - exact["phi"]).max() < 0.05
