"""What a case report holds, and the choices shared by its PDF and HTML forms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import plotly.graph_objects as go

from core.export.figure_export import export_figure
from core.export.provenance import Provenance

Progress = Callable[[int, int], None]
DEFAULT_FIGURE_SIZE = (1000, 600)


MODALITY_TITLES = {"slide": "Slide", "patient": "Patient (visits)", "report": "Report"}


@dataclass
class ReportFigure:
    title: str
    figure: go.Figure
    provenance: Provenance | None = None
    note: str = ""
    modality: str = ""  # the MODALITY_TITLES group the case report places it in


@dataclass
class ModalitySummary:
    """What the case report says about one modality above its figures: labelled lines (the diagnosis, the consensus, and
    whatever else a modality states, one line each), the report excerpt with its LIME weights, slide thumbnails."""

    modality: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    excerpt: list[tuple[str, float | None]] = field(default_factory=list)  # (text piece, LIME weight or None)
    excerpt_class: str = ""  # the class the excerpt's weights speak for
    thumbnails: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG)

    @property
    def title(self) -> str:
        return MODALITY_TITLES.get(self.modality, self.modality)


@dataclass
class CaseReportContent:
    patient_id: str
    workspace_name: str
    summary: list[tuple[str, str]] = field(default_factory=list)  # label, value (age, sex, ...)
    model_outputs: list[dict] = field(default_factory=list)  # subject, model_id, weights_sha256, output, label
    reviews: list[dict] = field(default_factory=list)  # modality, verdict, comment, flags, signed_off, user, at, version
    figures: list[ReportFigure] = field(default_factory=list)
    generated_by: str = "PathReview"
    modalities: list[ModalitySummary] = field(default_factory=list)  # in MODALITY_TITLES order, those the case has


def generated_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def truncate(text: object, limit: int) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def newest_first(reviews: list[dict]) -> list[dict]:
    return sorted(reviews, key=lambda r: (str(r.get("at", "")), int(r.get("version") or 0)), reverse=True)


def reviews_to_show(reviews: list[dict], max_rows: int) -> tuple[list[dict], int]:
    """Newest first; when there are more than ``max_rows``, only the latest per modality (always kept) and the
    number left out, which the app's history still holds."""
    ordered = newest_first(reviews)
    if len(ordered) <= max_rows:
        return ordered, 0
    latest: dict[str, dict] = {}
    for review in sorted(ordered, key=lambda r: int(r.get("version") or 0), reverse=True):
        latest.setdefault(str(review.get("modality", "")), review)
    kept = newest_first(list(latest.values()))
    return kept, len(ordered) - len(kept)


def figure_size(fig: go.Figure) -> tuple[int, int]:
    """The size a figure was designed at (its layout's), else a default landscape size."""
    return int(fig.layout.width or DEFAULT_FIGURE_SIZE[0]), int(fig.layout.height or DEFAULT_FIGURE_SIZE[1])


def render_figures(figures: list[ReportFigure], fmt: str, progress: Progress | None, scale: float = 2.0,
                   with_provenance: bool = True) -> list[bytes]:
    """Every figure rendered through the shared browser; ``progress(done, total)`` after each. Without provenance the
    image carries no caption band (the PDF report prints provenance in its page footers instead)."""
    rendered = []
    for done, item in enumerate(figures, start=1):
        width, height = figure_size(item.figure)
        rendered.append(export_figure(item.figure, fmt, item.provenance if with_provenance else None, width=width, height=height,
                                      scale=scale))
        if progress is not None:
            progress(done, len(figures))
    return rendered
