"""The annotation panel beside the slide viewer: the class and comment of what is drawn, each reviewer's layer shown
or hidden, the consensus, inter-observer Dice, file upload, and the selected region's numbers and history."""

from __future__ import annotations

import base64
import binascii
import math

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, callback_context, dcc, html, no_update

from core.annotations.agreement import pairwise_dice, tumour_by_reviewer
from core.annotations.editing import describe_region, move_region, remove_region, reshape_region, save_drawn_region, save_freehand_region
from core.annotations.ground_truth import truth_sources
from core.annotations.map_coordinates import geojson_of
from core.annotations.overlay import hex_colour
from core.annotations.statistics import RegionStatistics, as_geometry, class_union, heatmap_region_statistics
from core.annotations.transfer import AnnotationImportError, import_annotations
from core.errors import NotFoundError, PathReviewError
from core.heatmaps.grade_group import SPECIMEN_LABELS, SpecimenType, display_class_name, slide_grade
from core.heatmaps.overlay import ATTENTION_LAYER
from core.heatmaps.slide_heatmap import slide_heatmap_by_key
from core.heatmaps.slide_layers import slide_layers
from core.store.annotations import AnnotationConflict, RegionVersion, current_region, current_regions, region_history, slide_history, slide_regions_stamp
from core.store.cases import slide_record
from core.workspace import Workspace
from dashboard.auth import current_role_allows, current_username, requires_role
from dashboard.components.annotation_layer import draw_control, editable_shape

REFRESH_MS = 15_000  # how soon another reviewer's change shows
MAX_UPLOAD_BYTES = 1_400_000  # a callback's body is at most 2 MiB, base64 included; larger files go by the command line
CONSENSUS_CHOICES = [{"label": "off", "value": "off"}, {"label": "union", "value": "union"}, {"label": "majority", "value": "majority"}]


def _authors(regions: list[RegionVersion]) -> list[str]:
    return sorted({r.author for r in regions})


def legend(workspace: Workspace) -> html.Div:
    """Each class's colour, and the consensus outline's style."""
    items = [html.Span([html.Span(className="annotation-swatch", style={"background": hex_colour(c.color)}), c.name],
                       className="annotation-legend-item") for c in workspace.config.annotation_classes]
    items.append(html.Span([html.Span(className="annotation-swatch consensus"), "consensus (tumour)"], className="annotation-legend-item"))
    return html.Div(items, className="annotation-legend", id="annotation-legend")


def layout(workspace: Workspace, slide_id: str) -> dbc.Card:
    regions = current_regions(workspace.store, slide_id)
    authors = _authors(regions)
    can_draw = current_role_allows("reviewer")
    classes = [c.name for c in workspace.config.annotation_classes]
    who = (f"Draw with the tools at the top left of the map (the last one draws freehand: press, drag around the region, release); "
           f"regions are saved as {current_username()}'s. Click a region to select it; drag it to move it, the pencil reshapes it, "
           "the bin deletes it." if can_draw
           else "Your role may view regions but not draw, change or import them.")
    return dbc.Card([
        dbc.CardHeader("Annotations"),
        dbc.CardBody([
            dcc.Interval(id="annotation-refresh", interval=REFRESH_MS),
            html.P(who, className="small text-muted", id="annotation-who"),
            dbc.Row([
                dbc.Col([dbc.Label("Class", className="small mb-0"),
                         dcc.Dropdown(id="annotation-class", options=classes, value=classes[0], clearable=False, disabled=not can_draw)], md=4),
                dbc.Col([dbc.Label("Comment", className="small mb-0"),
                         dbc.Textarea(id="annotation-comment", value="", rows=1, maxLength=10_000, className="small", disabled=not can_draw)], md=4),
                dbc.Col([dbc.Button("Save class and comment", id="annotation-save", size="sm", color="primary", className="me-2 mt-3", disabled=True),
                         dbc.Button("Delete region", id="annotation-delete", size="sm", color="danger", outline=True, className="mt-3",
                                    disabled=True)], md=4),
            ]),
            html.Div(id="annotation-message", className="small mt-2"),
            legend(workspace),
            dbc.Row([
                dbc.Col([dbc.Label("Reviewers' layers", className="small mb-0"),
                         dbc.Checklist(id="annotation-authors", options=authors, value=authors, className="small"),
                         html.Div(id="annotation-view-mode", className="small text-muted")], md=4),
                dbc.Col([dbc.Label("Consensus of tumour regions", className="small mb-0"),
                         dbc.RadioItems(id="annotation-consensus-rule", options=CONSENSUS_CHOICES, value="off", inline=True, className="small"),
                         html.Div("union: tumour for at least one reviewer; majority: for more than half of them (two reviewers: both).",
                                  className="small text-muted")], md=4),
                dbc.Col(html.Div(id="annotation-dice"), md=4),
            ], className="mt-2"),
            dcc.Upload(id="annotation-upload", children=html.Div(["Import regions: drop or ", html.A("choose"),
                                                                   " a QuPath .geojson or ASAP .xml file"]),
                       className="annotation-upload mt-2", multiple=False, disabled=not can_draw) if can_draw else html.Div(),
            html.Div(id="annotation-details", className="mt-3"),
            html.Details([html.Summary("Recent changes on this slide", className="small"), html.Div(id="annotation-slide-history")],
                         className="mt-2", id="annotation-slide-history-box"),
            dbc.Label("Statistics of all regions of a class", className="small mt-2 mb-0"),
            dcc.Dropdown(id="annotation-class-stats-choice", options=classes, value=None, placeholder="choose a class"),
            html.Div(id="annotation-class-stats", className="mt-2"),
        ]),
    ], className="mt-3", id="annotation-card")


