"""The report figure (LIME word weights), drawn alike for the report panel and the case report."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.explain.text import ReportExplanation, ReportFeatures


def feature_labels(features: ReportFeatures, mode: str) -> dict[str, str]:
    """What the figure calls each feature: the word; in position mode a repeated word also gets its position among
    the words the model reads ("grade (word 7)"), so its occurrences stay apart."""
    if mode == "bow":  # the key is the word
        return {f: f for f in features.features}
    counts = {t: features.tokens.count(t) for t in set(features.tokens)}
    return {f: features.tokens[int(f)] + (f" (word {int(f) + 1})" if counts[features.tokens[int(f)]] > 1 else "")
            for f in features.features}


def word_weight_figure(explanation: ReportExplanation, top_k: int = 6) -> go.Figure:
    """Top-k LIME word weights for every class, side by side (red supports the class, blue opposes it)."""
    classes = explanation.classes
    label = feature_labels(explanation.features, explanation.settings.mode)
    fig = make_subplots(rows=1, cols=len(classes), subplot_titles=[f"{c.class_name} (p = {c.probability:.2f}, R² {c.r2:.2f})" for c in classes],
                        horizontal_spacing=0.18)
    for i, cls in enumerate(classes, start=1):
        items = list(cls.weights.items())[:top_k][::-1]
        fig.add_trace(go.Bar(
            x=[w for _, w in items], y=[label[key] for key, _ in items], orientation="h", showlegend=False,
            marker_color=["#d62728" if w > 0 else "#1f77b4" for _, w in items],
            hovertemplate="%{y}: %{x:+.3f}<extra>" + cls.class_name + "</extra>",
        ), row=1, col=i)
        fig.update_xaxes(title_text="LIME weight", zeroline=True, zerolinecolor="#888", row=1, col=i)
    fig.update_layout(height=300, margin={"l": 90, "r": 20, "t": 50, "b": 45}, template="plotly_white")
    return fig
