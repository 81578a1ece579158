"""The case report as PDF (reportlab), for a tumour board: landscape; page 1 the case, its model outputs, the consensus and
the verdicts; then each modality's diagnosis, consensus and evidence above its figures, two to four figures a page, with
each page's provenance once in its footer."""

from __future__ import annotations

import io
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import plotly.graph_objects as go
import reportlab
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader, simpleSplit
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

from core.export.report_content import (
    CaseReportContent,
    ModalitySummary,
    Progress,
    ReportFigure,
    generated_at,
    render_figures,
    reviews_to_show,
    truncate,
)

MAX_REVIEW_ROWS = 8
MAX_OUTPUT_ROWS = 12
MAX_SUMMARY_LINES = 12
COMMENT_CHARS = 240
MARGIN = 12 * mm
PAGE_SIZE = landscape(A4)
FIGURE_TEXT_ALLOWANCE = 12 * mm  # a figure's title above it and a short note below
FIGURES_PER_PAGE = 4
SIDE_BY_SIDE_TEXT = 0.42  # of the width, for a modality's summary beside its one figure
SINGLE_FIGURE_HEIGHT = 0.40  # of the frame height, for a figure beside its summary
BLOCK_GAP = 6 * mm
LABEL_WIDTH = 22 * mm
THUMBNAIL_HEIGHT = 32 * mm
FOOTER_FONT_SIZE = 6.5
FOOTER_LEADING = 8
MAX_FOOTER_LINES = 8
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
        "figtitle": ParagraphStyle("figtitle", parent=base, fontName=_BOLD, fontSize=8.5, leading=10.5, spaceAfter=2),
        "excerpt": ParagraphStyle("excerpt", parent=base, fontSize=8.5, leading=12),
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
    agreements = [[m.title, text] for m in content.modalities for label, text in m.lines if label == "Consensus"]
    if agreements:
        story += [_p("Consensus (each reviewer's latest signed-off verdict)", st["h2"]), _table(None, agreements, [0.2 * width, 0.8 * width], st)]
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


def _figure_cell(number: int, item: ReportFigure, png: bytes, max_w: float, max_h: float, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    """A numbered title above the image (never on it) and the note below; the provenance goes to the page footer."""
    px_w, px_h = ImageReader(io.BytesIO(png)).getSize()
    fit = min(max_w / px_w, max_h / px_h)
    cell: list[Flowable] = [_p(f"Fig. {number} · {item.title}", st["figtitle"]), Image(io.BytesIO(png), width=px_w * fit, height=px_h * fit)]
    if item.note:
        cell.append(_p(truncate(item.note, 300), st["caption"]))
    return cell


def _excerpt(summary: ModalitySummary, st: dict[str, ParagraphStyle]) -> Paragraph:
    scale = max((abs(w) for _, w in summary.excerpt if w is not None), default=0.0)
    pieces = []
    for text, weight in summary.excerpt:
        if weight is None or scale == 0:
            pieces.append(escape(text))
            continue
        r, g, b = (214, 39, 40) if weight > 0 else (31, 119, 180)  # as the report panel: red supports the class, blue opposes it
        a = min(1.0, abs(weight) / scale) * 0.75
        mixed = "#" + "".join(f"{round(255 * (1 - a) + c * a):02x}" for c in (r, g, b))
        pieces.append(f'<span backColor="{mixed}">{escape(text)}</span>')
    return Paragraph("".join(pieces), st["excerpt"])


def _summary_block(summary: ModalitySummary, width: float, st: dict[str, ParagraphStyle]) -> list[Flowable]:
    """The modality's heading, its labelled lines (diagnosis, consensus, …), then its evidence."""
    block: list[Flowable] = [_p(summary.title, st["h2"])]
    if summary.lines:
        block.append(_table(None, [[label, text] for label, text in summary.lines], [LABEL_WIDTH, width - LABEL_WIDTH], st))
    if summary.excerpt:
        block += [Spacer(1, 2 * mm), _p(f"Report excerpt: words shaded by their LIME weight for “{summary.excerpt_class}” "
                                       "(red supports it, blue speaks against it)", st["caption"]), _excerpt(summary, st)]
    if summary.thumbnails:
        n = len(summary.thumbnails)
        cells = []
        for caption, png in summary.thumbnails:
            px_w, px_h = ImageReader(io.BytesIO(png)).getSize()
            fit = min(width / n / px_w * 0.95, THUMBNAIL_HEIGHT / px_h)
            cells.append([Image(io.BytesIO(png), width=px_w * fit, height=px_h * fit), _p(caption, st["caption"])])
        row = Table([cells], colWidths=[width / n] * n)
        row.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
        block += [Spacer(1, 2 * mm), row]
    return block


def _figure_grid(cells: list[list[Flowable]], width: float) -> Table:
    columns = min(2, len(cells))
    rows = [cells[i:i + columns] + [[]] * (columns - len(cells[i:i + columns])) for i in range(0, len(cells), columns)]
    grid = Table(rows, colWidths=[width / columns] * columns)
    grid.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 2),
                              ("RIGHTPADDING", (0, 0), (-1, -1), 6), ("BOTTOMPADDING", (0, 0), (-1, -1), 4)]))
    return grid