def statistics_table(stats: RegionStatistics, table_id: str, specimen: SpecimenType = "biopsy") -> dbc.Table:
    """The numbers, and the Gleason score and grade group that the region's grade percentages give by the slide's
    rule (``core.heatmaps.grade_group``, as the slide panel grades the whole slide) for the specimen type chosen there."""
    grade = slide_grade(stats.grade_fractions, specimen).summary if stats.grade_fractions else "n/a (no labelled cells inside)"
    rows = [("Area", f"{stats.area_mm2:.4f} mm²"), ("Cells of the heatmap grid inside", f"{stats.cells:,}"),
            (f"Gleason grade in the region ({SPECIMEN_LABELS[specimen].lower()} rule)", grade),
            ("Mean model score (1 − P(benign))", "n/a" if stats.mean_score is None else f"{stats.mean_score:.3f}"),
            ("MIL attention mass", "not computed (show the MIL attention layer first)" if stats.attention_mass is None
             else f"{stats.attention_mass:.3f}")]
    rows += [(f"{display_class_name(name)}, % of labelled cells", f"{100 * share:.1f} %") for name, share in stats.grade_fractions.items()]
    return dbc.Table(html.Tbody([html.Tr([html.Td(n), html.Td(v)]) for n, v in rows]), size="sm", className="small", id=table_id)


def _statistics(workspace: Workspace, key: str | None, slide_id: str, mpp: float, geometry: dict, table_id: str,
                specimen: SpecimenType | None) -> html.Div:
    heat = slide_heatmap_by_key(workspace, key, slide_id) if key else None
    if heat is None:
        area = as_geometry(geometry).area * mpp**2 / 1e6
        return html.Div([html.P(f"Area {area:.4f} mm². Compute the heatmap for grade percentages, model score and attention.",
                                className="small", id=table_id)])
    layers = slide_layers(workspace, heat)
    attention = layers.get(ATTENTION_LAYER).weights if layers.ready(ATTENTION_LAYER) else None
    try:
        return html.Div(statistics_table(heatmap_region_statistics(layers, geometry, attention=attention), table_id, specimen or "biopsy"))
    except PathReviewError as exc:
        return html.P(str(exc), className="small text-muted", id=table_id)


def history_list(versions: list[RegionVersion], list_id: str, with_region: bool = False) -> html.Ul:
    return html.Ul([html.Li((f"region {v.region_id[:8]} " if with_region else "") + f"v{v.version} · {v.at:%Y-%m-%d %H:%M} UTC · {v.user} · "
                            + ("deleted" if v.deleted else f"{v.class_name}" + (f" · “{v.comment}”" if v.comment else "")),
                            className="annotation-history-item") for v in versions], className="small mb-1", id=list_id)


def dice_table(workspace: Workspace, regions: list[RegionVersion]) -> html.Div:
    by_reviewer = tumour_by_reviewer(regions, workspace.config.annotation_classes)
    pairs = pairwise_dice(by_reviewer)
    if not pairs:
        return html.P("Inter-observer Dice needs tumour regions from two reviewers.", className="small text-muted", id="annotation-dice-empty")
    rows = [html.Tr([html.Td(p.first), html.Td(p.second), html.Td("n/a" if math.isnan(p.dice) else f"{p.dice:.3f}")]) for p in pairs]
    return html.Div([html.H6("Inter-observer agreement (tumour regions)", className="mb-1"),
                     dbc.Table([html.Thead(html.Tr([html.Th("Reviewer"), html.Th("Reviewer"), html.Th("Dice")])), html.Tbody(rows)],
                               size="sm", className="small", id="annotation-dice-table"),
                     html.P("Dice = 2|A∩B| / (|A| + |B|) on the polygons' areas (exact, no grid).", className="small text-muted")])


