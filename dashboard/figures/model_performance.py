"""Figures of a model's held-out performance."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go


def roc_figure(fpr: Sequence[float], tpr: Sequence[float], auc: float | None, title: str = "ROC (held-out)") -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"}, name="chance", hoverinfo="skip"))
    label = "model" if auc is None else f"model (AUC {auc:.3f})"
    fig.add_trace(go.Scatter(x=list(fpr), y=list(tpr), mode="lines", line={"color": "#1f5fa8", "width": 2.5}, name=label))
    fig.update_layout(
        title=title, xaxis_title="False positive rate", yaxis_title="True positive rate",
        xaxis={"range": [0, 1], "constrain": "domain"}, yaxis={"range": [0, 1.02], "scaleanchor": "x"},
        legend={"x": 0.98, "y": 0.02, "xanchor": "right", "yanchor": "bottom"},
        margin={"l": 50, "r": 10, "t": 40, "b": 45}, height=340, template="plotly_white",
    )
    return fig


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str = "Confusion matrix") -> go.Figure:
    """Rows are true classes, columns predicted; each cell shows its count and row share."""
    shares = [[v / max(1, sum(row)) for v in row] for row in matrix]
    text = [[f"{v}<br>{s:.0%}" for v, s in zip(row, srow)] for row, srow in zip(matrix, shares)]
    fig = go.Figure(go.Heatmap(
        z=shares, x=list(class_names), y=list(class_names), text=text, texttemplate="%{text}",
        colorscale="Blues", zmin=0, zmax=1, showscale=False, hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
    ))
    fig.update_layout(
        title=title, xaxis_title="Predicted", yaxis_title="True", yaxis={"autorange": "reversed"},
        margin={"l": 90, "r": 10, "t": 40, "b": 60}, height=340, template="plotly_white",
    )
    return fig