@dataclass
class _Block:
    flowables: list[Flowable]
    figures: list[tuple[int, ReportFigure]]  # (number, figure): whose provenance the page footer lists


def _modality_blocks(content: CaseReportContent, images: list[bytes], width: float, height: float,
                     st: dict[str, ParagraphStyle]) -> list[_Block]:
    """One block per modality (more when it has over ``FIGURES_PER_PAGE`` figures): its summary beside a single figure,
    or above its figures two to a row."""
    numbered = list(enumerate(zip(content.figures, images, strict=True), start=1))
    summaries = {m.modality: m for m in content.modalities}
    order = [m.modality for m in content.modalities] + [f.modality for f in content.figures]
    blocks = []
    for modality in dict.fromkeys(order):
        mine = [(n, item, png) for n, (item, png) in numbered if item.modality == modality]
        summary = summaries.get(modality) or ModalitySummary(modality)
        for start in range(0, max(1, len(mine)), FIGURES_PER_PAGE):
            chunk = mine[start:start + FIGURES_PER_PAGE]
            text: list[Flowable] = _summary_block(summary, width, st) if start == 0 else [_p(f"{summary.title} (continued)", st["h2"])]
            if len(chunk) == 1 and start == 0:
                n, item, png = chunk[0]
                left, right = SIDE_BY_SIDE_TEXT * width, (1 - SIDE_BY_SIDE_TEXT) * width
                text = _summary_block(summary, left - 8, st)
                side = Table([[text, _figure_cell(n, item, png, right - 8, height * SINGLE_FIGURE_HEIGHT, st)]], colWidths=[left, right])
                side.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                                          ("RIGHTPADDING", (0, 0), (0, -1), 8)]))
                flowables: list[Flowable] = [side]
            else:
                flowables = text
                if chunk:
                    rows = math.ceil(len(chunk) / 2)
                    room = height * 0.9 - _height(text, width, height)
                    row_height = min(room / rows, height * SINGLE_FIGURE_HEIGHT)  # a one-row block leaves room for another
                    cells = [_figure_cell(n, item, png, width / min(2, len(chunk)) - 10, row_height - FIGURE_TEXT_ALLOWANCE, st)
                             for n, item, png in chunk]
                    flowables = [*text, Spacer(1, 2 * mm), _figure_grid(cells, width)]
            blocks.append(_Block(flowables, [(n, item) for n, item, _ in chunk]))
    return blocks


def _height(flowables: list[Flowable], width: float, height: float) -> float:
    return sum(f.wrap(width, height)[1] + f.getSpaceBefore() + f.getSpaceAfter() for f in flowables)


