"""The case report as PDF (reportlab): page 1 the case, its model outputs and reviews; then one page per figure."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import reportlab
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Image,
    KeepInFrame,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from core.export.report_content import CaseReportContent, Progress, generated_at, render_figures, reviews_to_show, truncate

MAX_REVIEW_ROWS = 8
MAX_OUTPUT_ROWS = 12
MAX_SUMMARY_LINES = 12
COMMENT_CHARS = 240
MARGIN = 15 * mm
FIGURE_TEXT_ALLOWANCE = 40 * mm  # title, caption and note under a figure
# Bitstream Vera ships with reportlab: it has ≥, µ, ·, … and × (Helvetica's WinAnsi lacks ≥ and …).
_FONT, _BOLD = "PathReviewSans", "PathReviewSans-Bold"
_FONTS_LOCK = threading.Lock()


def _register_fonts() -> None:
    with _FONTS_LOCK:
        if _FONT in pdfmetrics.getRegisteredFontNames():
            return
        folder = Path(reportlab.__file__).parent / "fonts"
        pdfmetrics.registerFont(TTFont(_FONT, str(folder / "Vera.ttf")))
        pdfmetrics.registerFont(TTFont(_BOLD, str(folder / "VeraBd.ttf")))
        pdfmetrics.registerFontFamily(_FONT, normal=_FONT, bold=_BOLD, italic=_FONT, boldItalic=_BOLD)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=_FONT, fontSize=9, leading=11.5, alignment=TA_LEFT)
    return {
        "title": ParagraphStyle("title", parent=base, fontName=_BOLD, fontSize=18, leading=22, spaceAfter=4),
        "h2": ParagraphStyle("h2", parent=base, fontName=_BOLD, fontSize=11.5, leading=14, spaceBefore=8, spaceAfter=4),
        "body": base,
        "meta": ParagraphStyle("meta", parent=base, textColor=colors.HexColor("#555555")),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8, leading=10),
        "head": ParagraphStyle("head", parent=base, fontName=_BOLD, fontSize=8, leading=10),
        "caption": ParagraphStyle("caption", parent=base, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#555555")),
    }


def _p(text: object, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _table(header: list[str] | None, rows: list[list[str]], widths: list[float], st: dict[str, ParagraphStyle]) -> Table:
    head = [[_p(h, st["head"]) for h in header]] if header else []
    table = Table(head + [[_p(c, st["cell"]) for c in row] for row in rows], colWidths=widths, repeatRows=len(head))
    first = len(head)
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("ROWBACKGROUNDS", (0, first), (-1, -1), [colors.white, colors.HexColor("#f3f4f6")]),
        *([("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black)] if head else []),
    ]))
    return table


def _case_page(content: CaseReportContent, width: float, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    story: list[Flowable] = [_p(f"Case {content.patient_id}", st["title"]),
             _p(f"Workspace {content.workspace_name} · generated {generated_at()} by {content.generated_by}", st["meta"])]
    if content.summary:
        lines = content.summary[:MAX_SUMMARY_LINES]
        story += [_p("Summary", st["h2"]), _table(None, [[label, truncate(value, 120)] for label, value in lines],
                                                   [0.3 * width, 0.7 * width], st)]
    story.append(_p("Model outputs", st["h2"]))
    if content.model_outputs:
        rows = [[o.get("subject", ""), o.get("model_id", ""), str(o.get("weights_sha256", ""))[:12], o.get("output", ""), o.get("label") or "—"]
                for o in content.model_outputs[:MAX_OUTPUT_ROWS]]
        story.append(_table(["Subject", "Model", "Weights (sha256)", "Output", "Label or report grade"], rows,
                            [w * width for w in (0.2, 0.2, 0.18, 0.27, 0.15)], st))
        if len(content.model_outputs) > MAX_OUTPUT_ROWS:
            story.append(_p(f"{len(content.model_outputs) - MAX_OUTPUT_ROWS} more model outputs in the app.", st["meta"]))
    else:
        story.append(_p("No model outputs recorded.", st["meta"]))
    story.append(_p("Reviewer verdicts", st["h2"]))
    shown, earlier = reviews_to_show(content.reviews, MAX_REVIEW_ROWS)
    if shown:
        rows = [[r.get("modality", ""), r.get("verdict", ""), truncate(r.get("comment", ""), COMMENT_CHARS),
                 ", ".join(map(str, r.get("flags") or [])) or "—", "yes" if r.get("signed_off") else "no",
                 r.get("user", ""), r.get("at", ""), str(r.get("version", ""))] for r in shown]
        story.append(_table(["Modality", "Verdict", "Comment", "Flags", "Signed off", "User", "Time", "v"], rows,
                            [w * width for w in (0.1, 0.1, 0.32, 0.12, 0.08, 0.1, 0.14, 0.04)], st))
    else:
        story.append(_p("No reviews recorded yet.", st["meta"]))
    if earlier:
        story.append(_p(f"Latest entry per modality shown; {earlier} earlier entries in the app history.", st["meta"]))
    return story


def build_case_report_pdf(content: CaseReportContent, progress: Progress | None = None) -> bytes:
    """Exactly 1 + len(figures) pages: each page's content is shrunk to fit its page rather than flowing over."""
    _register_fonts()
    st = _styles()
    images = render_figures(content.figures, "png", progress)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN,
                            title=f"Case {content.patient_id}", author=content.generated_by, creator="PathReview",
                            subject=f"Case report, workspace {content.workspace_name}")
    width, height = doc.width, doc.height - 2  # a hair under the frame: KeepInFrame must never spill
    story: list[Flowable] = [KeepInFrame(width, height, _case_page(content, width, st), mode="shrink")]
    for item, png in zip(content.figures, images):
        px_w, px_h = ImageReader(io.BytesIO(png)).getSize()
        fit = min(width / px_w, (height - FIGURE_TEXT_ALLOWANCE) / px_h)
        page = [_p(item.title, st["h2"]), Spacer(1, 2 * mm), Image(io.BytesIO(png), width=px_w * fit, height=px_h * fit)]
        if item.provenance is not None:
            page.append(_p(item.provenance.caption(), st["caption"]))
        if item.note:
            page.append(_p(item.note, st["body"]))
        story += [PageBreak(), KeepInFrame(width, height, page, mode="shrink")]

    def footer(canvas: Canvas, document: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(_FONT, 7)
        canvas.setFillColor(colors.HexColor("#777777"))
        canvas.drawString(MARGIN, MARGIN / 2, f"{content.generated_by} · case {content.patient_id} · page {document.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