def _change(workspace: Workspace, trigger: str, ctx: dict, drawn: dict | None, selected: dict | None, class_name: str | None,
            comment: str, upload: str | None, upload_name: str | None) -> tuple[str | None, str]:
    """Apply one change; (the region selected after it, what to say)."""
    user, admin = current_username(), current_role_allows("admin")
    slide_id, max_zoom = ctx["slide_id"], ctx["max_zoom"]
    if trigger == "annotation-upload":
        _, _, encoded = (upload or "").partition(",")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise PathReviewError(f"{upload_name}: the browser sent the file garbled; choose it again") from None
        result = import_annotations(workspace, slide_id, upload_name or "upload", data, user)
        notes = "".join(f"; {n}" for n in result.repaired[:5])
        return None, f"Imported {len(result.imported)} regions from {upload_name}{notes}."
    if trigger == "annotation-draw":
        features = (drawn or {}).get("features") or []
        if not features:
            return no_update, ""
        props = features[0].get("properties") or {}
        op = props.get("op")
        if op == "created" and props.get("shape") == "freehand":
            region, outline = save_freehand_region(workspace, slide_id, features[0].get("geometry"), max_zoom, props.get("zoom"), class_name,
                                                   comment or "", user)
            return region.region_id, f"Saved a {region.class_name} region (version 1): {outline.summary()}."
        if op == "created":
            region = save_drawn_region(workspace, slide_id, features[0].get("geometry"), max_zoom, class_name, comment or "", user)
            return region.region_id, f"Saved a {region.class_name} region (version 1)."
        if not selected:
            return None, "Select a region first."
        if op == "moved":
            region = move_region(workspace, slide_id, selected["region"], selected["version"], props.get("offset"), max_zoom, user, admin)
            return region.region_id, f"Moved the region (version {region.version})."
        if op == "edited":
            region = reshape_region(workspace, slide_id, selected["region"], selected["version"], features[0].get("geometry"), max_zoom,
                                    user, admin)
            return region.region_id, f"Saved the new shape (version {region.version})."
        if op == "deleted":
            remove_region(workspace, slide_id, selected["region"], selected["version"], user, admin)
            return None, "Deleted the region (its history is kept)."
        return no_update, ""
    if not selected:
        return None, "Select a region first."
    if trigger == "annotation-delete":
        remove_region(workspace, slide_id, selected["region"], selected["version"], user, admin)
        return None, "Deleted the region (its history is kept)."
    region = describe_region(workspace, slide_id, selected["region"], selected["version"], class_name, comment or "", user, admin)
    return region.region_id, f"Saved: {region.class_name} (version {region.version})."


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(
        Output("annotation-stamp", "data"), Output("annotation-message", "children"), Output("annotation-selected", "data"),
        Input("annotation-draw", "geojson"), Input("annotation-save", "n_clicks"), Input("annotation-delete", "n_clicks"),
        Input("annotation-upload", "contents"),
        State("annotation-upload", "filename"), State("annotation-selected", "data"), State("annotation-class", "value"),
        State("annotation-comment", "value"), State("slide-ctx", "data"),
        prevent_initial_call=True,
    )
    @requires_role("reviewer")
    def change_regions(drawn, _save, _delete, upload, upload_name, selected, class_name, comment, ctx):
        trigger = callback_context.triggered_id
        if trigger == "annotation-upload" and upload and len(upload) > MAX_UPLOAD_BYTES * 4 // 3:
            return no_update, dbc.Alert(f"{upload_name}: larger than {MAX_UPLOAD_BYTES // 1000:,} kB; import it with "
                                        "`run_dashboard.py annotations import`.", color="warning", id="annotation-error"), no_update
        try:
            region_id, message = _change(workspace, trigger, ctx, drawn, selected, class_name, comment, upload, upload_name)
        except AnnotationImportError as exc:
            problems = [html.Li(p) for p in exc.problems[:50]]
            return no_update, dbc.Alert([html.Div(str(exc).split(": ", 1)[0] + ": nothing was imported."), html.Ul(problems, className="mb-0")]
                                        if problems else str(exc), color="danger", id="annotation-error"), no_update
        except AnnotationConflict as exc:
            return no_update, dbc.Alert(str(exc), color="danger", id="annotation-conflict"), None
        except PathReviewError as exc:
            # A refused move: the selection is sent again, so that the dragged shape goes back to where it is stored.
            moved = trigger == "annotation-draw" and selected and any((f.get("properties") or {}).get("op") == "moved"
                                                                      for f in (drawn or {}).get("features") or [])
            return no_update, dbc.Alert(str(exc), color="warning", id="annotation-error"), dict(selected) if moved else no_update
        selected = no_update if region_id is no_update else ({"region": region_id, "version": current_region(workspace.store, region_id).version}
                                                             if region_id else None)
        return slide_regions_stamp(workspace.store, ctx["slide_id"]), html.Span(message, id="annotation-saved"), selected

    @app.callback(Output("annotation-selected", "data", allow_duplicate=True), Input("annotation-vector", "clickData"),
                  prevent_initial_call=True)
    def select_region(feature):
        props = (feature or {}).get("properties") or {}
        if not props.get("region"):
            return no_update
        return {"region": props["region"], "version": props["version"]}

    @app.callback(
        Output("annotation-edit-group", "children"), Output("annotation-details", "children"), Output("annotation-save", "disabled"),
        Output("annotation-delete", "disabled"), Output("annotation-class", "value"), Output("annotation-comment", "value"),
        Input("annotation-selected", "data"), State("heat-key", "data"), State("grade-specimen", "value"), State("slide-ctx", "data"),
    )
    def show_selected(selected, key, specimen, ctx):
        draw = draw_control(current_role_allows("reviewer"))
        region = None
        if selected:
            try:
                region = current_region(workspace.store, selected["region"])
            except NotFoundError:
                region = None
        if region is None or region.slide_id != ctx["slide_id"]:
            return draw, "", True, True, no_update, ""
        mine = current_role_allows("reviewer") and (region.author == current_username() or current_role_allows("admin"))
        details = html.Div([
            html.H6(f"Region by {region.author}: {region.class_name}", id="annotation-selected-title"),
            _statistics(workspace, key, ctx["slide_id"], ctx["mpp"], region.geometry, "annotation-region-stats", specimen),
            html.Div("History", className="small fw-semibold"),
            history_list(region_history(workspace.store, region.region_id), "annotation-history"),
        ])
        return draw + (editable_shape(region, ctx["max_zoom"]) if mine else []), details, not mine, not mine, region.class_name, region.comment

    @app.callback(
        Output("annotation-authors", "options"), Output("annotation-authors", "value"), Output("annotation-dice", "children"),
        Output("annotation-slide-history", "children"), Output("ground-truth-source", "options"),
        Input("annotation-stamp", "data"), State("annotation-authors", "options"), State("annotation-authors", "value"), State("slide-ctx", "data"),
    )
    def list_reviewers(_stamp, options, shown, ctx):
        regions = current_regions(workspace.store, ctx["slide_id"])
        authors = _authors(regions)
        known = {o if isinstance(o, str) else o.get("value") for o in options or []}
        shown = [a for a in authors if a in set(shown or []) or a not in known]  # a new reviewer's layer is shown
        with workspace.store.session() as s:
            has_mask = bool(slide_record(s, ctx["slide_id"]).mask_file)
        return (authors, shown, dice_table(workspace, regions),
                history_list(slide_history(workspace.store, ctx["slide_id"]), "annotation-slide-history-list", with_region=True),
                truth_sources(workspace, ctx["slide_id"], has_mask))

    @app.callback(Output("annotation-class-stats", "children"), Input("annotation-class-stats-choice", "value"), Input("annotation-stamp", "data"),
                  State("annotation-authors", "value"), State("heat-key", "data"), State("grade-specimen", "value"), State("slide-ctx", "data"),
                  prevent_initial_call=True)
    def show_class_statistics(class_name, _stamp, authors, key, specimen, ctx):
        regions = [r for r in current_regions(workspace.store, ctx["slide_id"]) if r.class_name == class_name and r.author in set(authors or [])
                   and r.geometry["type"] in ("Polygon", "MultiPolygon")]
        if not class_name or not regions:
            return html.P("No regions of this class in the shown layers.", className="small text-muted", id="annotation-class-stats-table")
        union = geojson_of(class_union([r.geometry for r in regions]))
        return html.Div([html.P(f"{len(regions)} regions of {class_name} (their union: overlaps count once).", className="small mb-1"),
                         _statistics(workspace, key, ctx["slide_id"], ctx["mpp"], union, "annotation-class-stats-table", specimen)])

