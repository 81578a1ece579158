"""A patient's model risk at each visit over time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

Values = Sequence[float] | np.ndarray  # per visit


def visit_risk_figure(days: Sequence[float], risks: Sequence[float | None] | np.ndarray, labels: Sequence[int | None], title: str,
                      what_if: tuple[Sequence[float], Values] | None = None, selected: int | None = None) -> go.Figure:
    """Risk at every visit; optionally a what-if trajectory and a highlighted visit. Every point carries its visit's
    index as customdata, so a click on any trace (a label marker often covers the risk marker) selects that visit."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=list(days), y=list(risks), customdata=list(range(len(days))), mode="lines+markers", name="model risk",
        line={"color": "#b03a2e", "width": 2}, marker={"size": 9},
        hovertemplate="day %{x:.0f}<br>risk %{y:.2f}<extra></extra>",
    ))
    observed = [t for t, y in enumerate(labels) if y is not None]
    if observed:
        fig.add_trace(go.Scatter(
            x=[days[t] for t in observed], y=[float(labels[t] or 0) for t in observed], customdata=observed, mode="markers", name="recorded label",
            marker={"symbol": "x", "size": 9, "color": "#333"}, hovertemplate="day %{x:.0f}<br>label %{y:.0f}<extra></extra>",
        ))
    if what_if is not None:
        fig.add_trace(go.Scatter(x=list(what_if[0]), y=list(what_if[1]), customdata=list(range(len(what_if[0]))),
                                 mode="lines+markers", name="what-if",
                                 line={"color": "#6f42c1", "width": 2, "dash": "dash"}, marker={"size": 8, "symbol": "diamond"},
                                 hovertemplate="day %{x:.0f}<br>what-if risk %{y:.2f}<extra></extra>"))
    if selected is not None and 0 <= selected < len(days):
        fig.add_vline(x=days[selected], line={"color": "#6c757d", "width": 1})
    fig.add_hline(y=0.5, line={"dash": "dot", "color": "#999"})
    fig.update_layout(
        title=title, xaxis_title="Days since first visit", yaxis={"title": "Probability", "range": [-0.05, 1.05]},
        margin={"l": 50, "r": 10, "t": 40, "b": 45}, height=300, template="plotly_white",
        legend={"orientation": "h", "y": -0.3},
    )
    return fig
