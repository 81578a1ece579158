"""Audit trail at a glance: how many events of each action are shown."""

from __future__ import annotations

import plotly.graph_objects as go


def audit_activity_figure(counts: dict[str, int]) -> go.Figure:
    actions = sorted(counts, key=lambda a: -counts[a])
    fig = go.Figure(go.Bar(x=actions, y=[counts[a] for a in actions], marker_color="#2c3e50"))
    fig.update_layout(height=220, margin={"l": 40, "r": 10, "t": 30, "b": 40}, title="Events by action", yaxis_title="events")
    return fig
