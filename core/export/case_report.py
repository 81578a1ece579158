"""A case report for the record: the case, the models' outputs with provenance, the reviewers' verdicts and figures,
as a PDF (page 1 the case, then one page per figure) or one offline HTML file."""

from __future__ import annotations

from core.export.report_content import CaseReportContent, Progress, ReportFigure
from core.export.report_html import build_case_report_html
from core.export.report_pdf import build_case_report_pdf

__all__ = ["CaseReportContent", "ReportFigure", "case_report_html", "case_report_pdf"]


def case_report_pdf(content: CaseReportContent, progress: Progress | None = None) -> bytes:
    """PDF bytes with exactly ``1 + len(content.figures)`` pages; ``progress(done, total)`` after each figure."""
    return build_case_report_pdf(content, progress)


def case_report_html(content: CaseReportContent, progress: Progress | None = None) -> str:
    """A self-contained HTML document (inline CSS, figures embedded); ``progress(done, total)`` after each figure."""
    return build_case_report_html(content, progress)
