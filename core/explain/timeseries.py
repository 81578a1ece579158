"""SHAP for recurrent visit-sequence models, with the hidden state of the unperturbed prefix reused.

Output at visit t is the model's probability at t. For visit t's features (its numeric values, its
categories and its elapsed time) the players of a coalition game are those features; a feature left
out takes the background visit's value. Unidirectional nets: the state after visits 1..t-1 does not
depend on visit t, so it is computed once per patient and every coalition is one recurrent step from
it. Bidirectional nets: the output at t also reads the visits after t, so a coalition is a whole
sequence with only visit t perturbed (the other visits as observed), run through the full net.

Exact Shapley values by enumerating all 2^M coalitions when M <= ``max_exact`` (14); otherwise
Kernel SHAP with paired sampling and the efficiency constraint, solved in torch. Coalitions whose
inputs coincide (a feature already equal to its background value) are evaluated once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.models.sequence import VisitSequenceNet

if TYPE_CHECKING:
    import shap

# A recurrent net's state between steps: h (RNN, GRU) or (h, c) (LSTM); None before the first visit (zeros).
RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


@dataclass(frozen=True)
class PatientSequence:
    """One patient's encoded visits: what the net reads."""

    numeric: torch.Tensor  # (T, F) z-scored
    categories: torch.Tensor  # (T, C) codes
    elapsed: torch.Tensor  # (T,)

    def __len__(self) -> int:
        return self.numeric.shape[0]

    def with_visit(self, t: int, numeric: torch.Tensor, categories: torch.Tensor, elapsed: float) -> PatientSequence:
        n, c, e = self.numeric.clone(), self.categories.clone(), self.elapsed.clone()
        n[t], c[t], e[t] = numeric, categories, elapsed
        return PatientSequence(n, c, e)


@dataclass(frozen=True)
class BackgroundVisit:
    """The visit that stands in for missing features: the paper's all-zero z-scored vector by default
    (category code 0, no elapsed time), or a cohort mean (numeric mean, most frequent category, mean elapsed)."""

    numeric: torch.Tensor  # (F,)
    categories: torch.Tensor  # (C,)
    elapsed: float = 0.0

    @classmethod
    def zeros(cls, n_numeric: int, n_categorical: int) -> BackgroundVisit:
        return cls(torch.zeros(n_numeric), torch.zeros(n_categorical, dtype=torch.long), 0.0)

    @classmethod
    def cohort_mean(cls, sequences: list[PatientSequence]) -> BackgroundVisit:
        numeric = torch.cat([s.numeric for s in sequences])
        cats = torch.cat([s.categories for s in sequences])
        mode = torch.mode(cats, dim=0).values if cats.numel() else torch.zeros(cats.shape[1], dtype=torch.long)
        return cls(numeric.mean(0), mode, float(torch.cat([s.elapsed for s in sequences]).mean()))


@dataclass
class VisitShap:
    """phi[t, m]: contribution of visit t's feature m to the output at t; base[t] + phi[t].sum() = output[t]."""

    phi: np.ndarray  # (T, M)
    base: np.ndarray  # (T,)
    output: np.ndarray  # (T,)
    feature_names: list[str]
    exact: bool
    evaluations: int  # distinct model inputs evaluated
    _states: list[RecurrentState] = field(default_factory=list, repr=False)

    @property
    def additivity_residual(self) -> float:
        return float(np.abs(self.phi.sum(1) + self.base - self.output).max()) if len(self.output) else 0.0


