"""The case review form: a verdict per modality, comment, flags and sign-off, with history and a version check."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, callback_context, dcc, html, no_update

from core.errors import PathReviewError
from core.store.annotations import RegionVersion, current_regions
from core.store.cases import CaseSummary, case_summary
from core.store.reviews import (
    FLAGS,
    MODALITIES,
    VERDICTS,
    Consensus,
    ReviewConflict,
    ReviewEntry,
    consensus,
    current_reviews,
    latest_by_reviewer,
    latest_versions,
    record_review,
    review_history,
    review_status,
)
from core.workspace import Workspace
from dashboard.auth import current_role_allows, current_username, requires_role
from dashboard.components.clicks import ctx_triggered_click

VERDICT_COLOURS = {"agree": "success", "disagree": "danger", "uncertain": "warning"}


def _modalities_with_data(case: CaseSummary) -> set[str]:
    return {m for m, items in (("slide", case.slides), ("patient", case.visits), ("report", case.reports)) if items}


def _status_badge(case: CaseSummary, current: dict[str, ReviewEntry]) -> dbc.Badge:
    status = review_status(current, _modalities_with_data(case))
    colour = {"unreviewed": "secondary", "signed off": "success"}.get(status, "primary")
    return dbc.Badge(status, color=colour, id="review-status-badge")


def status_badge(case: CaseSummary, current: dict[str, ReviewEntry]) -> html.Span:
    return html.Span(_status_badge(case, current), id="review-status")


def _case(workspace: Workspace, patient_id: str) -> CaseSummary:
    with workspace.store.session() as s:
        return case_summary(s, patient_id)


def _current_text(entry: ReviewEntry | None) -> str:
    return f"current: {entry.verdict} by {entry.user} (v{entry.version})" if entry else "no verdict yet"


def region_label(region: RegionVersion) -> str:
    return f"{region.slide_id} · {region.class_name} · {region.author} · {region.region_id[:8]}"


def case_regions(workspace: Workspace, case: CaseSummary) -> dict[str, RegionVersion]:
    """The current regions on the case's slides, by id."""
    return {r.region_id: r for s in case.slides for r in current_regions(workspace.store, s.id)}


def _region_links(e: ReviewEntry, regions: dict[str, RegionVersion]) -> list:
    """A button per region the verdict refers to; a click pans the viewer there (``dashboard.pages.case``)."""
    return [html.Button(region_label(regions[r]) if r in regions else f"{r[:8]} (deleted since)", id={"type": "review-region", "region": r},
                        n_clicks=0, disabled=r not in regions, className="btn btn-link btn-sm p-0 d-block review-region-link")
            for r in e.regions]


