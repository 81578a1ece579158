"""Sequence SHAP: additivity, brute-force Shapley, shap.KernelExplainer, backgrounds, visit importance, cached what-if."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import shap
import torch

from core.explain.timeseries import Background, PatientSequence, SequenceExplainer
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


ZERO = Background("zero", torch.zeros(1, 3), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1))


def explainer(net, background: Background = ZERO, **kw) -> SequenceExplainer:
    return SequenceExplainer(net, background, NAMES, **kw)


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


def calc_instance_score(model, sequence_data, instance, ref_output, x_length, occlusion_wgt=0.7):
    """``calc_instance_score`` of Ferreira's model-interpreter, transcribed line by line (identifier columns already
    removed; ``model`` returns the output at every visit of one sequence)."""
    instances_idx = list(range(sequence_data.shape[0]))
    instances_idx.remove(instance)
    new_output = model(sequence_data[instances_idx, :])
    new_output = new_output[-1].item()
    use_outvar_score = ref_output.shape[0] > 1
    if use_outvar_score:
        prev_output = ref_output[instance - 1].item()
        curr_output = ref_output[instance].item()
        ref_output = ref_output[x_length - 1].item()
    else:
        ref_output = ref_output.item()
    inst_score = ref_output - new_output
    if instance > 0 and use_outvar_score:
        inst_score = occlusion_wgt * inst_score + (1 - occlusion_wgt) * (curr_output - prev_output)
    return np.tanh(4 * inst_score)


def test_visit_importance_matches_the_reference_code_first_visit_included():
    torch.manual_seed(4)
    net = VisitSequenceNet(n_numeric=3, category_sizes=(3,), embedding_dim=2, hidden=6, elapsed_time=False, dropout=0.0).eval()
    seq = PatientSequence(torch.tensor([[0.5, -1.0, 0.2], [1.0, 0.0, -0.5], [-0.3, 2.0, 1.0]]),
                          torch.tensor([[1], [2], [0]]), torch.zeros(3))
    ex = SequenceExplainer(net, Background("zero", torch.zeros(1, 3), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1)),
                           ["a", "b", "c", "onset"])
    result = ex.visit_importance(seq)
    data = torch.cat([seq.numeric, seq.categories.float()], 1)  # one row per visit, as the reference code reads it

    def model(rows):
        with torch.no_grad():
            return torch.sigmoid(net(rows[None, :, :3], rows[None, :, 3:].long(), torch.zeros(1, len(rows))))[0]

    reference = [calc_instance_score(model, data, i, model(data), len(seq)) for i in range(len(seq))]
    assert result["score"] == pytest.approx(reference, abs=1e-6)
    occlusion = float(model(data)[-1] - model(data[[1, 2]])[-1])
    assert result["score"][0] == pytest.approx(np.tanh(4 * occlusion), abs=1e-6)  # no output-change term at the first visit


def test_visit_importance_formula_on_a_hand_made_sequence():
    net = tiny_net("gru", seed=4)
    seq = PatientSequence(torch.tensor([[0.5, -1.0, 0.2], [1.0, 0.0, -0.5], [-0.3, 2.0, 1.0]]),
                          torch.tensor([[1], [1], [1]]), torch.tensor([0.0, 0.6, 0.9]))
    result = explainer(net).visit_importance(seq)

    def final(n, c, e):
        with torch.no_grad():
            return float(torch.sigmoid(net(n[None], c[None], e[None]))[0, -1])

    out = [float(v) for v in torch.sigmoid(net(seq.numeric[None], seq.categories[None], seq.elapsed[None]))[0].detach()]
    # Removing a visit: the next visit's elapsed time spans the gap (0 when it becomes the first visit).
    without = [
        final(seq.numeric[[1, 2]], seq.categories[[1, 2]], torch.tensor([0.0, 0.9])),
        final(seq.numeric[[0, 2]], seq.categories[[0, 2]], torch.tensor([0.0, 1.5])),
        final(seq.numeric[[0, 1]], seq.categories[[0, 1]], torch.tensor([0.0, 0.6])),
    ]
    occlusion = np.array([out[-1] - w for w in without])
    outvar = np.array([0.0, out[1] - out[0], out[2] - out[1]])
    assert result["occlusion"] == pytest.approx(occlusion, abs=1e-6)
    assert result["outvar"] == pytest.approx(outvar, abs=1e-6)
    expected = np.tanh(4 * np.array([occlusion[0], *(0.7 * occlusion[1:] + 0.3 * outvar[1:])]))
    assert result["score"] == pytest.approx(expected, abs=1e-6)
    assert np.all(np.abs(result["score"]) <= 1)


COHORT = [PatientSequence(torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]]), torch.tensor([[2], [2]]), torch.tensor([0.0, 0.4])),
          PatientSequence(torch.tensor([[-1.0, 1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 3.0, 1.0]]), torch.tensor([[0], [2], [1]]),
                          torch.tensor([0.0, 0.2, 1.0]))]


def test_backgrounds_drawn_from_the_cohort():
    zero = Background.of("zero", COHORT)
    assert zero.numeric.tolist() == [[0.0, 0.0, 0.0]]  # z-scored zero: the training mean
    assert zero.categories.tolist() == [[2]]  # the most frequent level, not code 0
    assert zero.elapsed.tolist() == pytest.approx([0.4])  # median of the gaps 0.4, 0.2, 1.0 (first visits have none)
    cohort = Background.of("cohort", COHORT)
    assert cohort.numeric.tolist() == [pytest.approx([0.8, 1.2, 0.8])]
    assert cohort.categories.tolist() == [[2]] and cohort.elapsed.tolist() == pytest.approx([(0.4 + 0.2 + 1.0) / 3])
    sampled = Background.of("sampled", COHORT, k=2, seed=3)
    assert len(sampled) == 2 and sampled.kind == "sampled"
    visits = {(tuple(s.numeric[t].tolist()), int(s.categories[t, 0]), round(float(s.elapsed[t]), 6)) for s in COHORT for t in range(1, len(s))}
    for row in range(2):
        assert (tuple(sampled.numeric[row].tolist()), int(sampled.categories[row, 0]), round(float(sampled.elapsed[row]), 6)) in visits
    with pytest.raises(ValueError):
        Background.of("sampled", COHORT, k=33)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_sampled_background_averages_the_output_over_its_visits(bidirectional):
    net, seq = tiny_net("gru", bidirectional), sequence(t_len=3, seed=8)
    background = Background.of("sampled", COHORT, k=3, seed=1)
    result = explainer(net, background).explain_visits(seq)
    rows = np.concatenate([background.numeric.numpy(), background.categories.numpy(), background.elapsed.numpy()[:, None]], 1)
    t = 1

    def f(batch: np.ndarray) -> np.ndarray:
        return np.array([output_with_visit(net, seq, t, r) for r in batch])

    peer = shap.KernelExplainer(f, rows)  # shap with the same background data set, every coalition enumerated
    values = np.asarray(peer.shap_values(visit_vector(seq, t)[None], nsamples=2 ** len(NAMES), silent=True)).ravel()
    assert np.abs(values - result.phi[t]).max() <= 1e-4
    assert result.base[t] == pytest.approx(float(f(rows).mean()), abs=1e-6)  # the expected value at visit t
    assert result.additivity_residual <= 1e-5
    sampled = explainer(net, background, max_exact=2, n_samples=64).explain_visits(seq)
    assert not sampled.exact and sampled.additivity_residual <= 1e-5 and sampled.base[t] == pytest.approx(result.base[t], abs=1e-6)
    if not bidirectional:
        together = explainer(net, background).explain_cohort([seq, sequence(t_len=2, seed=9)])[0]
        assert np.allclose(together.phi, result.phi, atol=1e-6) and np.allclose(together.base, result.base, atol=1e-6)


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
