"""SHAP values and visit importance for recurrent visit-sequence models, with the hidden state of the unperturbed
prefix reused.

Output at visit t is the model's probability at t. For visit t's features (its numeric values, its categories and
its elapsed time) the players of a coalition game are those features; a feature left out takes a background
visit's value, and with several background visits a coalition's value is the mean output over them (as shap's
``KernelExplainer`` with a background data set). Unidirectional nets: the state after visits 1..t-1 does not depend
on visit t, so it is computed once per patient and every coalition is one recurrent step from it. Bidirectional
nets: the output at t also reads the visits after t, so a coalition is a whole sequence with only visit t perturbed
(the other visits as observed), run through the full net. Exact or sampled Shapley values come from
``core.explain.shapley``; coalitions whose inputs coincide are evaluated once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from core.explain.shapley import exact_coalitions, shapley_values
from core.models.sequence import VisitSequenceNet

# A recurrent net's state between steps: h (RNN, GRU) or (h, c) (LSTM); None before the first visit (zeros).
RecurrentState = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None
BACKGROUND_KINDS = ("zero", "cohort", "sampled")
MAX_BACKGROUND_VISITS = 32


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
class Background:
    """The visits that stand in for features left out of a coalition: K rows, a coalition's value is the mean
    output over them.

    zero     the paper's all-zero z-scored visit (the training mean); a category takes the cohort's most frequent
             level and elapsed time the cohort's median gap, since code 0 and a zero gap are real values, not means
    cohort   the cohort's mean z-scored values, most frequent levels and mean gap
    sampled  k visits drawn at random from the cohort (k <= 32)
    Gaps are those of visits after a patient's first (a first visit has no gap)."""

    kind: str
    numeric: torch.Tensor  # (K, F)
    categories: torch.Tensor  # (K, C)
    elapsed: torch.Tensor  # (K,)

    def __len__(self) -> int:
        return self.numeric.shape[0]

    @property
    def description(self) -> str:
        return {"zero": "all-zero visit (z-scored mean; most frequent category, median gap)",
                "cohort": "cohort mean visit (mean values, most frequent category, mean gap)",
                "sampled": f"{len(self)} cohort visits sampled at random"}[self.kind]

    @classmethod
    def of(cls, kind: str, sequences: list[PatientSequence], k: int = MAX_BACKGROUND_VISITS, seed: int = 0) -> Background:
        if kind not in BACKGROUND_KINDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUND_KINDS)}")
        if not sequences:
            raise ValueError("a background needs at least one patient's visits")
        numeric = torch.cat([s.numeric for s in sequences])
        cats = torch.cat([s.categories for s in sequences])
        gaps = torch.cat([s.elapsed[1:] for s in sequences])
        gaps = gaps if len(gaps) else torch.zeros(1)
        mode = torch.mode(cats, dim=0).values[None]
        if kind == "zero":
            return cls(kind, torch.zeros(1, numeric.shape[1]), mode, torch.quantile(gaps.double(), 0.5).float()[None])
        if kind == "cohort":
            return cls(kind, numeric.mean(0)[None], mode, gaps.mean()[None])
        if not 1 <= k <= MAX_BACKGROUND_VISITS:
            raise ValueError(f"a sampled background holds 1 to {MAX_BACKGROUND_VISITS} visits")
        later = torch.cat([torch.arange(len(s)) > 0 for s in sequences])  # visits that have a gap to sample
        pool = later.nonzero()[:, 0] if bool(later.any()) else torch.arange(len(numeric))
        pick = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:k]]
        return cls(kind, numeric[pick], cats[pick], torch.cat([s.elapsed for s in sequences])[pick])

    def fill(self, numeric: torch.Tensor, categories: torch.Tensor, elapsed: torch.Tensor, keep: torch.Tensor,
             uses_elapsed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Visit rows (R, ...) with coalition masks ``keep`` (R, M): features outside the coalition take the background's
        values. Returns R x K rows, row r's K copies together."""
        k, r = len(self), len(numeric)
        keep = keep.bool().repeat_interleave(k, 0)
        fn, fc = numeric.shape[1], categories.shape[1]
        num = torch.where(keep[:, :fn], numeric.repeat_interleave(k, 0), self.numeric.to(numeric.dtype).repeat(r, 1))
        cat = torch.where(keep[:, fn : fn + fc], categories.repeat_interleave(k, 0), self.categories.repeat(r, 1))
        el = elapsed.repeat_interleave(k, 0)
        if uses_elapsed:
            el = torch.where(keep[:, -1], el, self.elapsed.to(elapsed.dtype).repeat(r))
        return num, cat, el

    def same_as(self, numeric: torch.Tensor, categories: torch.Tensor, elapsed: torch.Tensor, uses_elapsed: bool) -> torch.Tensor:
        """Per visit row, a bit mask of the features equal to every background row's value (they cannot change the input)."""
        same = torch.cat([(numeric[:, None] == self.numeric.to(numeric.dtype)[None]).all(1),
                          (categories[:, None] == self.categories[None]).all(1)], 1)
        if uses_elapsed:
            same = torch.cat([same, (elapsed[:, None] == self.elapsed.to(elapsed.dtype)[None]).all(1)[:, None]], 1)
        return (same.long() << torch.arange(same.shape[1])).sum(1)


@dataclass
class VisitShap:
    """phi[t, m]: contribution of visit t's feature m to the output at t; base[t] + phi[t].sum() = output[t]."""

    phi: np.ndarray  # (T, M)
    base: np.ndarray  # (T,) the expected value at each visit: the output with every feature of that visit from the background
    output: np.ndarray  # (T,)
    feature_names: list[str]
    exact: bool
    evaluations: int  # distinct model inputs evaluated
    _states: list[RecurrentState] = field(default_factory=list, repr=False)

    @property
    def additivity_residual(self) -> float:
        return float(np.abs(self.phi.sum(1) + self.base - self.output).max()) if len(self.output) else 0.0


class SequenceExplainer:
    """SHAP values and visit importance for one ``VisitSequenceNet``."""

    def __init__(self, module: VisitSequenceNet, background: Background, feature_names: list[str],
                 device: torch.device | None = None, max_exact: int = 14, n_samples: int = 4096, seed: int = 0,
                 batch_size: int = 65536) -> None:
        self.module = module.eval()
        self.device = device or next(module.parameters()).device
        self.background = background
        self.n_numeric = background.numeric.shape[1]
        self.n_categorical = background.categories.shape[1]
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
        step = max(1, self.batch_size // max(1, numeric.shape[1]))
        for s in range(0, numeric.shape[0], step):
            n, c, e, ln = self._to(numeric[s : s + step], categories[s : s + step], elapsed[s : s + step], lengths[s : s + step])
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
    def _step_outputs(self, states: _PerVisitStates, state_rows: torch.Tensor, numeric: torch.Tensor, categories: torch.Tensor,
                      elapsed: torch.Tensor) -> torch.Tensor:
        """Probability after one recurrent step from each row's prefix state (unidirectional nets)."""
        outs = []
        for s in range(0, len(state_rows), self.batch_size):
            sl = slice(s, s + self.batch_size)
            n, c, e = self._to(numeric[sl, None], categories[sl, None], elapsed[sl, None])
            out, _ = self.module.rnn(self.module.visit_inputs(n, c, e), states.initial(state_rows[sl]))
            outs.append(torch.sigmoid(self.module.head(out[:, 0]).squeeze(-1)).double().cpu())
        return torch.cat(outs)

    @torch.no_grad()
    def _full_sequence_outputs(self, seq: PatientSequence, visits: torch.Tensor, numeric: torch.Tensor, categories: torch.Tensor,
                               elapsed: torch.Tensor) -> torch.Tensor:
        """Bidirectional nets: whole sequences with one visit replaced; the output read at that visit."""
        outs = []
        step = max(1, self.batch_size // len(seq))
        for s in range(0, len(visits), step):
            sl = slice(s, s + step)
            k = len(visits[sl])
            n, c, e = seq.numeric[None].repeat(k, 1, 1), seq.categories[None].repeat(k, 1, 1), seq.elapsed[None].repeat(k, 1)
            rows = torch.arange(k)
            n[rows, visits[sl]], c[rows, visits[sl]], e[rows, visits[sl]] = numeric[sl], categories[sl], elapsed[sl]
            logits = self.module(*self._to(n, c, e))
            outs.append(torch.sigmoid(logits[rows.to(self.device), visits[sl].to(self.device)]).double().cpu())
        return torch.cat(outs)

    # -- coalitions of one visit's features -----------------------------------------------------
    def _coalition_values(self, seq: PatientSequence, visits: torch.Tensor, z: torch.Tensor, states: list) -> tuple[torch.Tensor, int]:
        """Value of coalition ``z[r]`` at visit ``visits[r]`` (mean output over the background rows); identical inputs
        are evaluated once."""
        k = len(self.background)
        numeric, categories, elapsed = self.background.fill(seq.numeric[visits], seq.categories[visits], seq.elapsed[visits], z,
                                                            self.uses_elapsed)
        rows = visits.repeat_interleave(k)
        key = torch.cat([rows[:, None].double(), numeric.double(), categories.double(), elapsed[:, None].double()], 1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        fn, fc = self.n_numeric, self.n_categorical
        u_visits, u_num = unique[:, 0].long(), unique[:, 1 : 1 + fn].to(seq.numeric.dtype)
        u_cat, u_el = unique[:, 1 + fn : 1 + fn + fc].long(), unique[:, -1].to(seq.elapsed.dtype)
        if self.bidirectional:
            values = self._full_sequence_outputs(seq, u_visits, u_num, u_cat, u_el)
        else:
            values = self._step_outputs(_PerVisitStates(states, 1, self), u_visits, u_num, u_cat, u_el)
        return values[inverse].view(len(z), k).mean(1), len(unique)

    def _exact_step_values(self, numeric: torch.Tensor, categories: torch.Tensor, elapsed: torch.Tensor, state_index: torch.Tensor,
                           states: _PerVisitStates) -> tuple[torch.Tensor, int]:
        """All 2^M coalition values of each visit (rows of the inputs), one recurrent step from its prefix state.

        A feature already equal to every background value cannot change the input, so only coalitions that leave it
        out are evaluated; the others read the same value."""
        m, k = len(self.feature_names), len(self.background)
        z, _ = exact_coalitions(m)
        codes = torch.arange(2**m)
        dup = self.background.same_as(numeric, categories, elapsed, self.uses_elapsed)
        valid = (codes[None] & dup[:, None]) == 0
        row_of = torch.cumsum(valid.flatten().long(), 0).view(valid.shape) - 1
        visit, code = valid.nonzero(as_tuple=True)
        num, cat, el = self.background.fill(numeric[visit], categories[visit], elapsed[visit], z[code], self.uses_elapsed)
        values = self._step_outputs(states, state_index[visit].repeat_interleave(k), num, cat, el).view(-1, k).mean(1)
        effective = codes[None] & ~dup[:, None]
        return values[row_of.gather(1, effective)], len(values) * k

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
        _, p = exact_coalitions(m)
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
        reuse = previous is not None and from_visit > 0 and bool(previous._states)
        if previous is not None and reuse:
            states = self.prefix_states(seq, from_visit, previous._states[from_visit])
            states[:from_visit] = previous._states[:from_visit]
        else:
            states = self.prefix_states(seq)
        phi, base, output = np.zeros((t_len, m)), np.zeros(t_len), np.zeros(t_len)
        if previous is not None and reuse:
            phi[:from_visit], base[:from_visit], output[:from_visit] = previous.phi[:from_visit], previous.base[:from_visit], previous.output[:from_visit]
        targets = torch.arange(from_visit, t_len)
        exact = m <= self.max_exact
        if exact and not self.bidirectional:
            v, n_eval = self._exact_step_values(seq.numeric[targets], seq.categories[targets], seq.elapsed[targets], targets,
                                                _PerVisitStates(states, 1, self))
            _, p = exact_coalitions(m)
            phi[from_visit:] = (v @ p.T).numpy()
            base[from_visit:], output[from_visit:] = v[:, 0].numpy(), v[:, -1].numpy()
        else:
            n_eval = 0
            for t in targets.tolist():
                def value(z: torch.Tensor, t: int = t) -> torch.Tensor:
                    nonlocal n_eval
                    values, n = self._coalition_values(seq, torch.full((len(z),), t), z, states)
                    n_eval += n
                    return values

                result = shapley_values(m, value, self.max_exact, self.n_samples, self.seed)
                phi[t], base[t], output[t] = result.phi.numpy(), float(result.base), float(result.output)
        return VisitShap(phi, base, output, self.feature_names, exact, n_eval, states if not self.bidirectional else [])

    # -- visits as a whole ----------------------------------------------------------------------
    def _background_only_output(self) -> float:
        """Output of a sequence made of one background visit (mean over the background rows)."""
        bg = self.background
        return float(self._final_outputs(bg.numeric[:, None], bg.categories[:, None], bg.elapsed[:, None].float(),
                                         torch.ones(len(bg), dtype=torch.long)).mean())

    def visit_importance(self, seq: PatientSequence) -> dict[str, np.ndarray]:
        """Ferreira et al.'s instance importance, as their reference code (``calc_instance_score``) computes it:
        occlusion_i = out_N(S) - out_N(S without visit i) (the following visit's elapsed time absorbs the gap);
        outvar_i = out_i(S) - out_{i-1}(S); score_i = tanh(4 (0.7 occlusion_i + 0.3 outvar_i)).
        The first visit has no previous output, so its score is tanh(4 occlusion) (outvar is 0 there).
        A one-visit sequence: 'S without i' is a background visit alone."""
        t_len = len(seq)
        out = self.outputs(seq)
        if t_len == 1:
            occlusion = np.array([out[-1] - self._background_only_output()])
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
        outvar = np.concatenate([[0.0], np.diff(out)])
        weighted = np.concatenate([occlusion[:1], 0.7 * occlusion[1:] + 0.3 * outvar[1:]])
        return {"score": np.tanh(4 * weighted), "occlusion": occlusion, "outvar": outvar, "output": out}


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

