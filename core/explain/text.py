"""LIME for pathology reports, batched on the device.

Perturbations are a (num_samples x n_features) mask tensor. For the TF-IDF report model the masked
n-gram counts are computed directly from the masks (no strings are built); any other
``text -> probabilities`` model gets perturbed strings in batches. The local surrogate follows
lime.LimeTextExplainer: cosine distance to the original x 100, kernel sqrt(exp(-d^2 / width^2)),
forward selection (<= 6 features) or highest weights, then a weighted ridge (alpha 1) whose
coefficients are the word weights and whose weighted R^2 is the local fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from core.errors import PathReviewError
from core.models.registry import LoadedModel
from core.models.report_text import ModelWords, clean_report, report_tokens, term_counts

MAX_REPORT_BYTES = 200_000


class ReportTextError(PathReviewError):
    """A report the explainer cannot work on (empty, nothing the model reads, too large)."""


@dataclass(frozen=True)
class LimeSettings:
    num_features: int = 6
    num_samples: int = 5000
    kernel_width: float = 25.0
    seed: int = 0
    mode: str = "bow"  # "bow": a feature is a distinct word (all occurrences); "position": one token, keyed by its position
    feature_selection: str = "auto"  # auto | forward_selection | highest_weights
    batch_size: int = 2048

    @classmethod
    def from_form(cls, num_features: str | float, num_samples: str | float, seed: str | float, kernel_width: str | float) -> LimeSettings:
        """Checked settings from a form's (or a request's) values. A browser sends an empty number box, and one holding a
        value outside the box's range, as None: the message names the setting and its range rather than calling it text."""
        given = {"number of features": (num_features, "1–50"), "number of samples": (num_samples, "10–50,000"), "seed": (seed, "0 or more"),
                 "kernel width": (kernel_width, "above 0, up to 1000")}
        missing = [f"{name} ({allowed})" for name, (value, allowed) in given.items() if value is None]
        if missing:
            raise PathReviewError(f"the LIME setting {', '.join(missing)} is empty or outside the range its box allows; enter a value in range")
        try:
            return cls(num_features=int(num_features), num_samples=int(num_samples), seed=int(seed), kernel_width=float(kernel_width)).validate()
        except (TypeError, ValueError) as exc:
            raise PathReviewError("every LIME setting must be a number (features, samples and seed whole numbers)") from exc

    def validate(self) -> LimeSettings:
        if self.mode not in ("bow", "position"):
            raise PathReviewError("mode must be 'bow' or 'position'")
        if self.feature_selection not in ("auto", "forward_selection", "highest_weights"):
            raise PathReviewError("feature selection must be auto, forward_selection or highest_weights")
        if not (1 <= self.num_features <= 50 and 10 <= self.num_samples <= 50_000 and 0 < self.kernel_width <= 1000):
            raise PathReviewError("the LIME settings must be: number of features 1–50, number of samples 10–50,000, kernel width "
                                  f"above 0 and up to 1000 (got {self.num_features}, {self.num_samples}, {self.kernel_width:g})")
        if self.batch_size < 1:
            raise PathReviewError("batch size must be at least 1")
        return self


@dataclass(frozen=True)
class ReportFeatures:
    """What the model reads, and the explanation's features over it."""

    cleaned: str
    tokens: list[str]  # model tokens in order (stop words removed)
    features: list[str]  # feature keys: distinct words (bow), or each token's position "0", "1", ... (position)
    token_feature: np.ndarray  # (T,) feature index of each token


def check_report_text(text: str) -> None:
    if len(text.encode("utf-8", errors="replace")) > MAX_REPORT_BYTES:
        raise ReportTextError(f"the report is {len(text.encode('utf-8', errors='replace')) / 1000:.0f} kB; "
                              f"reports over {MAX_REPORT_BYTES // 1000} kB are not explained")
    if not text.strip():
        raise ReportTextError("the report is empty")


