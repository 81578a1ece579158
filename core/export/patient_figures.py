"""The patient figures (risk, visit importance, SHAP waterfall), drawn alike for the patient panel and the case report."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from core.explain.patient_explanations import PatientExplanation
from core.export.visit_risk import Values, visit_risk_figure


def shap_waterfall_figure(base: float, phi: Values, names: Sequence[str], values: Sequence[object], output: float,
                          title: str, top_k: int = 8) -> go.Figure:
    """From the expected value (base) to the model output: the top-k contributions, the rest summed."""
    contributions = np.asarray(phi, float)
    order = list(np.argsort(-np.abs(contributions))[:top_k])
    rest = float(contributions.sum() - contributions[order].sum())
    labels = [f"{names[i]} = {_fmt(values[i])}" for i in order]
    deltas = [float(contributions[i]) for i in order]
    if len(contributions) > top_k:
        labels.append(f"{len(contributions) - top_k} other features")
        deltas.append(rest)
    fig = go.Figure(go.Waterfall(
        orientation="h", measure=["absolute", *["relative"] * len(deltas), "total"],
        y=["expected value", *labels, "model output"], x=[base, *deltas, output],
        increasing={"marker": {"color": "#d62728"}}, decreasing={"marker": {"color": "#1f77b4"}},
        totals={"marker": {"color": "#555"}}, connector={"line": {"color": "#bbb"}},
        text=[f"{base:.3f}", *[f"{d:+.3f}" for d in deltas], f"{output:.3f}"], textposition="outside", cliponaxis=False,
    ))
    # automargin: the plot makes room for its longest label instead of cutting it
    fig.update_layout(title=title, yaxis={"autorange": "reversed", "automargin": True}, xaxis={"title": "probability", "automargin": True},
                      height=80 + 34 * (len(deltas) + 2), margin={"l": 230, "r": 70, "t": 40, "b": 40}, template="plotly_white")
    return fig


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def visit_importance_figure(days: Sequence[float], scores: Values, title: str = "Visit importance",
                            compare: Values | None = None) -> go.Figure:
    """One row of cells per sequence (red pushes the final prediction up, blue down), in [-1, 1]."""
    rows = [list(scores)] + ([list(compare)] if compare is not None else [])
    names = ["stored"] + (["what-if"] if compare is not None else [])
    fig = go.Figure(go.Heatmap(
        z=rows, x=[f"visit {i + 1}<br>day {d:.0f}" for i, d in enumerate(days)], y=names, zmin=-1, zmax=1, colorscale="RdBu_r",
        text=[[f"{v:+.2f}" for v in r] for r in rows], texttemplate="%{text}",
        colorbar={"title": "score", "len": 1.0, "thickness": 12, "tickvals": [-1, 0, 1]},  # three ticks: room for them at any height
        hovertemplate="%{x}<br>importance %{z:+.3f}<extra>%{y}</extra>",
    ))
    fig.update_layout(title=title, height=140 + 40 * len(rows), margin={"l": 70, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig


def cohort_importance_figure(patient_ids: Sequence[str], scores: Sequence[Sequence[float]]) -> go.Figure:
    """Rows = patients, cells = visits (padded with blanks)."""
    width = max((len(s) for s in scores), default=0)
    z = [list(s) + [None] * (width - len(s)) for s in scores]
    fig = go.Figure(go.Heatmap(z=z, x=[f"visit {i + 1}" for i in range(width)], y=list(patient_ids), zmin=-1, zmax=1,
                               colorscale="RdBu_r", hovertemplate="%{y} %{x}<br>importance %{z:+.2f}<extra></extra>",
                               colorbar={"title": "score"}))
    fig.update_layout(title="Visit importance across patients", yaxis={"autorange": "reversed"}, height=120 + 22 * len(patient_ids),
                      margin={"l": 70, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig


def visit_figures(stored: PatientExplanation, edited: PatientExplanation | None, t: int, positive: str,
                  waterfall_title: str) -> tuple[go.Figure, go.Figure, go.Figure]:
    """The patient panel's figures for visit ``t``: risk at each visit (with the what-if trajectory), visit importance
    (compared with the what-if's) and the visit's SHAP waterfall (the what-if's when there is one)."""
    risk = visit_risk_figure(stored.days, stored.shap.output, stored.labels, f"P({positive}) at each visit",
                             what_if=(edited.days, edited.shap.output) if edited else None, selected=t)
    importance = visit_importance_figure(stored.days, stored.importance["score"], compare=edited.importance["score"] if edited else None)
    shown = edited or stored
    values = shown.feature_values(t)
    waterfall = shap_waterfall_figure(shown.shap.base[t], shown.shap.phi[t], shown.feature_names,
                                      [values.get(n) for n in shown.feature_names], shown.shap.output[t], waterfall_title)
    return risk, importance, waterfall
