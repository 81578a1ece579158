"""What each Dash callback may be sent, who may call it and what it records, checked by one hook for every callback
request (``gate`` and ``after``, run around Dash's dispatch by ``dashboard.request_limits``).

- ``VALUE_TYPES``: the type of every component property a callback reads, as pydantic types in strict mode (a boolean
  is a JSON boolean, never ``"false"``; numbers are finite; strings and lists are bounded). One schema per callback is
  assembled from it, keyed by the callback's first output (``CALLBACK_SCHEMAS``), when the app's callbacks are known.
- ``RULES``: by the same key, whether it starts a background job (counted against the
  per-user limit), and the audit row its answer means (a read of patient data, a what-if, an export and its outcome).

A request whose values do not fit gets 400 with the field and the reason; nothing runs. A callback that then fails on
values that are each valid but do not fit together (a visit past the patient's last) is answered 400 too.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, create_model

from core.export.figure_export import FORMATS
from core.jobs import WHAT
from core.store.reviews import FLAGS, MODALITIES, VERDICTS
from core.workspace import ATTRIBUTE_NAME
from dashboard.auth import REQUIRED_ROLE
from dashboard.components.case_export import VIEW_PARTS
from dashboard.components.compare_link import PANES, pane_id
from dashboard.components.measure_tool import MAX_CORNERS

MAX_ID = 128
MAX_UPLOAD_CHARS = 2 << 20
MAX_NUMBER = 1e12
Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID)]
Text = Annotated[StrictStr, Field(max_length=512)]
Clicks = Annotated[StrictInt, Field(ge=0, le=10**9)] | None
Count = Annotated[StrictInt, Field(ge=0, le=10**9)] | None
Number = Annotated[StrictInt, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)] | Annotated[float, Field(strict=True, allow_inf_nan=False,
                                                                                            ge=-MAX_NUMBER, le=MAX_NUMBER)]
Visit = Annotated[StrictInt, Field(ge=0, le=100_000)] | None
HeatKey = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{32}$")]
Cell = Number | Annotated[StrictStr, Field(max_length=200)] | StrictBool | None  # a table cell or a what-if value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Loose(BaseModel):
    """Event data a browser component fills (clicks on plots and maps): the fields read are typed, the rest is bounded."""

    model_config = ConfigDict(extra="allow", strict=True)


class WhatIf(Strict):
    visit: Annotated[StrictInt, Field(ge=0, le=100_000)]
    values: Annotated[dict[Annotated[StrictStr, Field(max_length=64)], Cell], Field(max_length=200)]


class SlideCtx(Strict):
    slide_id: Id
    max_zoom: Annotated[StrictInt, Field(ge=0, le=40)]
    min_zoom: Annotated[StrictInt, Field(ge=0, le=40)] = 0
    mpp: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
    width: Annotated[StrictInt, Field(ge=1, le=10**7)]
    height: Annotated[StrictInt, Field(ge=1, le=10**7)]
    um_x: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None  # what measurements use (None: pixels)
    um_y: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] | None = None


class GridSort(Loose):
    colId: Annotated[StrictStr, Field(max_length=MAX_ID)]
    sort: Literal["asc", "desc"] | None = None


class GridFilter(Loose):
    """One column's filter of a grid's filter model (one condition: its text or number, and the range's upper end)."""

    filterType: Literal["text", "number"]
    type: Annotated[StrictStr, Field(max_length=32)]
    filter: Annotated[StrictStr, Field(max_length=200)] | Number | None = None
    filterTo: Number | None = None


class GridRowsRequest(Loose):
    """What a grid with the infinite row model asks for: which rows, with its sort and filter models."""

    startRow: Annotated[StrictInt, Field(ge=0, le=10**9)]
    endRow: Annotated[StrictInt, Field(ge=0, le=10**9)]
    sortModel: Annotated[list[GridSort], Field(max_length=10)] | None = None
    filterModel: Annotated[dict[Annotated[StrictStr, Field(max_length=MAX_ID)], GridFilter], Field(max_length=100)] | None = None


class LatLng(Strict):
    lat: Number
    lng: Number


class MapClick(Loose):
    latlng: LatLng


class PlotClick(Loose):
    points: Annotated[list[dict[Annotated[StrictStr, Field(max_length=64)], Any]], Field(max_length=100)]


class TopPatches(Strict):
    key: HeatKey
    indices: Annotated[list[Annotated[StrictInt, Field(ge=0, le=10**7)]], Field(max_length=100)]


class InspectedPatch(Strict):
    key: HeatKey
    index: Annotated[StrictInt, Field(ge=0, le=10**7)]


class LayerJob(Strict):
    job: Annotated[StrictInt, Field(ge=1, le=2**62)]
    layer: Annotated[StrictStr, Field(max_length=64)]


class MilJob(Strict):
    job: Annotated[StrictInt, Field(ge=1, le=2**62)]
    what: Literal["prediction", "refine"]
    layer: Annotated[StrictStr, Field(max_length=128)]
class SelectedRegion(Strict):
    region: Annotated[StrictStr, Field(min_length=1, max_length=36)]
    version: Annotated[StrictInt, Field(ge=1, le=10**9)]


class DrawnChange(Loose):
    """What ``assets/annotations.js`` sends for a drawing event; the geometry is checked by ``core.annotations``."""

    features: Annotated[list[dict[Annotated[StrictStr, Field(max_length=32)], Any]], Field(max_length=20)]


class RegionClick(Loose):
    properties: dict[Annotated[StrictStr, Field(max_length=32)], Any]


class CaseDays(Strict):
    visits: Annotated[list[Number], Field(max_length=10_000)]
    slides: dict[Id, Number | None]
    reports: dict[Id, Number | None]


def _bounded_list(item: Any, most: int = 1000) -> Any:
    return Annotated[list[item], Field(max_length=most)] | None


Point = Annotated[list[Number], Field(min_length=2, max_length=2)]
# Every component property a server-side callback reads: (component id, or a pattern id's type; property) -> type.
VALUE_TYPES: dict[tuple[str, str], Any] = {
    ("url", "pathname"): Annotated[StrictStr, Field(max_length=16_384)] | None,  # the page says what is wrong with a long one
    ("url", "search"): Annotated[StrictStr, Field(max_length=16_384)] | None,
    ("cohort-table", "getRowsRequest"): GridRowsRequest | None,
    ("cohort-worklist", "value"): Annotated[StrictStr, Field(max_length=32)] | None,
    ("cohort-search", "value"): Annotated[StrictStr, Field(max_length=64)] | None,
    ("case-slide-thumb", "n_clicks"): Clicks,
    ("case-slide-thumb", "id"): Any,  # pattern ids are checked by PATTERN_IDS
    ("case-selected-slide", "data"): Id | None,
    ("selected-visit", "data"): Visit,
    ("case-days", "data"): CaseDays,
    ("case-report-choice", "value"): Id | None,
    ("case-folds", "data"): _bounded_list(Annotated[StrictStr, Field(max_length=32)], 20) | None,
    ("case-id", "data"): Id,
    ("review-save", "n_clicks"): Clicks,
    ("review-save", "id"): Any,
    ("review-verdict", "value"): Literal[VERDICTS] | None,  # type: ignore[valid-type]
    ("review-comment", "value"): Annotated[StrictStr, Field(max_length=10_000)] | None,
    ("review-flags", "value"): _bounded_list(Annotated[StrictStr, Field(max_length=64)], len(FLAGS) + 20),
    ("review-signoff", "value"): StrictBool | None,
    ("review-versions", "data"): dict[Literal[MODALITIES], Annotated[StrictInt, Field(ge=0, le=10**9)]] | None,  # type: ignore[valid-type]
    ("export-figure-run", "n_clicks"): Clicks,
    ("export-figure", "value"): Annotated[StrictStr, Field(max_length=32)] | None,
    ("export-format", "value"): Literal[FORMATS] | None,  # type: ignore[valid-type]
    ("whatif-store", "data"): WhatIf | None,
    ("lime-class", "value"): Annotated[StrictStr, Field(max_length=MAX_ID)] | None,
    ("lime-num-features", "value"): Number | None,
    ("lime-num-samples", "value"): Number | None,
    ("lime-seed", "value"): Number | None,
    ("lime-kernel-width", "value"): Number | None,
    ("heat-key", "data"): HeatKey | None,
    ("heat-layer-choice", "value"): Annotated[StrictStr, Field(max_length=64)] | None,
    ("heat-method", "value"): Literal["overlap", "bilinear"] | None,
    ("heat-cmap", "value"): Annotated[StrictStr, Field(max_length=32)] | None,
    ("heat-threshold", "value"): Number | None,
    ("heat-norm", "value"): Literal["raw", "minmax", "percentile"] | None,
    ("heat-smooth", "value"): Number | None,
    ("heat-opacity", "value"): Number | None,
    ("qc-exclude", "value"): StrictBool | None,
    ("base-normalised", "value"): StrictBool | None,
    ("base-brightness", "value"): Number | None,  # the range is checked by core.slides.adjust
    ("base-contrast", "value"): Number | None,
    ("base-gamma", "value"): Number | None,
    **{(f"pane-{pane}-{name}", "value"): Number | None for pane in ("left", "right") for name in ("brightness", "contrast", "gamma")},
    ("slide-map", "bounds"): Annotated[list[Point], Field(min_length=2, max_length=2)] | None,
    ("slide-map", "zoom"): Number | None,
    ("slide-map", "center"): Point | None,
    ("slide-map", "clickData"): MapClick | None,
    ("slide-ctx", "data"): SlideCtx | None,
    ("export-region-mode", "value"): Literal["view", "slide", "region"] | None,
    ("export-region", "value"): Annotated[StrictStr, Field(max_length=200)] | None,
    ("export-width", "value"): Number | None,
    ("case-report-run", "n_clicks"): Clicks,
    ("report-figures", "value"): _bounded_list(Annotated[StrictStr, Field(max_length=32)], 20),
    ("report-format", "value"): Literal["pdf", "html"] | None,
    ("heat-compute", "n_clicks"): Clicks,
    ("heat-cancel", "n_clicks"): Clicks,
    ("heat-layer-ready", "data"): Count,
    ("heat-layer-poll", "n_intervals"): Count,
    ("heat-layer-job", "data"): LayerJob | None,
    ("case-report-cancel", "n_clicks"): Clicks,
    ("heat-model", "value"): Id | None,
    ("heat-overlap", "value"): Number | None,
    ("comparison-run", "n_clicks"): Clicks,
    ("comparison-threshold", "value"): Number | None,
    ("topk-tile", "n_clicks"): Clicks,
    ("topk-centres", "data"): _bounded_list(Point, 100),
    ("topk-patches", "data"): TopPatches | None,
    ("inspected-patch", "data"): InspectedPatch | None,
    ("inspector-class", "value"): Annotated[StrictStr, Field(max_length=MAX_ID)] | None,
    ("lime-run", "n_clicks"): Clicks,
    ("report-id", "data"): Id,
    ("report-edit-run", "n_clicks"): Clicks,
    # Length is bounded by [limits] edited_report_chars, with its message in the page; this is the hard ceiling.
    ("report-edit", "value"): Annotated[StrictStr, Field(max_length=1_000_000)] | None,
    ("localisation-run", "n_clicks"): Clicks,
    ("patient-risk", "clickData"): PlotClick | None,
    ("visit-edit-reset", "n_clicks"): Clicks,
    ("patient-id", "data"): Id,
    ("shap-background", "value"): Annotated[StrictStr, Field(max_length=32)] | None,
    ("visit-edit-apply", "n_clicks"): Clicks,
    ("visit-edit-table", "rowData"): _bounded_list(dict[Annotated[StrictStr, Field(max_length=64)], Cell], 500),
    ("patients-prev", "n_clicks"): Clicks,
    ("patients-next", "n_clicks"): Clicks,
    ("patients-attribute", "value"): Annotated[StrictStr, Field(max_length=200)] | None,
    ("patients-attribute", "id"): Any,  # pattern ids are checked by PATTERN_IDS
    ("patients-page", "data"): Count,
    ("cohort-visit-importance", "clickData"): PlotClick | None,
    ("audit-action", "value"): Annotated[StrictStr, Field(max_length=32)] | None,
    ("audit-user", "value"): Annotated[StrictStr, Field(max_length=64)] | None,
    ("jobs-start", "n_clicks"): Clicks,
    ("jobs-what", "value"): _bounded_list(Literal[WHAT], len(WHAT)),  # type: ignore[valid-type]
    ("jobs-patients", "value"): _bounded_list(Id, 10_000),
    ("jobs-slides", "value"): _bounded_list(Id, 10_000),
    ("jobs-overlap", "value"): Number | None,
    ("jobs-action", "data"): Count,
    ("jobs-refresh", "n_intervals"): Count,
    ("jobs-filter", "value"): Annotated[StrictStr, Field(max_length=16)] | None,
    ("job-cancel", "n_clicks"): Clicks,
    ("job-retry", "n_clicks"): Clicks,
    ("milf-head", "value"): Id | None,
    ("slides-head", "value"): Id | None,
    ("slides-sort", "value"): Literal["probability-desc", "probability-asc", "disagreement", "slide"] | None,
    ("slides-compute", "n_clicks"): Clicks,
    ("milf-layer-choice", "value"): Annotated[StrictStr, Field(max_length=MAX_ID + 16)] | None,
    ("milf-cmap", "value"): Annotated[StrictStr, Field(max_length=32)] | None,
    ("milf-threshold", "value"): Number | None,
    ("milf-ready", "data"): Count,
    ("milf-refine", "n_clicks"): Clicks,
    ("milf-overlap", "value"): Number | None,
    ("milf-poll", "n_intervals"): Count,
    ("milf-pending", "data"): MilJob | None,
    ("milf-refined", "data"): Annotated[StrictStr, Field(max_length=128)] | None,
    ("annotation-draw", "geojson"): DrawnChange | None,
    ("ground-truth-source", "value"): Annotated[StrictStr, Field(max_length=100)] | None,
    ("review-regions", "value"): _bounded_list(Annotated[StrictStr, Field(max_length=36)], 50),
    ("review-region", "n_clicks"): Clicks,
    ("review-region", "id"): Any,
    ("annotation-save", "n_clicks"): Clicks,
    ("annotation-delete", "n_clicks"): Clicks,
    # A data URL; the request's 2 MiB ceiling bounds it, and the panel names the command line for larger files.
    ("annotation-upload", "contents"): Annotated[StrictStr, Field(max_length=MAX_UPLOAD_CHARS)] | None,
    ("annotation-upload", "filename"): Text | None,
    ("annotation-selected", "data"): SelectedRegion | None,
    ("annotation-class", "value"): Annotated[StrictStr, Field(max_length=64)] | None,
    ("annotation-comment", "value"): Annotated[StrictStr, Field(max_length=10_000)] | None,
    ("annotation-vector", "clickData"): RegionClick | None,
    ("annotation-authors", "options"): _bounded_list(Annotated[StrictStr, Field(max_length=64)]),
    ("annotation-authors", "value"): _bounded_list(Annotated[StrictStr, Field(max_length=64)]),
    ("annotation-stamp", "data"): Count,
    ("annotation-consensus-rule", "value"): Literal["off", "union", "majority"] | None,
    ("annotation-refresh", "n_intervals"): Count,
    ("annotation-class-stats-choice", "value"): Annotated[StrictStr, Field(max_length=64)] | None,
    ("model-threshold", "value"): Number | None,
    ("grade-specimen", "value"): Literal["biopsy", "prostatectomy"] | None,
    ("cohort-grade", "value"): Literal["any", "agree", "disagree", "not compared"] | None,
    ("measure-mode", "value"): Literal["off", "ruler", "area"] | None,
    ("measure-clear", "n_clicks"): Clicks,
    ("measure-points", "data"): _bounded_list(Point, MAX_CORNERS),
}
# The side-by-side panes (``dashboard.components.viewer_pane``): the same values under each pane's name.
for _pane in PANES:
    VALUE_TYPES.update({
        (pane_id(_pane, "slide"), "value"): Id | None,
        (pane_id(_pane, "model"), "value"): Id | None,
        (pane_id(_pane, "layer"), "value"): Annotated[StrictStr, Field(max_length=64)] | None,
        (pane_id(_pane, "map"), "zoom"): Number | None,
        (pane_id(_pane, "map"), "center"): Point | LatLng | None,
        (pane_id(_pane, "ctx"), "data"): SlideCtx | None,
    })
# A part of the case view the export reads (``dashboard.components.case_export.VIEW_PARTS``): each value has the type
# of the component property it mirrors.
VALUE_TYPES[("case-view-part", "data")] = create_model(
    "CaseViewPart", __base__=Strict,
    **{name: (VALUE_TYPES[source] | None, None) for part in VIEW_PARTS.values() for name, source in part.items()},
) | None
# The ids of pattern-matched components, by their type.
PATTERN_IDS: dict[str, Any] = {
    "case-view-part": create_model("CaseViewPartId", __base__=Strict, type=(Literal["case-view-part"], ...),
                                   part=(Literal[tuple(VIEW_PARTS)], ...)),
    "case-slide-thumb": create_model("CaseSlideThumbId", __base__=Strict, type=(Literal["case-slide-thumb"], ...), slide=(Id, ...)),
    "patients-attribute": create_model("PatientsAttributeId", __base__=Strict, type=(Literal["patients-attribute"], ...),
                                       name=(Annotated[StrictStr, Field(pattern=ATTRIBUTE_NAME.pattern)], ...)),
    "topk-tile": create_model("TopkTileId", __base__=Strict, type=(Literal["topk-tile"], ...),
                              index=(Annotated[StrictInt, Field(ge=0, le=100)], ...)),
    "review-region": create_model("ReviewRegionId", __base__=Strict, type=(Literal["review-region"], ...),
                                  region=(Annotated[StrictStr, Field(min_length=1, max_length=36)], ...)),
    "model-threshold": create_model("ModelThresholdId", __base__=Strict, type=(Literal["model-threshold"], ...),
                                    model=(Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")], ...)),
    "job-cancel": create_model("JobCancelId", __base__=Strict, type=(Literal["job-cancel"], ...),
                               index=(Annotated[StrictInt, Field(ge=1, le=2**62)], ...)),
    "job-retry": create_model("JobRetryId", __base__=Strict, type=(Literal["job-retry"], ...),
                              index=(Annotated[StrictInt, Field(ge=1, le=2**62)], ...)),
    **{kind: create_model(f"{kind.title().replace('-', '')}Id", __base__=Strict, type=(Literal[kind], ...),
                          modality=(Literal[MODALITIES], ...))  # type: ignore[valid-type]
       for kind in ("review-save", "review-verdict", "review-comment", "review-flags", "review-signoff", "review-current",
                    "review-consensus")},
}


@dataclass(frozen=True)
class AuditRow:
    action: str
    target: str
    detail: dict


# (the request's values by "component.property", the callback's answer) -> the rows the answer means
Auditor = Callable[[dict[str, Any], "Answer"], list[AuditRow]]


@dataclass(frozen=True)
class Rule:
    role: str = "viewer"
    starts_job: bool = False  # a background job: counted against the user's limit when it starts
    audit: Auditor | None = None


class Answer:
    """A callback's answer as Dash sent it; parsed only when an auditor needs a value from it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._parsed: dict | None = None

    def has(self, component_id: str) -> bool:
        """Whether the answer renders a component with this id (e.g. an error alert)."""
        quoted = json.dumps(component_id).encode()
        return b'"id":' + quoted in self.raw or b'"id": ' + quoted in self.raw

    def value(self, component: str, prop: str) -> Any:
        if self._parsed is None:
            self._parsed = json.loads(self.raw) if self.raw else {}
        return ((self._parsed.get("response") or {}).get(component) or {}).get(prop)


PAGE_ACTIONS = {"case": "case_open", "patient": "patient_open", "report": "report_open", "slide": "slide_open"}


def _page_view(values: dict, answer: Answer) -> list[AuditRow]:
    path = values.get("url.pathname") or ""
    kind, _, page_id = path.strip("/").partition("/")
    if kind == "compare" and not page_id and not answer.has("page-error"):
        return _side_by_side_view(values, answer)
    if kind not in PAGE_ACTIONS or not page_id or answer.has("page-error"):
        return []
    return [AuditRow(PAGE_ACTIONS[kind], unquote(page_id), {})]  # the id as the store knows it, not as the URL spells it


def _side_by_side_view(values: dict, answer: Answer) -> list[AuditRow]:
    """Both slides of the side-by-side view: the left one, and the right one when the page offers it (it is one of the
    patient's slides, so it is shown)."""
    query = dict(parse_qsl((values.get("url.search") or "").lstrip("?")))
    left, right = query.get("left"), query.get("right")
    if not left or not answer.has("compare-link"):
        return []
    shown = [left] + ([right] if right and right != left and json.dumps(right).encode() in answer.raw else [])
    return [AuditRow("slide_open", slide_id, {"side_by_side": True}) for slide_id in shown]


def _case_report_read(values: dict, answer: Answer) -> list[AuditRow]:
    report_id = values.get("case-report-choice.value")
    return [AuditRow("report_read", report_id, {})] if report_id and not answer.has("case-report-error") else []


def _report_text_read(values: dict, answer: Answer) -> list[AuditRow]:
    return [AuditRow("report_read", values["report-id.data"], {})] if answer.has("report-highlighted") else []


def _what_if_applied(values: dict, answer: Answer) -> list[AuditRow]:
    applied = answer.value("whatif-store", "data") if b"whatif-store" in answer.raw else None
    if not applied:
        return []
    return [AuditRow("what_if", values["patient-id.data"], {"visit": applied["visit"] + 1, "edited": sorted(applied["values"])})]


def _what_if_shown(values: dict, answer: Answer) -> list[AuditRow]:
    what_if = values.get("whatif-store.data")
    if not what_if or not answer.has("whatif-comparison"):
        return []
    return [AuditRow("what_if", values["patient-id.data"], {"visit": what_if["visit"] + 1, "edited": sorted(what_if["values"]),
                                                            "shown": True})]


def _report_what_if(values: dict, answer: Answer) -> list[AuditRow]:
    if not answer.has("edited-probability"):
        return []
    return [AuditRow("what_if", values["report-id.data"], {"report_chars": len(values.get("report-edit.value") or "")})]


def _export(download: str, error_id: str, what: Callable[[dict], dict], error_outcome: str = "refused") -> Auditor:
    """An export's row, once validated, with its outcome (``error_outcome`` when the answer is the error message, "exported"
    only when a file was sent); none while a background export is still running."""
    def rows(values: dict, answer: Answer) -> list[AuditRow]:
        target = values.get("case-id.data") or ""
        if answer.has(error_id):
            return [AuditRow("export", target, {**what(values), "outcome": error_outcome})]
        sent = answer.value(download, "data") if download.encode() in answer.raw else None
        if isinstance(sent, dict) and sent.get("filename"):
            return [AuditRow("export", target, {**what(values), "outcome": "exported", "file": sent["filename"]})]
        return []
    return rows


RULES: dict[str, Rule] = {
    "page-content.children": Rule(audit=_page_view),
    "case-report-panel.children": Rule(audit=_case_report_read),
    "report-highlights.children": Rule(audit=_report_text_read),
    "whatif-store.data": Rule(audit=_what_if_applied),
    "patient-risk.figure": Rule(audit=_what_if_shown),
    "report-edit-result.children": Rule(audit=_report_what_if),
        "figure-download.data": Rule(audit=_export("figure-download", "export-error", lambda v: {
        "what": v.get("export-figure.value"), "format": v.get("export-format.value")})),
    "case-report-download.data": Rule(audit=_export("case-report-download", "case-report-error", lambda v: {
        "what": "case report", "format": v.get("report-format.value")}, error_outcome="failed")),
    "heat-key.data": Rule(starts_job=True),
    "jobs-start-message.children": Rule(starts_job=True),
    "milf-refine-status.children": Rule(starts_job=True),
    "slides-compute-status.children": Rule(starts_job=True),
}
_HASH = re.compile(r"@[0-9a-f]+$")


def callback_key(callback_map_key: str) -> str:
    """The first output ("component.property") that names a callback, from its key in Dash's callback map."""
    first = callback_map_key[2:].split("...")[0] if callback_map_key.startswith("..") else callback_map_key
    return _HASH.sub("", first.rstrip("."))


def _field_name(i: int) -> str:
    return f"v{i}"


@dataclass(frozen=True)
class CallbackSchema:
    key: str
    labels: list[str]  # "component.property" of each input and state, in order
    wildcard: list[bool]
    model: type[BaseModel]
    server_side: bool
    rule: Rule


def _component(declared_id: str) -> tuple[str, bool]:
    if declared_id.startswith("{"):
        return json.loads(declared_id)["type"], True
    return declared_id, False


def build_schemas(callback_map: dict) -> dict[str, CallbackSchema]:
    """A schema per callback of the app. A property missing from ``VALUE_TYPES`` is a KeyError at start-up, so a new
    callback cannot go unchecked."""
    schemas = {}
    for map_key, callback in callback_map.items():
        labels, wildcard, fields = [], [], {}
        for i, spec in enumerate([*callback.get("inputs", []), *callback.get("state", [])]):
            component, is_pattern = _component(spec["id"])
            value_type = VALUE_TYPES[(component, spec["property"])] if "callback" in callback else Any
            labels.append(f"{component}.{spec['property']}")
            wildcard.append(is_pattern)
            fields[_field_name(i)] = (Annotated[list[value_type], Field(max_length=1000)] if is_pattern else value_type, ...)
        model = create_model(f"Callback{len(schemas)}", __base__=Strict, **fields)
        key = callback_key(map_key)
        rule = RULES.get(key, Rule())
        # The role is declared where the callback is defined (``dashboard.auth.requires_role``); Dash keeps the mark.
        rule = dataclasses.replace(rule, role=getattr(callback.get("callback"), REQUIRED_ROLE, rule.role))
        schemas[map_key] = CallbackSchema(key, labels, wildcard, model, "callback" in callback, rule)
    return schemas


def _entries(item: Any, wildcard: bool) -> list[dict]:
    return item if wildcard else [item]


def _pattern_problem(entries: list[dict], label: str) -> str | None:
    for entry in entries:
        entry_id = entry.get("id")
        kind = entry_id.get("type") if isinstance(entry_id, dict) else None
        if kind not in PATTERN_IDS:
            return f"{label}: not an id of this page"
        try:
            PATTERN_IDS[kind].model_validate(entry_id)
        except ValidationError as exc:
            return f"{label}: {_first_error(exc)}"
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"][1:])
    return f"{where + ': ' if where else ''}{error['msg']}"


def _same_components(body: dict, schema: CallbackSchema, items: list) -> str | None:
    """Pattern-matched inputs, state and outputs of one callback list the same components in the same order (the
    renderer sends them so; a hand-made request that does not would index one list by another)."""
    seen: dict[tuple, list] = {}
    outputs = body.get("outputs")
    groups = [(label, item) for label, item, wild in zip(schema.labels, items, schema.wildcard, strict=True) if wild]
    groups += [("outputs", o) for o in (outputs if isinstance(outputs, list) else []) if isinstance(o, list)]
    for label, entries in groups:
        ids = [e.get("id") if isinstance(e, dict) else None for e in entries]
        if not all(isinstance(i, dict) for i in ids):
            return f"{label}: every entry needs a pattern id"
        keys = tuple(sorted(k for k in ids[0] if k != "type")) if ids else None
        if keys is None:
            continue
        order = [tuple(i.get(k) for k in keys) for i in ids]
        if keys in seen and seen[keys] != order:
            return f"{label}: lists other components than the callback's other inputs"
        seen.setdefault(keys, order)
    return None


def _changed_problem(body: dict, items: list, schema: CallbackSchema) -> str | None:
    """Each changed property must be one of the request's inputs (Dash reads the trigger from it)."""
    n_inputs = sum(1 for _ in body.get("inputs", []))
    names = set()
    for item, wild in zip(items[:n_inputs], schema.wildcard[:n_inputs], strict=True):
        for entry in _entries(item, wild):
            entry_id = entry.get("id")
            name = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(entry_id[k])}" for k in sorted(entry_id)) + "}" \
                if isinstance(entry_id, dict) else entry_id
            names.add(f"{name}.{entry.get('property')}")
    for changed in body.get("changedPropIds", []):
        if changed not in names:
            return f"'changedPropIds' names {changed[:80]!r}, which is not an input of this callback"
    return None


def values_problem(body: dict, schema: CallbackSchema) -> tuple[str | None, dict[str, Any]]:
    """(why the request's values do not fit the callback's schema, or None; its values by "component.property")."""
    if not schema.server_side:
        return "this callback runs in the browser", {}
    items = [*body.get("inputs", []), *body.get("state", [])]
    for label, item, wild in zip(schema.labels, items, schema.wildcard, strict=True):
        if wild and not isinstance(item, list):
            return f"{label}: a pattern-matched input is a list", {}
        if wild and (problem := _pattern_problem(item, label)):
            return problem, {}
    if problem := _same_components(body, schema, items) or _changed_problem(body, items, schema):
        return problem, {}
    raw = {_field_name(i): ([e.get("value") for e in item] if wild else item.get("value"))
           for i, (item, wild) in enumerate(zip(items, schema.wildcard, strict=True))}
    try:
        schema.model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        index = int(str(error["loc"][0])[1:])
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"][1:])
        return f"{schema.labels[index]}{where}: {error['msg']}", {}
    return None, {label: value for label, value in zip(schema.labels, raw.values(), strict=True)}
