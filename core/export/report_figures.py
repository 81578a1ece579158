"""The report figure (LIME word weights), drawn alike for the report panel and the case report."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.explain.text import ReportExplanation


def word_weight_figure(explanation: ReportExplanation, top_k: int = 6) -> go.Figure:
    """Top-k LIME word weights for every class, side by side (red supports the class, blue opposes it)."""
    classes = explanation.classes
    fig = make_subplots(rows=1, cols=len(classes), subplot_titles=[f"{c.class_name} (p = {c.probability:.2f}, R² {c.r2:.2f})" for c in classes],
                        horizontal_spacing=0.18)
    for i, cls in enumerate(classes, start=1):
        items = list(cls.weights.items())[:top_k][::-1]
        fig.add_trace(go.Bar(
            x=[w for _, w in items], y=[word for word, _ in items], orientation="h", showlegend=False,
            marker_color=["#d62728" if w > 0 else "#1f77b4" for _, w in items],
            hovertemplate="%{y}: %{x:+.3f}<extra>" + cls.class_name + "</extra>",
        ), row=1, col=i)
        fig.update_xaxes(title_text="LIME weight", zeroline=True, zerolinecolor="#888", row=1, col=i)
    fig.update_layout(height=300, margin={"l": 90, "r": 20, "t": 50, "b": 45}, template="plotly_white")
    return fig
