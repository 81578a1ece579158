"""The case report as one self-contained HTML file: inline CSS, figures as SVG data URIs, no external resource."""

from __future__ import annotations

import base64
from html import escape

from core.export.report_content import CaseReportContent, ModalitySummary, Progress, generated_at, newest_first, render_figures

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #ddd; }
.meta, figcaption, .muted { color: #666; font-size: .85rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #e5e5e5; }
th { border-bottom: 2px solid #333; } tbody tr:nth-child(even) { background: #f6f7f8; }
td.comment { white-space: pre-wrap; max-width: 28rem; } td.label { width: 30%; color: #555; } code { font-size: .85em; }
figure { margin: 1.5rem 0; page-break-inside: avoid; break-inside: avoid; } figure img { max-width: 100%; height: auto; }
figure h3 { font-size: 1rem; margin: 0 0 .4rem; } .note { font-size: .9rem; margin-top: .3rem; }
.thumbs { display: flex; gap: 1rem; flex-wrap: wrap; } .thumbs figure { margin: 0; max-width: 320px; }
.excerpt { line-height: 1.7; }
@media print { body { margin: 0; max-width: none; } figure { page-break-before: always; } }
"""


def _e(value: object) -> str:
    return escape(str(value if value is not None else ""), quote=True)


def _table(header: list[str] | None, rows: list[list[str]], cell_classes: dict[int, str] | None = None) -> str:
    cell_classes = cell_classes or {}
    head = "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>" if header else ""
    body = "".join("<tr>" + "".join(f'<td class="{cell_classes[i]}">{_e(c)}</td>' if i in cell_classes else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _modality_section(summary: ModalitySummary) -> str:
    """A modality's diagnosis, consensus and evidence (report excerpt with LIME shading, slide thumbnails)."""
    html = [f"<section><h2>{_e(summary.title)}</h2>", _table(None, [[label, text] for label, text in summary.lines], {0: "label"})]
    if summary.excerpt:
        scale = max((abs(w) for _, w in summary.excerpt if w is not None), default=0.0) or 1.0
        words = "".join(_e(text) if weight is None else
                        f'<span class="lime" style="background:rgba({"214,39,40" if weight > 0 else "31,119,180"},'
                        f'{min(1.0, abs(weight) / scale) * 0.75:.2f})" title="{weight:+.3f}">{_e(text)}</span>'
                        for text, weight in summary.excerpt)
        html.append(f'<p class="muted">Words shaded by their LIME weight for “{_e(summary.excerpt_class)}”: red supports it, '
                    f'blue speaks against it.</p><p class="excerpt">{words}</p>')
    if summary.thumbnails:
        html.append('<div class="thumbs">' + "".join(
            f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>" for caption, png in summary.thumbnails) + "</div>")
    return "".join(html) + "</section>"


def build_case_report_html(content: CaseReportContent, progress: Progress | None = None) -> str:
    """Every piece of user text is escaped; the HTML shows every review (no page to fit), newest first."""
    svgs = render_figures(content.figures, "svg", progress, scale=1.0)
    parts = [f"<header><h1>Case {_e(content.patient_id)}</h1><p class=\"meta\">Workspace {_e(content.workspace_name)} · "
             f"generated {_e(generated_at())} by {_e(content.generated_by)}</p></header>"]
    if content.summary:
        parts.append("<section><h2>Summary</h2>" + _table(None, [[label, value] for label, value in content.summary], {0: "label"}) + "</section>")
    parts.append("<section><h2>Model outputs</h2>")
    if content.model_outputs:
        parts.append(_table(["Subject", "Model", "Weights (sha256)", "Output", "Label or report grade"],
                            [[o.get("subject", ""), o.get("model_id", ""), str(o.get("weights_sha256", ""))[:12], o.get("output", ""),
                              o.get("label") or "—"] for o in content.model_outputs]))
    else:
        parts.append('<p class="muted">No model outputs recorded.</p>')
    parts.append("</section><section><h2>Reviewer verdicts</h2>")
    if content.reviews:
        rows = [[r.get("modality", ""), r.get("verdict", ""), r.get("comment", ""), ", ".join(map(str, r.get("flags") or [])) or "—",
                 "yes" if r.get("signed_off") else "no", r.get("user", ""), r.get("at", ""), r.get("version", "")]
                for r in newest_first(content.reviews)]
        parts.append(_table(["Modality", "Verdict", "Comment", "Flags", "Signed off", "User", "Time", "Version"], rows, {2: "comment"}))
    else:
        parts.append('<p class="muted">No reviews recorded yet.</p>')
    parts.append("</section>")
    parts += [_modality_section(m) for m in content.modalities]
    if content.figures:
        parts.append("<section><h2>Figures</h2>")
        for item, svg in zip(content.figures, svgs):
            # A data URI isolates each plot's ids and styles from the page's and from each other's.
            uri = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
            caption = f"<figcaption>{_e(item.provenance.caption())}</figcaption>" if item.provenance is not None else ""
            note = f'<p class="note">{_e(item.note)}</p>' if item.note else ""
            parts.append(f'<figure><h3>{_e(item.title)}</h3><img alt="{_e(item.title)}" src="{uri}">{caption}{note}</figure>')
        parts.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"generator\" content=\"{_e(content.generated_by)}\"><title>Case {_e(content.patient_id)} · case report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
