"""Figures of the cohort (patients) page."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.explain.cohort_explanations import CohortShap, DatasetOverview


def feature_importance_figure(mean_abs: dict[str, float]) -> go.Figure:
    names = list(mean_abs)[::-1]
    fig = go.Figure(go.Bar(x=[mean_abs[n] for n in names], y=names, orientation="h", marker_color="#1f5fa8",
                           hovertemplate="%{y}: mean |SHAP| %{x:.4f}<extra></extra>"))
    fig.update_layout(title="Feature importance (mean |SHAP| over visits)", xaxis_title="mean |SHAP value|",
                      height=120 + 26 * len(names), margin={"l": 150, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig


def shap_beeswarm_figure(cohort: CohortShap, max_points: int = 4000, seed: int = 0) -> go.Figure:
    """One row per feature: every visit's SHAP value, coloured by the feature value (low blue, high red)."""
    order = list(cohort.mean_abs())[::-1]
    rng = np.random.default_rng(seed)
    fig = go.Figure()
    for row, name in enumerate(order):
        j = cohort.feature_names.index(name)
        phi, values = cohort.phi[:, j], cohort.values[:, j]
        if len(phi) > max_points:
            keep = rng.choice(len(phi), max_points, replace=False)
            phi, values = phi[keep], values[keep]
        span = np.ptp(values) or 1.0
        fig.add_trace(go.Scattergl(
            x=phi, y=row + rng.uniform(-0.3, 0.3, len(phi)), mode="markers", name=name, showlegend=False,
            marker={"size": 4, "color": (values - values.min()) / span, "colorscale": "RdBu_r", "cmin": 0, "cmax": 1,
                    "showscale": row == 0, "colorbar": {"title": "feature value", "tickvals": [0, 1], "ticktext": ["low", "high"]}},
            hovertemplate=name + ": SHAP %{x:.3f}<extra></extra>",
        ))
    fig.update_layout(title="SHAP values per visit (beeswarm)", xaxis_title="SHAP value (impact on the visit's output)",
                      yaxis={"tickvals": list(range(len(order))), "ticktext": order}, height=120 + 30 * len(order),
                      margin={"l": 150, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig


OVERVIEW_ATTRIBUTES = 3  # patient attributes shown in the overview's second row (the first three the workspace declares)


def dataset_overview_figure(overview: DatasetOverview) -> go.Figure:
    """Visits per patient, days between visits and visit labels; then the distribution of each of the first patient
    attributes (a histogram of numbers, counts of text values)."""
    shown = list(overview.attributes.items())[:OVERVIEW_ATTRIBUTES]
    rows = 2 if shown else 1
    fig = make_subplots(rows=rows, cols=3, subplot_titles=["Visits per patient", "Days between visits", "Visit labels",
                                                           *(label for label, _ in shown)])
    fig.add_trace(go.Histogram(x=overview.sequence_lengths, marker_color="#1f5fa8"), 1, 1)
    fig.add_trace(go.Histogram(x=overview.visit_intervals, nbinsx=20, marker_color="#1f5fa8"), 1, 2)
    fig.add_trace(_counts_bar(overview.label_counts), 1, 3)
    for col, (_, values) in enumerate(shown, 1):
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        trace = go.Histogram(x=values, nbinsx=15, marker_color="#1f5fa8") if numbers and values else \
            _counts_bar(dict(sorted(Counter(str(v) for v in values).items())))
        fig.add_trace(trace, 2, col)
    fig.update_layout(showlegend=False, height=280 * rows, margin={"l": 40, "r": 10, "t": 50, "b": 40}, template="plotly_white",
                      title=f"{overview.patients} patients, {overview.visits} visits")
    return fig


def _counts_bar(counts: dict[str, int]) -> go.Bar:
    return go.Bar(x=list(counts), y=list(counts.values()), marker_color="#6c757d", text=list(counts.values()), textposition="auto")


def model_comparison_figure(names: Sequence[str], metrics: dict[str, Sequence[float | None]]) -> go.Figure:
    """Held-out metrics of every model side by side."""
    fig = go.Figure([go.Bar(name=metric, x=list(names), y=[v if v is not None else 0 for v in values],
                            text=[f"{v:.3f}" if v is not None else "n/a" for v in values], textposition="auto")
                     for metric, values in metrics.items()])
    fig.update_layout(title="Model comparison (held-out)", barmode="group", yaxis={"range": [0, 1.05]}, height=340,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig
