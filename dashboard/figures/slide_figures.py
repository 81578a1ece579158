"""Figures of the slide page."""

from __future__ import annotations

import plotly.graph_objects as go

from core.heatmaps.grade_group import display_class_name

GRADE_BAR_COLOURS = {"benign": "#9aa5b1", "GG3": "rgb(0,168,0)", "GG4": "rgb(0,92,230)", "GG5": "rgb(220,0,0)"}


def grade_fraction_figure(fractions: dict[str, float]) -> go.Figure:
    """Share of tissue area per predicted class (tissue-masked argmax)."""
    names = list(fractions)
    fig = go.Figure(go.Bar(
        x=[100 * fractions[n] for n in names], y=[display_class_name(n) for n in names], orientation="h",
        marker_color=[GRADE_BAR_COLOURS.get(n, "#6c757d") for n in names],
        text=[f"{100 * fractions[n]:.1f}%" for n in names], textposition="auto",
        hovertemplate="%{y}: %{x:.1f}% of tissue<extra></extra>",
    ))
    fig.update_layout(
        title="Predicted class, % of tissue area", xaxis={"range": [0, 100], "title": "% of tissue"},
        yaxis={"autorange": "reversed"}, height=230, margin={"l": 130, "r": 10, "t": 40, "b": 40}, template="plotly_white",
    )
    return fig
