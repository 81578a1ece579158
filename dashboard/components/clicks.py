"""Telling a person's click from a re-render, for pattern-matched buttons."""

from __future__ import annotations

from dash import callback_context


def ctx_triggered_click(clicks: list | None) -> bool:
    """Pattern-matched buttons re-render with n_clicks 0; only a real click counts."""
    return bool(callback_context.triggered) and any(c for c in clicks or [])