MAX_EDITED_REPORT_CHARS = 100_000  # what the what-if editor accepts: many times the longest real report
# The count path's bigram table grows with the square of the words the model reads (3,000 words: ~7 s, ~70 MB).
MAX_EDITED_REPORT_WORDS = 3_000


# LIME's work and memory grow with samples x words the model reads; workspace.toml's [limits] may set another bound.
DEFAULT_LIME_SAMPLE_WORDS = 10_000_000


def check_edited_report(text: object, max_chars: int = MAX_EDITED_REPORT_CHARS) -> str:
    """A what-if edit of a report, refused before anything is computed when it is not text or too long."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ReportTextError("the edited report must be text")
    max_chars = min(max_chars, MAX_EDITED_REPORT_CHARS)
    if len(text) > max_chars:
        raise ReportTextError(f"the edited report has {len(text):,} characters; what-if edits are limited to "
                              f"{max_chars:,} characters, so shorten it and run it again")
    words = len(report_tokens(text))
    if words > MAX_EDITED_REPORT_WORDS:
        raise ReportTextError(f"the edited report has {words:,} words the model reads; what-if edits are limited to "
                              f"{MAX_EDITED_REPORT_WORDS:,}, so shorten it and run it again")
    return text


def report_features(text: str, mode: str = "bow") -> ReportFeatures:
    check_report_text(text)
    tokens = report_tokens(text)
    if not tokens:
        raise ReportTextError("the report has no words the model reads (only stop words, identifiers or punctuation)")
    if mode == "bow":
        features = list(dict.fromkeys(tokens))
        index = {w: i for i, w in enumerate(features)}
        token_feature = np.array([index[t] for t in tokens])
    else:  # keyed by position, so a repeated word is several features and none overwrites another's weight
        features = [str(i) for i in range(len(tokens))]
        token_feature = np.arange(len(tokens))
    return ReportFeatures(clean_report(text), tokens, features, token_feature)


def lime_masks(n_features: int, num_samples: int, seed: int, device: torch.device) -> torch.Tensor:
    """Row 0 keeps every feature; each other row removes k ~ U{1..n} features chosen at random (as LIME)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    removed = torch.randint(1, n_features + 1, (num_samples - 1, 1), generator=g)
    ranks = torch.rand(num_samples - 1, n_features, generator=g).argsort(1).argsort(1)
    masks = torch.ones(num_samples, n_features)
    masks[1:] = (ranks >= removed).float()
    return masks.to(device)