def page_plan(blocks: list[_Block], width: float, height: float) -> list[list[_Block]]:
    """Modality blocks packed onto pages, each onto the first page it fits on (at most ``FIGURES_PER_PAGE`` figures a
    page): a modality is never split across a page, and a block too tall for any page is shrunk onto its own."""
    pages: list[list[_Block]] = []
    used: list[float] = []
    for block in blocks:
        h = _height(block.flowables, width, height) + BLOCK_GAP
        fits = [i for i, page in enumerate(pages)
                if used[i] + h <= height and sum(len(b.figures) for b in page) + len(block.figures) <= FIGURES_PER_PAGE]
        if fits:
            pages[fits[0]].append(block)
            used[fits[0]] += h
        else:
            pages.append([block])
            used.append(h)
    return pages


def _footer_lines(figures: list[tuple[int, ReportFigure]], width: float) -> list[str]:
    """Each figure's provenance once, wrapped to the page width."""
    lines: list[str] = []
    for number, item in figures:
        if item.provenance is not None:
            lines += simpleSplit(f"Fig. {number}: {item.provenance.caption()}", _FONT, FOOTER_FONT_SIZE, width)
    return lines


def build_case_report_pdf(content: CaseReportContent, progress: Progress | None = None) -> bytes:
    """Landscape A4: the case page (summary, model outputs, consensus, verdicts), then the modalities, each with its
    diagnosis line, consensus and evidence above its figures, packed two to four figures a page. Each page's footer lists
    the provenance of the figures on it, once; the document info carries every figure's full provenance record."""
    _register_fonts()
    st = _styles()
    images = render_figures([_untitled(f) for f in content.figures], "png", progress, with_provenance=False)
    width = PAGE_SIZE[0] - 2 * MARGIN
    # The footer band is as tall as the longest provenance list of any page: the frame never runs under it.
    all_lines = _footer_lines(list(enumerate(content.figures, start=1)), width)
    footer_height = (min(len(all_lines), MAX_FOOTER_LINES) + 1) * FOOTER_LEADING + 3 * mm
    height = PAGE_SIZE[1] - 2 * MARGIN - footer_height
    pages = page_plan(_modality_blocks(content, images, width, height - 2, st), width, height - 2)
    footers: list[list[str]] = [[]] + [_footer_lines([f for block in page for f in block.figures], width)[:MAX_FOOTER_LINES] for page in pages]
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=PAGE_SIZE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN + footer_height, title=f"Case {content.patient_id}", author=content.generated_by,
                            creator="PathReview", subject=f"Case report, workspace {content.workspace_name}",
                            keywords=[_provenance_record(content)])
    story: list[Flowable] = [KeepInFrame(width, height - 2, _case_page(content, width, st), mode="shrink")]
    for page in pages:
        blocks = [f for i, block in enumerate(page) for f in ([Spacer(1, BLOCK_GAP)] if i else []) + block.flowables]
        story += [PageBreak(), KeepInFrame(width, height - 2, blocks, mode="shrink")]

    def footer(canvas: Canvas, document: BaseDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(_FONT, FOOTER_FONT_SIZE)
        canvas.setFillColor(colors.HexColor("#666666"))
        lines = footers[document.page - 1] if document.page - 1 < len(footers) else []
        y = MARGIN / 2 + FOOTER_LEADING * len(lines)
        for line in lines:
            canvas.drawString(MARGIN, y, line)
            y -= FOOTER_LEADING
        canvas.drawString(MARGIN, MARGIN / 2, f"{content.generated_by} · case {content.patient_id} · generated {generated_at()} · "
                                              f"page {document.page} of {len(pages) + 1}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def _untitled(item: ReportFigure) -> ReportFigure:
    """The figure without its own title: the report prints the title once, above it."""
    figure = go.Figure(item.figure)
    figure.update_layout(title=None, margin={"t": 20} if figure.layout.title.text else {})
    return ReportFigure(item.title, figure, item.provenance, item.note, item.modality)


def _provenance_record(content: CaseReportContent) -> str:
    """Every figure's provenance as JSON in the document info, as a single figure export embeds its own."""
    return json.dumps({"figures": [{"number": n, "title": f.title, "provenance": f.provenance.as_dict() if f.provenance else None}
                                   for n, f in enumerate(content.figures, start=1)]}, sort_keys=True, default=str)