@lru_cache(maxsize=16)
def _coalitions(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 2^m coalitions (rows, code order) and the (m, 2^m) matrix P with phi = P @ v (Shapley formula)."""
    codes = np.arange(2**m)
    z = ((codes[:, None] >> np.arange(m)) & 1).astype(np.float64)
    sizes = z.sum(1).astype(int)
    weight = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) for s in range(m)])
    p = np.zeros((m, 2**m))
    for i in range(m):
        without = codes[((codes >> i) & 1) == 0]
        np.add.at(p[i], without | (1 << i), weight[sizes[without]])
        np.add.at(p[i], without, -weight[sizes[without]])
    return torch.from_numpy(z), torch.from_numpy(p)


def _sampled_coalitions(m: int, n_samples: int, generator: torch.Generator) -> torch.Tensor:
    """Kernel SHAP's coalition distribution, in complementary pairs (size s has weight (m-1) / (s (m-s)))."""
    sizes = torch.arange(1, m)
    probs = (m - 1) / (sizes * (m - sizes)).double()
    half = max(1, n_samples // 2)
    drawn = sizes[torch.multinomial(probs / probs.sum(), half, replacement=True, generator=generator)]
    ranks = torch.rand(half, m, generator=generator).argsort(1).argsort(1)
    z = (ranks < drawn[:, None]).double()
    return torch.cat([z, 1 - z])


def kernel_shap_from_samples(z: torch.Tensor, v: torch.Tensor, base: float, fx: float) -> torch.Tensor:
    """Least squares phi for sampled coalitions under sum(phi) = fx - base (the last player is eliminated)."""
    target = v - base - z[:, -1] * (fx - base)
    x = z[:, :-1] - z[:, -1:]
    head = torch.linalg.lstsq(x, target[:, None]).solution[:, 0]
    return torch.cat([head, (fx - base - head.sum())[None]])


class SequenceExplainer:
    """SHAP values, visit importance and event-level SHAP for one ``VisitSequenceNet``."""

    def __init__(self, module: VisitSequenceNet, background: BackgroundVisit, feature_names: list[str],
                 device: torch.device | None = None, max_exact: int = 14, n_samples: int = 4096, seed: int = 0,
                 batch_size: int = 65536) -> None:
        self.module = module.eval()
        self.device = device or next(module.parameters()).device
        self.background = background
        self.n_numeric = background.numeric.shape[0]
        self.n_categorical = background.categories.shape[0]
        self.uses_elapsed = module.elapsed_time
        self.feature_names = list(feature_names)
        expected = self.n_numeric + self.n_categorical + int(self.uses_elapsed)
        if len(self.feature_names) != expected:
            raise ValueError(f"{len(self.feature_names)} feature names for {expected} visit features")
        self.max_exact, self.n_samples, self.seed, self.batch_size = max_exact, n_samples, seed, batch_size
        self.bidirectional = module.rnn.bidirectional

    # -- model evaluation ---------------------------------------------------------------------
    def _to(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        return [t.to(self.device) for t in tensors]

    @torch.no_grad()
    def outputs(self, seq: PatientSequence) -> np.ndarray:
        """Probability at every visit of the observed sequence."""
        n, c, e = self._to(seq.numeric[None], seq.categories[None], seq.elapsed[None])
        return torch.sigmoid(self.module(n, c, e)).double()[0].cpu().numpy()

    @torch.no_grad()
    def _final_outputs(self, numeric: torch.Tensor, categories: torch.Tensor, elapsed: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Output at the last real visit of each sequence in a padded batch."""
        outs = []
        for s in range(0, numeric.shape[0], max(1, self.batch_size // max(1, numeric.shape[1]))):
            sl = slice(s, s + max(1, self.batch_size // max(1, numeric.shape[1])))
            n, c, e, ln = self._to(numeric[sl], categories[sl], elapsed[sl], lengths[sl])
            logits = self.module(n, c, e, ln)
            outs.append(torch.sigmoid(logits.gather(1, (ln - 1)[:, None])[:, 0]).double().cpu())
        return torch.cat(outs)

    @torch.no_grad()
    def prefix_states(self, seq: PatientSequence, start: int = 0, start_state: RecurrentState = None) -> list[RecurrentState]:
        """Recurrent state before each visit t >= start (index t), for unidirectional nets."""
        n, c, e = self._to(seq.numeric[None], seq.categories[None], seq.elapsed[None])
        x = self.module.visit_inputs(n, c, e)
        states: list[RecurrentState] = [None] * (len(seq) + 1)
        state = start_state
        for t in range(start, len(seq)):
            states[t] = state
            _, state = self.module.rnn(x[:, t : t + 1], state)
        states[len(seq)] = state
        return states

    @torch.no_grad()
    def _step_outputs(self, states: _PerVisitStates, visit: torch.Tensor, numeric: torch.Tensor, categories: torch.Tensor,
                      elapsed: torch.Tensor) -> torch.Tensor:
        """Probability after one recurrent step from each row's prefix state (unidirectional nets)."""
        outs = []
        for s in range(0, len(visit), self.batch_size):
            sl = slice(s, s + self.batch_size)
            n, c, e = self._to(numeric[sl, None], categories[sl, None], elapsed[sl, None])
            x = self.module.visit_inputs(n, c, e)
            out, _ = self.module.rnn(x, states.initial(visit[sl]))
            outs.append(torch.sigmoid(self.module.head(out[:, 0]).squeeze(-1)).double().cpu())
        return torch.cat(outs)

    # -- coalitions of one visit's features -----------------------------------------------------
    def _masked_visits(self, seq: PatientSequence, visits: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs of visit ``visits[k]`` with coalition ``z[k]``: features outside it take the background value."""
        fn, fc = self.n_numeric, self.n_categorical
        bg = self.background
        zn, zc = z[:, :fn].bool(), z[:, fn : fn + fc].bool()
        numeric = torch.where(zn, seq.numeric[visits], bg.numeric.to(seq.numeric.dtype))
        categories = torch.where(zc, seq.categories[visits], bg.categories)
        elapsed = torch.where(z[:, -1].bool(), seq.elapsed[visits], torch.tensor(bg.elapsed)) if self.uses_elapsed \
            else seq.elapsed[visits]
        return numeric, categories, elapsed

    def _evaluate(self, seq: PatientSequence, visits: torch.Tensor, z: torch.Tensor, states: list[RecurrentState]) -> tuple[torch.Tensor, int]:
        """Output at each row's visit for its coalition; identical inputs are evaluated once."""
        numeric, categories, elapsed = self._masked_visits(seq, visits, z)
        key = torch.cat([visits[:, None].double(), numeric.double(), categories.double(), elapsed[:, None].double()], 1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        u_visits = unique[:, 0].long()
        fn, fc = self.n_numeric, self.n_categorical
        u_num = unique[:, 1 : 1 + fn].to(seq.numeric.dtype)
        u_cat = unique[:, 1 + fn : 1 + fn + fc].long()
        u_el = unique[:, -1].to(seq.elapsed.dtype)
        if not self.bidirectional:
            values = self._step_outputs(_PerVisitStates(states, 1, self), u_visits, u_num, u_cat, u_el)
        else:
            values = self._full_sequence_outputs(seq, u_visits, u_num, u_cat, u_el)
        return values[inverse], len(unique)

    @torch.no_grad()
    def _full_sequence_outputs(self, seq: PatientSequence, visits: torch.Tensor, numeric: torch.Tensor, categories: torch.Tensor,
                               elapsed: torch.Tensor) -> torch.Tensor:
        """Bidirectional nets: whole sequences with one visit replaced; the output read at that visit."""
        t_len = len(seq)
        outs = []
        step = max(1, self.batch_size // t_len)
        for s in range(0, len(visits), step):
            sl = slice(s, s + step)
            k = len(visits[sl])
            n = seq.numeric[None].repeat(k, 1, 1)
            c = seq.categories[None].repeat(k, 1, 1)
            e = seq.elapsed[None].repeat(k, 1)
            rows = torch.arange(k)
            n[rows, visits[sl]], c[rows, visits[sl]], e[rows, visits[sl]] = numeric[sl], categories[sl], elapsed[sl]
            n, c, e = self._to(n, c, e)
            logits = self.module(n, c, e)
            outs.append(torch.sigmoid(logits[rows.to(self.device), visits[sl].to(self.device)]).double().cpu())
        return torch.cat(outs)

    def _background_bits(self, numeric: torch.Tensor, categories: torch.Tensor, elapsed: torch.Tensor) -> torch.Tensor:
        """Per visit, a bit mask of the features already equal to their background value."""
        bg = self.background
        same = torch.cat([numeric == bg.numeric.to(numeric.dtype), categories == bg.categories], 1)
        if self.uses_elapsed:
            same = torch.cat([same, (elapsed == bg.elapsed)[:, None]], 1)
        return (same.long() << torch.arange(same.shape[1])).sum(1)

    def _exact_step_values(self, numeric: torch.Tensor, categories: torch.Tensor, elapsed: torch.Tensor, state_index: torch.Tensor,
                           states: _PerVisitStates) -> tuple[torch.Tensor, int]:
        """All 2^M coalition values of each visit (rows of the inputs), one recurrent step from its prefix state.

        A feature already equal to its background value cannot change the input, so only coalitions that
        leave it out are evaluated; the others read the same value."""
        m = len(self.feature_names)
        z, _ = _coalitions(m)
        codes = torch.arange(2**m)
        dup = self._background_bits(numeric, categories, elapsed)
        valid = (codes[None] & dup[:, None]) == 0
        row_of = torch.cumsum(valid.flatten().long(), 0).view(valid.shape) - 1
        visit, code = valid.nonzero(as_tuple=True)
        zr = z[code].bool()
        fn, fc, bg = self.n_numeric, self.n_categorical, self.background
        num = torch.where(zr[:, :fn], numeric[visit], bg.numeric.to(numeric.dtype))
        cat = torch.where(zr[:, fn : fn + fc], categories[visit], bg.categories)
        el = torch.where(zr[:, -1], elapsed[visit], torch.tensor(bg.elapsed, dtype=elapsed.dtype)) if self.uses_elapsed else elapsed[visit]
        values = self._step_outputs(states, state_index[visit], num, cat, el)
        effective = codes[None] & ~dup[:, None]
        return values[row_of.gather(1, effective)], len(values)

    def explain_cohort(self, sequences: list[PatientSequence]) -> list[VisitShap]:
        """Every visit of every patient in as few forward passes as the batch size allows (unidirectional nets,
        exact enumeration); other cases go patient by patient."""
        m = len(self.feature_names)
        if self.bidirectional or m > self.max_exact or not sequences:
            return [self.explain_visits(s) for s in sequences]
        lengths = torch.tensor([len(s) for s in sequences])
        t_max, n_pat = int(lengths.max()), len(sequences)
        numeric = torch.zeros(n_pat, t_max, self.n_numeric)
        categories = torch.zeros(n_pat, t_max, self.n_categorical, dtype=torch.long)
        elapsed = torch.zeros(n_pat, t_max)
        for i, s in enumerate(sequences):
            numeric[i, : len(s)], categories[i, : len(s)], elapsed[i, : len(s)] = s.numeric, s.categories, s.elapsed
        # Prefix states of all patients at once: state before visit t, stored per (t, patient).
        with torch.no_grad():
            x = self.module.visit_inputs(*self._to(numeric, categories, elapsed))
            state: RecurrentState = None
            per_step: list[RecurrentState] = []
            for t in range(t_max):
                per_step.append(state)
                _, state = self.module.rnn(x[:, t : t + 1], state)
        real = torch.arange(t_max)[None] < lengths[:, None]
        pat, vis = real.nonzero(as_tuple=True)
        states = _PerVisitStates(per_step, n_pat, self)
        v, n_eval = self._exact_step_values(numeric[pat, vis], categories[pat, vis], elapsed[pat, vis], vis * n_pat + pat, states)
        _, p = _coalitions(m)
        phi = (v @ p.T).numpy()
        results, start = [], 0
        for i, s in enumerate(sequences):
            rows = slice(start, start + len(s))
            results.append(VisitShap(phi[rows], v[rows, 0].numpy(), v[rows, -1].numpy(), self.feature_names, True,
                                     n_eval if i == 0 else 0, []))
            start += len(s)
        return results

    def explain_visits(self, seq: PatientSequence, from_visit: int = 0, previous: VisitShap | None = None) -> VisitShap:
        """SHAP values of each visit's features for the output at that visit.

        With ``previous`` (an explanation of the same patient before an edit at ``from_visit``), visits before
        ``from_visit`` are copied and the cached prefix state is reused (unidirectional nets)."""
        t_len, m = len(seq), len(self.feature_names)
        if self.bidirectional:
            from_visit, previous = 0, None  # every output reads every visit
        reused = previous if previous is not None and from_visit > 0 and previous._states else None
        states = self.prefix_states(seq, from_visit, reused._states[from_visit]) if reused else self.prefix_states(seq)
        if reused:
            states[:from_visit] = reused._states[:from_visit]
        targets = torch.arange(from_visit, t_len)
        exact = m <= self.max_exact
        phi = np.zeros((t_len, m))
        base, output = np.zeros(t_len), np.zeros(t_len)
        if reused:
            phi[:from_visit], base[:from_visit], output[:from_visit] = reused.phi[:from_visit], reused.base[:from_visit], reused.output[:from_visit]
        if exact:
            z, p = _coalitions(m)
            if self.bidirectional:
                values, n_eval = self._evaluate(seq, targets.repeat_interleave(len(z)), z.repeat(len(targets), 1), states)
                v = values.view(len(targets), len(z))
            else:
                v, n_eval = self._exact_step_values(seq.numeric[targets], seq.categories[targets], seq.elapsed[targets], targets,
                                                    _PerVisitStates(states, 1, self))
            phi[from_visit:] = (v @ p.T).numpy()
            base[from_visit:], output[from_visit:] = v[:, 0].numpy(), v[:, -1].numpy()
        else:
            g = torch.Generator().manual_seed(self.seed)
            n_eval = 0
            for t in targets.tolist():
                z = torch.cat([torch.zeros(1, m), torch.ones(1, m), _sampled_coalitions(m, self.n_samples, g)]).double()
                values, n = self._evaluate(seq, torch.full((len(z),), t), z, states)
                n_eval += n
                b, fx = float(values[0]), float(values[1])
                phi[t] = kernel_shap_from_samples(z[2:], values[2:], b, fx).numpy()
                base[t], output[t] = b, fx
        return VisitShap(phi, base, output, self.feature_names, exact, n_eval, states if not self.bidirectional else [])

    # -- visits as a whole ----------------------------------------------------------------------
    def _background_only_output(self) -> float:
        bg = self.background
        n, c, e = bg.numeric[None, None], bg.categories[None, None], torch.tensor([[bg.elapsed]])
        return float(self._final_outputs(n, c, e, torch.tensor([1]))[0])

    def visit_importance(self, seq: PatientSequence) -> dict[str, np.ndarray]:
        """Ferreira et al.'s instance importance, for every visit at once:
        occlusion_i = out_N(S) - out(S without visit i) (the following visit's elapsed time absorbs the gap);
        outvar_i = out_i(S) - out_{i-1}(S); score = tanh(4 (0.7 occlusion + 0.3 outvar)).
        First visit: out_0 is the output of the background visit alone (SHAP's expected value at visit 1).
        A one-visit sequence: 'S without i' is the background visit alone."""
        t_len = len(seq)
        out = self.outputs(seq)
        empty = self._background_only_output()
        if t_len == 1:
            occlusion = np.array([out[-1] - empty])
        else:
            n = torch.zeros(t_len, t_len - 1, self.n_numeric)
            c = torch.zeros(t_len, t_len - 1, self.n_categorical, dtype=torch.long)
            e = torch.zeros(t_len, t_len - 1)
            for i in range(t_len):
                keep = [j for j in range(t_len) if j != i]
                n[i], c[i] = seq.numeric[keep], seq.categories[keep]
                el = seq.elapsed.clone()
                if i + 1 < t_len:
                    el[i + 1] = 0.0 if i == 0 else seq.elapsed[i] + seq.elapsed[i + 1]
                e[i] = el[keep]
            occlusion = out[-1] - self._final_outputs(n, c, e, torch.full((t_len,), t_len - 1)).numpy()
        outvar = out - np.concatenate([[empty], out[:-1]])
        return {"score": np.tanh(4 * (0.7 * occlusion + 0.3 * outvar)), "occlusion": occlusion, "outvar": outvar, "output": out}

    def event_shap(self, seq: PatientSequence, max_exact_events: int = 12) -> dict[str, np.ndarray | float]:
        """TimeSHAP-style event-level SHAP: players are whole visits, a missing visit is the background visit,
        the value is the output at the last visit."""
        t_len = len(seq)
        exact = t_len <= max_exact_events
        if exact:
            z, p = _coalitions(t_len)
        else:
            g = torch.Generator().manual_seed(self.seed)
            z = torch.cat([torch.zeros(1, t_len), torch.ones(1, t_len), _sampled_coalitions(t_len, self.n_samples, g)]).double()
        keep = z.bool()
        bg = self.background
        n = torch.where(keep[..., None], seq.numeric[None], bg.numeric)
        c = torch.where(keep[..., None], seq.categories[None], bg.categories)
        e = torch.where(keep, seq.elapsed[None], torch.tensor(bg.elapsed))
        values = self._final_outputs(n, c, e, torch.full((len(z),), t_len))
        if exact:
            phi = (p @ values).numpy()
            base, fx = float(values[0]), float(values[-1])
        else:
            base, fx = float(values[0]), float(values[1])
            phi = kernel_shap_from_samples(z[2:], values[2:], base, fx).numpy()
        return {"phi": phi, "base": base, "output": fx, "exact": exact}


class _PerVisitStates:
    """Recurrent states before each visit, as a table a batch of one-step runs can index.

    ``per_step[t]`` holds the state before step t for ``n_patients`` sequences (None: zeros); row
    ``t * n_patients + patient`` of the table is that patient's state before visit t."""

    def __init__(self, per_step: list[RecurrentState], n_patients: int, explainer: SequenceExplainer) -> None:
        rnn = explainer.module.rnn
        zeros = torch.zeros(rnn.num_layers, n_patients, rnn.hidden_size, device=explainer.device)
        self.lstm = isinstance(rnn, torch.nn.LSTM)

        def part(state: RecurrentState, k: int) -> torch.Tensor:
            """Part k of a state: h, or h and c of an LSTM."""
            if state is None:
                return zeros
            return state[k] if isinstance(state, tuple) else state

        self.tables = [torch.cat([part(st, k) for st in per_step], 1) for k in range(2 if self.lstm else 1)]

    def initial(self, index: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        index = index.to(self.tables[0].device)
        picked = [table[:, index] for table in self.tables]
        return tuple(picked) if self.lstm else picked[0]


def _history_values(explainer: SequenceExplainer, seq: PatientSequence, z: torch.Tensor) -> torch.Tensor:
    """Output at the last visit when the (visit, feature) players outside each coalition take background values."""
    t_len, m = len(seq), len(explainer.feature_names)
    zz = z.view(-1, t_len, m).bool()
    fn, fc, bg = explainer.n_numeric, explainer.n_categorical, explainer.background
    n = torch.where(zz[..., :fn], seq.numeric[None], bg.numeric)
    c = torch.where(zz[..., fn : fn + fc], seq.categories[None], bg.categories)
    e = torch.where(zz[..., -1], seq.elapsed[None], torch.tensor(bg.elapsed)) if explainer.uses_elapsed else seq.elapsed[None].expand(len(z), -1)
    return explainer._final_outputs(n, c, e, torch.full((len(z),), t_len))


def explain_history(explainer: SequenceExplainer, seq: PatientSequence) -> dict[str, np.ndarray | float]:
    """Optional mode: attribution of the final output to every earlier visit's features, phi (T, M).

    The players are all (visit, feature) pairs, so M = T x features: exact when that is <= ``max_exact``,
    otherwise paired Kernel SHAP sampling with ``explainer.n_samples`` coalitions (whole sequences re-run)."""
    t_len, m = len(seq), len(explainer.feature_names)
    players = t_len * m
    if players <= explainer.max_exact:
        z, p = _coalitions(players)
        values = _history_values(explainer, seq, z)
        phi, base, fx = (p @ values).numpy(), float(values[0]), float(values[-1])
    else:
        g = torch.Generator().manual_seed(explainer.seed)
        z = torch.cat([torch.zeros(1, players), torch.ones(1, players), _sampled_coalitions(players, explainer.n_samples, g)]).double()
        values = _history_values(explainer, seq, z)
        base, fx = float(values[0]), float(values[1])
        phi = kernel_shap_from_samples(z[2:], values[2:], base, fx).numpy()
    return {"phi": phi.reshape(t_len, m), "base": base, "output": fx, "exact": players <= explainer.max_exact}


def to_shap_explanation(result: VisitShap, data: np.ndarray | None = None) -> shap.Explanation:
    """The visit SHAP values as a ``shap.Explanation`` (one row per visit), for ``shap.plots``."""
    import shap

    return shap.Explanation(values=result.phi, base_values=result.base, data=data, feature_names=result.feature_names)
