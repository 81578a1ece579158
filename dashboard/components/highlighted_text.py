"""A report shown as the model reads it, each word shaded by its explanation weight."""

from __future__ import annotations

from dash import html

from core.models.report_text import clean_report, token_spans

POSITIVE = (214, 39, 40)  # supports the chosen class
NEGATIVE = (31, 119, 180)  # speaks against it


def weight_colour(weight: float, scale: float) -> str:
    r, g, b = POSITIVE if weight > 0 else NEGATIVE
    alpha = min(1.0, abs(weight) / scale) * 0.75 if scale > 0 else 0.0
    return f"rgba({r},{g},{b},{alpha:.2f})"


def highlighted_report(text: str, weights: dict[str, float], element_id: str) -> html.Div:
    """Cleaned text with every model token coloured by its weight; words the model skips stay plain."""
    cleaned_spans = token_spans(text)
    cleaned = clean_report(text)
    scale = max((abs(w) for w in weights.values()), default=0.0)
    children = []
    for start, end, token in cleaned_spans:
        piece = cleaned[start:end]
        if token is not None and token in weights:
            w = weights[token]
            children.append(html.Span(piece, className="lime-word", title=f"{token}: {w:+.3f}",
                                      style={"backgroundColor": weight_colour(w, scale)}, **{"data-weight": f"{w:.4f}"}))
        else:
            children.append(piece)
    return html.Div(children, id=element_id, className="report-text highlighted-report")


def weight_legend(class_name: str) -> html.Div:
    return html.Div([
        html.Span("against", className="small me-1"),
        html.Span(className="legend-bar"),
        html.Span(f"supports “{class_name}”", className="small ms-1"),
    ], className="weight-legend")