def history_table(entries: list[ReviewEntry], regions: dict[str, RegionVersion] | None = None) -> html.Div:
    if not entries:
        return html.P("No verdicts recorded for this case yet.", className="small text-muted", id="review-history-empty")
    regions = regions or {}
    rows = [html.Tr([html.Td(e.at.strftime("%Y-%m-%d %H:%M UTC")), html.Td(e.user), html.Td(e.modality),
                     html.Td(dbc.Badge(e.verdict, color=VERDICT_COLOURS.get(e.verdict, "secondary"))), html.Td(e.comment, className="review-comment"),
                     html.Td(", ".join(e.flags)), html.Td(_region_links(e, regions)), html.Td("signed off" if e.signed_off else ""),
                     html.Td(f"v{e.version}")],
                    className="review-history-row") for e in entries]
    head = html.Thead(html.Tr([html.Th(h) for h in ("When", "Reviewer", "Modality", "Verdict", "Comment", "Flags", "Regions", "", "Version")]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", striped=True, id="review-history-table", className="small")


def _others_list(modality: str, others: list[ReviewEntry]) -> html.Div:
    """Other reviewers' own latest verdicts, read-only: shown beside the form, never copied into it."""
    if not others:
        return html.Div("No other reviewer has a verdict here.", className="small text-muted", id={"type": "review-others", "modality": modality})
    items = [html.Li([html.Strong(e.user), " ", dbc.Badge(e.verdict, color=VERDICT_COLOURS.get(e.verdict, "secondary")),
                      " signed off" if e.signed_off else "", f" · {', '.join(e.flags)}" if e.flags else "",
                      html.Div(e.comment, className="review-comment text-muted") if e.comment else None], className="small")
             for e in others]
    return html.Div([html.Div("Other reviewers (read-only)", className="small fw-semibold"), html.Ul(items, className="ps-3 mb-1")],
                    id={"type": "review-others", "modality": modality})


def _consensus_line(verdicts: Consensus) -> html.Div:
    colour = {True: "text-success", False: "text-danger"}.get(verdicts.agreed, "text-muted")  # type: ignore[arg-type]
    return html.Div(["Consensus: ", html.Span(verdicts.line(), className=colour)], className="small review-consensus",
                    id={"type": "review-consensus", "modality": verdicts.modality})


def _modality_form(modality: str, latest: ReviewEntry | None, history: list[ReviewEntry], user: str, read_only: bool,
                   regions: dict[str, RegionVersion]) -> dbc.Col:
    """One modality's form: it starts from the signed-in reviewer's own last verdict (or empty), never another's."""
    key = {"modality": modality}
    by_reviewer = latest_by_reviewer(history, modality)
    mine = by_reviewer.get(user)
    others = [e for u, e in by_reviewer.items() if u != user]
    region_choice = [dcc.Dropdown(id="review-regions", options=[{"label": region_label(r), "value": i} for i, r in regions.items()],
                                  value=[r for r in (mine.regions if mine else ()) if r in regions], multi=True,
                                  placeholder="regions this verdict refers to (optional)", className="small mt-1", disabled=read_only)] \
        if modality == "slide" else []
    return dbc.Col([
        html.H6(modality.capitalize(), className="mb-1"),
        # The verdict first: on the case page it is on the first screen, beside the slide and the risk plot.
        dbc.RadioItems(id={"type": "review-verdict", **key}, options=[{"label": v, "value": v, "disabled": read_only} for v in VERDICTS],
                       value=mine.verdict if mine else None, inline=True, className="review-verdict"),
        html.Div(_current_text(latest), className="small text-muted", id={"type": "review-current", **key}),
        _consensus_line(consensus(history, modality)),
        dbc.Textarea(id={"type": "review-comment", **key}, value=mine.comment if mine else "", placeholder="your comment", rows=2,
                     maxLength=10_000, className="small mt-1", disabled=read_only),
        dbc.Checklist(id={"type": "review-flags", **key}, options=[{"label": f, "value": f, "disabled": read_only} for f in FLAGS],
                      value=list(mine.flags) if mine else [], className="small mt-1"),
        *region_choice,
        dbc.Switch(id={"type": "review-signoff", **key}, label="sign off", value=bool(mine and mine.signed_off), className="small",
                   disabled=read_only),
        dbc.Button(f"Save {modality} verdict", id={"type": "review-save", **key}, size="sm", color="primary", n_clicks=0, className="mt-1",
                   disabled=read_only),
        html.Div(_others_list(modality, others), className="mt-2"),
    ], md=4, className="review-modality")


def card(workspace: Workspace, patient_id: str, current: dict[str, ReviewEntry]) -> dbc.Card:
    """The form for the signed-in reviewer (their own last verdicts, or empty), the other reviewers' verdicts and the
    consensus beside it, and the full history. ``current`` (``current_reviews``) gives the versions a save is checked against."""
    regions = case_regions(workspace, _case(workspace, patient_id))
    read_only = not current_role_allows("reviewer")
    user = current_username()
    who = (f"Signed in as {user}: your role may view verdicts but not record them." if read_only
           else f"Verdicts are recorded as {user}, with the time. The form shows your own last verdict; others' are beside it.")
    history = review_history(workspace.store, patient_id)
    return dbc.Card([
        dbc.CardHeader("Review", className="fw-semibold"),
        dbc.CardBody(className="p-2", children=[
            dcc.Store(id="review-versions", data=latest_versions(current)),
            dbc.Row([_modality_form(m, current.get(m), history, user, read_only, regions) for m in MODALITIES], className="g-2"),
            html.P(who, className="small text-muted mt-2 mb-0", id="review-who"),
            html.Div(id="review-message", className="mt-2"),
            html.H6("History", className="mt-3"),
            html.Div(history_table(history, regions), id="review-history"),
        ]),
    ], className="mb-3", id="case-review-card")


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(
        Output("review-versions", "data"), Output("review-message", "children"), Output("review-history", "children"),
        Output("review-status", "children"), Output({"type": "review-current", "modality": ALL}, "children"),
        Output({"type": "review-consensus", "modality": ALL}, "children"),
        Input({"type": "review-save", "modality": ALL}, "n_clicks"),
        State({"type": "review-verdict", "modality": ALL}, "value"), State({"type": "review-comment", "modality": ALL}, "value"),
        State({"type": "review-flags", "modality": ALL}, "value"), State({"type": "review-signoff", "modality": ALL}, "value"),
        State({"type": "review-save", "modality": ALL}, "id"),
        State("review-versions", "data"), State("case-id", "data"), State("review-regions", "value"),
        prevent_initial_call=True,
    )
    @requires_role("reviewer")
    def save_review(clicks, verdicts, comments, flags, signoffs, ids, versions, patient_id, regions):
        if not ctx_triggered_click(clicks):
            return (no_update,) * 4 + ([no_update] * len(ids),) * 2
        modality = callback_context.triggered_id["modality"]
        i = [x["modality"] for x in ids].index(modality)
        unchanged = [no_update] * len(ids)
        if not verdicts[i]:
            return no_update, dbc.Alert(f"Choose agree, disagree or uncertain for the {modality} first.", color="warning",
                                        id="review-alert"), no_update, no_update, unchanged, unchanged
        try:
            entry = record_review(workspace.store, patient_id, modality, verdicts[i], comments[i] or "", flags[i] or [], bool(signoffs[i]),
                                  current_username(), expected_version=int((versions or {}).get(modality, 0)),
                                  regions=(regions or []) if modality == "slide" else [])
        except ReviewConflict as exc:
            return no_update, dbc.Alert([str(exc), " ", html.A("Reload the case", href=f"/case/{patient_id}")], color="danger",
                                        id="review-conflict"), no_update, no_update, unchanged, unchanged
        except PathReviewError as exc:
            return no_update, dbc.Alert(str(exc), color="warning", id="review-alert"), no_update, no_update, unchanged, unchanged
        current = current_reviews(workspace.store, patient_id)
        currents = [_current_text(current.get(x["modality"])) for x in ids]
        message = dbc.Alert(f"Saved the {modality} verdict ({entry.verdict}, version {entry.version}).", color="success", id="review-saved",
                            duration=8000)
        case = _case(workspace, patient_id)
        history = review_history(workspace.store, patient_id)
        agreements = [_consensus_line(consensus(history, x["modality"])).children for x in ids]
        return ({**(versions or {}), modality: entry.version}, message, history_table(history, case_regions(workspace, case)),
                _status_badge(case, current), currents, agreements)
