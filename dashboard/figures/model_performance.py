"""Figures of a model's held-out performance."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.models.metrics import ReliabilityCurve


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


def calibration_figure(curve: ReliabilityCurve, title: str = "Calibration (held-out)") -> go.Figure:
    """Reliability diagram: observed share of positives against the mean predicted probability per bin (marker area
    by the bin's count), the diagonal of perfect calibration, and how many predictions fall in each bin below."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"}, name="perfectly calibrated",
                             hoverinfo="skip"), 1, 1)
    largest = max(curve.counts, default=1)
    fig.add_trace(go.Scatter(
        x=curve.mean_predicted, y=curve.observed, mode="lines+markers", name="model", line={"color": "#1f5fa8"},
        marker={"size": [8 + 14 * (c / largest) ** 0.5 for c in curve.counts], "color": "#1f5fa8"},
        customdata=curve.counts, hovertemplate="mean predicted %{x:.2f}<br>observed %{y:.2f}<br>n = %{customdata}<extra></extra>",
    ), 1, 1)
    centres = [(a + b) / 2 for a, b in zip(curve.bin_edges[:-1], curve.bin_edges[1:], strict=True)]
    counts = dict.fromkeys(range(len(centres)), 0)
    width = curve.bin_edges[1] - curve.bin_edges[0]
    for mean, count in zip(curve.mean_predicted, curve.counts, strict=True):
        counts[min(int(mean / width), len(centres) - 1)] += count
    fig.add_trace(go.Bar(x=centres, y=list(counts.values()), width=width * 0.9, marker_color="#9aa5b1", name="predictions per bin",
                         hovertemplate="%{y} predictions<extra></extra>"), 2, 1)
    fig.update_layout(
        title={"text": f"{title}<br><sup>Brier {curve.brier:.3f} · ECE {curve.ece:.3f} ({len(centres)} equal-width bins)</sup>"},
        legend={"orientation": "h", "y": -0.18, "x": 0}, margin={"l": 55, "r": 10, "t": 70, "b": 40}, height=400, template="plotly_white",
    )
    fig.update_yaxes(title_text="observed positive share", range=[-0.02, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="n", row=2, col=1)
    fig.update_xaxes(range=[-0.03, 1.03], row=1, col=1)
    fig.update_xaxes(title_text="predicted probability", range=[-0.03, 1.03], row=2, col=1)
    return fig
