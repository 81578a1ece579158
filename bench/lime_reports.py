"""LIME on 50 demo reports (5000 samples each): our batched explainer against lime.LimeTextExplainer
given the same model as a ``text -> probabilities`` function.

    python bench/lime_reports.py [--workspace DIR] [--reports 50] [--samples 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo_workspace import bench_workspace_root  # noqa: E402
from lime.lime_text import LimeTextExplainer  # noqa: E402

from core.explain.text import LimeSettings, explain_report, model_text_predictor  # noqa: E402
from core.models.report_text import report_tokens  # noqa: E402
from core.store.schema import Report  # noqa: E402
from core.workspace import open_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--reports", type=int, default=50)
    parser.add_argument("--samples", type=int, default=5000)
    args = parser.parse_args()
    root = bench_workspace_root(args.workspace)
    ws = open_workspace(root)
    model = ws.model("report-tfidf")
    with ws.store.session() as s:
        texts = [r.text for r in s.query(Report).order_by(Report.id).limit(args.reports)]
    settings = LimeSettings(num_samples=args.samples, num_features=6, seed=0)
    explain_report(texts[0], model, settings)  # warm-up

    t = time.perf_counter()
    ours = [explain_report(text, model, settings) for text in texts]
    ours_s = time.perf_counter() - t

    predict = model_text_predictor(model)
    peer = LimeTextExplainer(class_names=list(model.manifest.class_names), split_expression=report_tokens, bow=True, random_state=0)
    # The peer gets the text as the model reads it (cleaned, lower case): its tokenizer must return
    # substrings of the text it perturbs.
    t = time.perf_counter()
    theirs = [peer.explain_instance(" ".join(report_tokens(text)), predict, num_features=6, num_samples=args.samples, labels=(0, 1)) for text in texts]
    peer_s = time.perf_counter() - t

    rhos, overlaps = [], []
    for mine, other in zip(ours, theirs, strict=True):
        cls = mine.predicted
        label = list(model.manifest.class_names).index(cls.class_name)
        their_weights = {str(w): v for w, v in other.as_list(label=label)}
        words = sorted(set(cls.weights) | set(their_weights))
        a = [cls.weights.get(w, 0.0) for w in words]
        b = [their_weights.get(w, 0.0) for w in words]
        rhos.append(spearmanr(a, b).statistic if len(words) > 1 else 1.0)
        overlaps.append(len(set(list(cls.weights)[:6]) & set(list(their_weights)[:6])) / 6)
    r2 = np.mean([e.predicted.r2 for e in ours])
    print(f"{len(texts)} reports, {args.samples} samples each, model {model.id} on {model.device}")
    print(f"ours: {ours_s:.2f} s ({1000 * ours_s / len(texts):.0f} ms/report); lime: {peer_s:.2f} s ({1000 * peer_s / len(texts):.0f} ms/report)")
    print(f"mean local fit R2 (ours, predicted class): {r2:.3f}")
    print(f"RESULT lime_speedup_vs_lime={peer_s / ours_s:.1f}")
    print(f"RESULT lime_weight_spearman_vs_lime={np.mean(rhos):.3f}")
    print(f"RESULT lime_top6_overlap_vs_lime={np.mean(overlaps):.3f}")


if __name__ == "__main__":
    main()
