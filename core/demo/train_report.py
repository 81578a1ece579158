"""Training the demo's report classifier: TF-IDF n-grams + logistic regression, as a torch module."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from core.models.report_classifier import TfidfLogisticRegression
from core.models.report_text import report_ngrams, report_tokens, term_counts


def build_vocabulary(texts: Sequence[str], max_n: int = 2, min_df: int = 2, max_terms: int = 3000) -> dict[str, int]:
    doc_freq = Counter(g for t in texts for g in set(report_ngrams(report_tokens(t), max_n)))
    terms = sorted((g for g, df in doc_freq.items() if df >= min_df), key=lambda g: (-doc_freq[g], g))[:max_terms]
    return {g: i for i, g in enumerate(sorted(terms))}


def train_report_classifier(texts: Sequence[str], labels: np.ndarray, vocabulary: dict[str, int], seed: int) -> TfidfLogisticRegression:
    counts = term_counts(texts, vocabulary)
    model = TfidfLogisticRegression(len(vocabulary), num_classes=2)
    doc_freq = (counts > 0).sum(0).float()
    model.idf.copy_(torch.log((1 + len(texts)) / (1 + doc_freq)) + 1)  # smooth idf, as scikit-learn
    with torch.no_grad():
        features = model.tfidf(counts).numpy()
    lr = LogisticRegression(C=10.0, max_iter=2000, random_state=seed).fit(features, labels)
    with torch.no_grad():  # binary LR as two logits: class 0 fixed at zero
        model.linear.weight.zero_()
        model.linear.bias.zero_()
        model.linear.weight[1] = torch.from_numpy(lr.coef_[0]).float()
        model.linear.bias[1] = float(lr.intercept_[0])
    return model.eval()


@torch.no_grad()
def report_probabilities(model: TfidfLogisticRegression, texts: Sequence[str], vocabulary: dict[str, int]) -> np.ndarray:
    return torch.softmax(model(term_counts(texts, vocabulary)), 1).numpy()
