"""Publication exports of Plotly figures (PNG, SVG, PDF) with their provenance drawn and embedded."""

from __future__ import annotations

import html
import re

import plotly.graph_objects as go

from core.errors import PathReviewError
from core.export.metadata import embed_provenance
from core.export.metadata import read_provenance as read_provenance
from core.export.provenance import Provenance
from core.export.renderer import process_renderer

FORMATS = ("png", "svg", "pdf")
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
PLOTLY_DEFAULT_MARGIN = 80  # plotly.js margin when neither the figure nor its template sets one
CAPTION_FONT_PX = 10
CAPTION_LINE_PX = 14
CAPTION_COLOUR = "#6c757d"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise PathReviewError(f"cannot export a figure as {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def export_figure(fig: go.Figure, fmt: str, provenance: Provenance | None = None, *, width: int = 1000, height: int = 600,
                  scale: float = 2.0) -> bytes:
    """The figure as PNG, SVG or PDF bytes. With ``provenance``, its caption is drawn under a copy of the figure
    and the full record is embedded in the file (see ``read_provenance``). The caller's figure is never changed."""
    fmt = check_format(fmt)
    if not (50 <= width <= 10000 and 50 <= height <= 10000):
        raise PathReviewError(f"figure size {width} x {height} px is outside 50..10000 px")
    if not 0.1 <= scale <= 10:
        raise PathReviewError(f"figure scale {scale} is outside 0.1..10")
    figure = fig
    if provenance is not None:
        figure, _ = with_caption(fig, provenance.caption(), width)  # the file keeps the requested size
    data = process_renderer().render(figure.to_dict(), fmt, int(width), int(height), float(scale))
    return embed_provenance(data, fmt, provenance) if provenance is not None else data


def with_caption(fig: go.Figure, caption: str, width: int = 1000) -> tuple[go.Figure, int]:
    """A copy of ``fig`` with a small grey caption in a band added under it; returns the copy and the band height in px."""
    copy = go.Figure(fig)
    lines = _wrap(caption, max(20, int((width - 16) / (CAPTION_FONT_PX * 0.6))))
    band = CAPTION_LINE_PX * len(lines) + 10
    bottom = _margin(copy, "b")
    copy.update_layout(margin={"b": bottom + band})
    copy.add_annotation(
        text="<br>".join(html.escape(line, quote=False) for line in lines), showarrow=False, align="left",
        xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="bottom",
        xshift=-_margin(copy, "l") + 8, yshift=-(bottom + band) + 4,
        font={"size": CAPTION_FONT_PX, "color": CAPTION_COLOUR},
    )
    return copy, band


def _margin(fig: go.Figure, side: str) -> int:
    own = getattr(fig.layout.margin, side)
    template = getattr(fig.layout.template.layout.margin, side) if fig.layout.template is not None else None
    return int(own if own is not None else template if template is not None else PLOTLY_DEFAULT_MARGIN)


def _wrap(caption: str, max_chars: int) -> list[str]:
    """Break at the caption's " · " separators so each line fits the figure's width."""
    lines: list[str] = []
    for part in caption.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= max_chars:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return lines


def safe_file_stem(stem: str) -> str:
    """A file name stem safe on every OS and in a Content-Disposition header: only [A-Za-z0-9._-]."""
    return _UNSAFE_NAME.sub("_", stem).strip("._-")[:100] or "figure"


def export_filename(stem: str, fmt: str) -> str:
    """A figure's file name, safe as ``safe_file_stem``."""
    return f"{safe_file_stem(stem)}.{check_format(fmt)}"