def kernel_weights(masks: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """sqrt(exp(-d^2 / w^2)) with d = 100 x cosine distance between each mask and the all-ones row."""
    n = masks.shape[1]
    kept = masks.sum(1)
    similarity = torch.where(kept > 0, kept / (kept.sqrt() * n**0.5), torch.zeros_like(kept))
    distance = (1 - similarity) * 100
    return torch.sqrt(torch.exp(-(distance**2) / kernel_width**2))


@dataclass(frozen=True)
class RidgeFit:
    coef: torch.Tensor  # (k,)
    intercept: float
    r2: float  # weighted R^2 on the fitted data
    local_prediction: float  # surrogate's prediction for the unperturbed report


def weighted_ridge(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float = 1.0) -> RidgeFit:
    """Ridge with intercept and sample weights, as scikit-learn's Ridge (centre by weighted means, then solve)."""
    x, y, w = x.double(), y.double(), w.double()
    sw = w / w.sum()
    x_mean, y_mean = sw @ x, sw @ y
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ (w[:, None] * xc) + alpha * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    coef = torch.linalg.solve(gram, xc.T @ (w * yc))
    intercept = y_mean - x_mean @ coef
    pred = x @ coef + intercept
    ss_res, ss_tot = (w * (y - pred) ** 2).sum(), (w * (y - (sw @ y)) ** 2).sum()
    r2 = float(1 - ss_res / ss_tot) if ss_tot > 0 else 1.0
    return RidgeFit(coef.float(), float(intercept), r2, float(pred[0]))


@dataclass(frozen=True)
class WeightedMoments:
    """Weighted centred cross-products of the perturbation design, shared by every class's fit."""

    gram: torch.Tensor  # (n, n) Xc^T W Xc
    x_mean: torch.Tensor  # (n,)
    xc: torch.Tensor  # (S, n)
    w: torch.Tensor  # (S,)

    @classmethod
    def of(cls, x: torch.Tensor, w: torch.Tensor) -> WeightedMoments:
        x, w = x.double(), w.double()
        x_mean = (w / w.sum()) @ x
        xc = x - x_mean
        return cls(xc.T @ (w[:, None] * xc), x_mean, xc, w)


def select_features(moments: WeightedMoments, y: torch.Tensor, x0: torch.Tensor, k: int, method: str) -> list[int]:
    """LIME's feature selection. Forward selection adds, k times, the feature whose least-squares fit
    (with intercept, sample weights) has the best R^2; every candidate is scored at once from the moments:
    R^2(U) = b_U^T G_UU^-1 b_U / SS_tot."""
    w = moments.w
    y = y.double()
    yc = y - (w / w.sum()) @ y
    b = moments.xc.T @ (w * yc)
    ss_tot = (w * yc**2).sum().clamp_min(1e-300)
    n = moments.gram.shape[0]
    k = min(k, n)
    if method == "auto":
        method = "forward_selection" if k <= 6 else "highest_weights"
    if method == "highest_weights":
        coef = torch.linalg.solve(moments.gram + 0.01 * torch.eye(n, dtype=b.dtype, device=b.device), b)
        return torch.argsort((coef * x0.double()).abs(), descending=True)[:k].tolist()
    used: list[int] = []
    eye = 1e-10 * torch.eye(k, dtype=b.dtype, device=b.device)
    for step in range(k):
        candidates = torch.tensor([f for f in range(n) if f not in used], device=b.device)
        idx = torch.cat([torch.tensor(used, dtype=torch.long, device=b.device).expand(len(candidates), step), candidates[:, None]], 1)
        gram = moments.gram[idx[:, :, None], idx[:, None, :]] + eye[: step + 1, : step + 1]
        rhs = b[idx]
        explained = (rhs * torch.linalg.solve(gram, rhs[..., None])[..., 0]).sum(1) / ss_tot
        used.append(int(candidates[int(torch.argmax(explained))]))
    return used


# -- evaluating perturbations ------------------------------------------------------------------------

def _bigram_table(tokens: Sequence[str], vocabulary: dict[str, int]) -> torch.Tensor:
    """(T + 1, T + 1) vocabulary column of the bigram (token i, token j), -1 when absent; row/col T = none."""
    n = len(tokens)
    table = torch.full((n + 1, n + 1), -1, dtype=torch.long)
    for i in range(n):
        for j in range(i + 1, n):
            col = vocabulary.get(f"{tokens[i]} {tokens[j]}")
            if col is not None:
                table[i, j] = col
    return table


def masked_term_counts(features: ReportFeatures, masks: torch.Tensor, vocabulary: dict[str, int], max_n: int = 2) -> torch.Tensor:
    """Unigram and bigram counts of every perturbed report, straight from the masks.

    Removing words makes new neighbours adjacent, exactly as in the string: the bigrams of a perturbed
    report are (kept token, next kept token) pairs, found with a reversed cumulative minimum."""
    if max_n > 2:
        raise ReportTextError("the count path handles n-grams up to 2; use the text path for longer n-grams")
    device = masks.device
    tokens = features.tokens
    n_tok = len(tokens)
    keep = masks[:, torch.as_tensor(features.token_feature, device=device)] > 0  # (S, T)
    counts = torch.zeros(masks.shape[0], len(vocabulary), device=device)
    unigram = torch.tensor([vocabulary.get(t, -1) for t in tokens], device=device)
    known = unigram >= 0
    counts.index_add_(1, unigram[known], keep[:, known].float())
    if max_n == 2 and n_tok > 1:
        positions = torch.arange(n_tok, device=device).expand_as(keep)
        kept_pos = torch.where(keep, positions, torch.full_like(positions, n_tok))
        # next_kept[s, i] = first kept position after i (n_tok when none).
        after = torch.cat([kept_pos[:, 1:], torch.full_like(kept_pos[:, :1], n_tok)], 1)
        next_kept = torch.flip(torch.cummin(torch.flip(after, [1]), 1).values, [1])
        table = _bigram_table(tokens, vocabulary).to(device)
        cols = table[positions, next_kept]
        valid = keep & (cols >= 0)
        rows = torch.arange(masks.shape[0], device=device)[:, None].expand_as(cols)
        counts.index_put_((rows[valid], cols[valid]), torch.ones(int(valid.sum()), device=device), accumulate=True)
    return counts


def perturbed_texts(features: ReportFeatures, masks: torch.Tensor) -> list[str]:
    """The perturbed reports as strings (for black-box models): kept model tokens in order. They are ModelWords, so the
    report model reads exactly the kept tokens, as on the count path, rather than cleaning the report a second time."""
    keep = (masks[:, torch.as_tensor(features.token_feature, device=masks.device)] > 0).cpu().numpy()
    return [ModelWords.of([t for t, k in zip(features.tokens, row, strict=True) if k]) for row in keep]


TextPredictor = Callable[[list[str]], np.ndarray]


def model_text_predictor(model: LoadedModel) -> TextPredictor:
    """The report model as a black box ``texts -> probabilities`` (what LIME's users must write)."""
    def predict(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            counts = term_counts(texts, model.vocabulary, model.manifest.input.max_ngram).to(model.device)
            return torch.softmax(model.module(counts), 1).cpu().numpy()

    return predict


def _predict_masked(features: ReportFeatures, masks: torch.Tensor, model: LoadedModel | None, predictor: TextPredictor | None,
                    batch_size: int) -> torch.Tensor:
    out = []
    for start in range(0, masks.shape[0], batch_size):
        chunk = masks[start : start + batch_size]
        if model is not None:
            with torch.no_grad():
                counts = masked_term_counts(features, chunk, model.vocabulary, model.manifest.input.max_ngram)
                out.append(torch.softmax(model.module(counts), 1).float())
        else:
            assert predictor is not None  # the caller checks that exactly one of model and predictor is given
            out.append(torch.as_tensor(np.asarray(predictor(perturbed_texts(features, chunk))), dtype=torch.float32, device=masks.device))
    return torch.cat(out)


# -- explanations ---------------------------------------------------------------------------------

@dataclass
class ClassExplanation:
    class_name: str
    probability: float
    weights: dict[str, float]  # feature -> LIME weight, strongest first
    intercept: float
    r2: float
    local_prediction: float


@dataclass
class ReportExplanation:
    features: ReportFeatures
    probabilities: list[float]
    classes: list[ClassExplanation]
    settings: LimeSettings
    provenance: dict = field(default_factory=dict)

    @property
    def predicted(self) -> ClassExplanation:
        return max(self.classes, key=lambda c: c.probability)

    def weight_of(self, class_name: str, feature: str) -> float:
        return next(c for c in self.classes if c.class_name == class_name).weights.get(feature, 0.0)


def check_lime_work(features: ReportFeatures, settings: LimeSettings, max_sample_words: int = DEFAULT_LIME_SAMPLE_WORDS) -> None:
    """Refuse, before any work, an explanation whose samples x words exceed the bound."""
    work = settings.num_samples * len(features.features)
    if work > max_sample_words:
        most = max(1, max_sample_words // max(1, len(features.features)))
        raise ReportTextError(f"{settings.num_samples:,} LIME samples of a report with {len(features.features):,} distinct words is "
                              f"more work than this server allows ({max_sample_words:,} sample-words); use at most {most:,} samples")


def explain_report(text: str, model: LoadedModel | None = None, settings: LimeSettings = LimeSettings(),
                   predictor: TextPredictor | None = None, class_names: Sequence[str] | None = None,
                   max_sample_words: int = DEFAULT_LIME_SAMPLE_WORDS) -> ReportExplanation:
    """Explain every class of ``model`` (count path) or of a black-box ``predictor`` (text path)."""
    settings.validate()
    if (model is None) == (predictor is None):
        raise ValueError("give either a report model or a text predictor")
    device = model.device if model is not None else torch.device("cpu")
    names = list(model.manifest.class_names if model is not None else class_names or [])
    features = report_features(text, settings.mode)
    check_lime_work(features, settings, max_sample_words)
    masks = lime_masks(len(features.features), settings.num_samples, settings.seed, device)
    probs = _predict_masked(features, masks, model, predictor, settings.batch_size).double()
    weights = kernel_weights(masks, settings.kernel_width).double()
    x = masks.double()
    moments = WeightedMoments.of(x, weights)
    classes = []
    for c in range(probs.shape[1]):
        used = select_features(moments, probs[:, c], x[0], settings.num_features, settings.feature_selection)
        fit = weighted_ridge(x[:, used], probs[:, c], weights, alpha=1.0)
        ranked = sorted(zip(used, fit.coef.tolist(), strict=True), key=lambda t: -abs(t[1]))
        classes.append(ClassExplanation(
            class_name=names[c] if c < len(names) else str(c), probability=float(probs[0, c]),
            weights={features.features[f]: w for f, w in ranked}, intercept=fit.intercept, r2=fit.r2,
            local_prediction=fit.local_prediction,
        ))
    provenance = {"explainer": "LIME (batched masks)", "path": "term counts" if model is not None else "text",
                  "settings": settings.__dict__.copy()}
    if model is not None:
        provenance.update({"model_id": model.id, "weights_sha256": model.weights_sha256})
    return ReportExplanation(features, probs[0].tolist(), classes, settings, provenance)


@dataclass
class StabilityReport:
    seeds: list[int]
    class_name: str
    weight_mean: dict[str, float]
    weight_std: dict[str, float]
    top_k_overlap: float  # mean pairwise Jaccard overlap of the top-k words across seeds
    label: str  # stable | moderate | unstable


def explanation_stability(text: str, model: LoadedModel, settings: LimeSettings = LimeSettings(), n_seeds: int = 5) -> StabilityReport:
    """Repeat LIME with ``n_seeds`` seeds; spread of each word's weight and agreement of the top words."""
    runs = [explain_report(text, model, LimeSettings(**{**settings.__dict__, "seed": settings.seed + i})) for i in range(n_seeds)]
    target = runs[0].predicted.class_name
    per_run = [r.classes[[c.class_name for c in r.classes].index(target)].weights for r in runs]
    words = sorted({w for weights in per_run for w in weights})
    matrix = np.array([[weights.get(w, 0.0) for w in words] for weights in per_run])
    tops = [set(list(weights)[: settings.num_features]) for weights in per_run]
    pairs = [(a, b) for i, a in enumerate(tops) for b in tops[i + 1 :]]
    overlap = float(np.mean([len(a & b) / max(1, len(a | b)) for a, b in pairs])) if pairs else 1.0
    label = "stable" if overlap >= 0.8 else "moderate" if overlap >= 0.5 else "unstable"
    return StabilityReport(
        seeds=[settings.seed + i for i in range(n_seeds)], class_name=target,
        weight_mean=dict(zip(words, matrix.mean(0).round(5).tolist(), strict=True)),
        weight_std=dict(zip(words, matrix.std(0).round(5).tolist(), strict=True)), top_k_overlap=overlap, label=label,
    )
