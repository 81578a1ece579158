"""The report panel: the text with LIME word weights for each class, stability, settings and what-if editing, with
its callbacks. The report page and the case page both show it."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html, no_update

from core.errors import PathReviewError
from core.explain.report_explanations import cached_report_explanation, report_explanation, report_model_id, stored_report
from core.explain.text import MAX_EDITED_REPORT_CHARS, LimeSettings, check_edited_report, explain_report
from core.export.report_figures import word_weight_figure
from core.models.report_text import token_diff
from core.workspace import Workspace
from dashboard.components import folds
from dashboard.components.highlighted_text import highlighted_report, weight_legend


def _settings_form() -> dbc.Row:
    def field(label, id_, value, **kw):
        return dbc.Col([dbc.Label(label, html_for=id_, className="small mb-0"),
                        dbc.Input(id=id_, type="number", value=value, size="sm", **kw)], width=6, md=3)
    return dbc.Row([
        # The boxes allow what LimeSettings allows: a value the box refuses arrives as None, and the message names this range.
        field("Features", "lime-num-features", 6, min=1, max=50, step=1),
        field("Samples", "lime-num-samples", 5000, min=10, max=50000, step=1),
        field("Seed", "lime-seed", 0, min=0, step=1),
        field("Kernel width", "lime-kernel-width", 25, min=0, max=1000, step="any"),
    ], className="g-2 mb-2")


def layout(workspace: Workspace, report_id: str, settings_open: bool = True) -> html.Div:
    """The report with LIME highlights, stability, settings and what-if editing; ``settings_open``: the LIME settings
    unfolded (the case page folds them away unless its link opens them)."""
    report = stored_report(workspace, report_id)
    if not workspace.models_for("report"):  # the text is still worth reading without a model to explain it
        return html.Div([html.P("This workspace has no report model: the report is shown as stored.", className="small text-muted",
                                id="report-no-model"), html.Pre(report.text, className="report-text", id="report-plain-text")])
    model = workspace.manifest(report_model_id(workspace))
    notices = []
    if "\ufffd" in report.text:
        notices.append(dbc.Alert("This stored report contains bytes that are not valid UTF-8; they are shown as � and "
                                 "the explanation is of the decoded text.", color="warning", id="report-encoding-warning"))
    return html.Div([
        *notices,
        dcc.Store(id="report-id", data=report_id),
        dbc.Row([
            dbc.Col([
                html.H5("What the model reads"),
                html.P("Noise removed (rule lines, control characters); identifiers, dates and numbers other than Gleason patterns, scores "
                       "and grade groups replaced by [ID], [DATE] and [#], which the model does not read; each word the model "
                       "reads is shaded by its LIME weight for the chosen class.", className="small text-muted"),
                dbc.RadioItems(id="lime-class", options=list(model.class_names), value=model.class_names[-1], inline=True),
                html.Div(id="lime-legend"),
                dcc.Loading(html.Div(id="report-highlights")),
            ], lg=7),
            dbc.Col([
                html.Div(id="report-prediction", className="fs-5 mb-2"),
                html.Div(id="lime-stability", className="mb-2"),
                folds.fold("lime", [_settings_form(), dbc.Button("Explain", id="lime-run", color="primary", size="sm")], settings_open),
                html.Div(id="lime-error", className="mt-2"),
            ], lg=5),
        ]),
        dcc.Graph(id="lime-weights", config={"displaylogo": False}),
        html.Hr(),
        html.H5("Edit report"),
        html.P("Change the text and re-predict. The stored report is never modified.", className="small text-muted"),
        dbc.Textarea(id="report-edit", value=report.text, rows=10, maxLength=MAX_EDITED_REPORT_CHARS, className="mb-2 font-monospace small"),
        dbc.Button("Re-predict and explain", id="report-edit-run", color="secondary", size="sm"),
        html.Div(id="report-edit-error", className="mt-2"),
        html.Div(id="report-edit-result", className="mt-2"),
    ])


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(
        Output("report-highlights", "children"), Output("lime-legend", "children"), Output("lime-weights", "figure"),
        Output("report-prediction", "children"), Output("lime-stability", "children"), Output("lime-error", "children"),
        Input("lime-run", "n_clicks"), Input("lime-class", "value"),
        State("report-id", "data"), State("lime-num-features", "value"), State("lime-num-samples", "value"),
        State("lime-seed", "value"), State("lime-kernel-width", "value"),
    )
    def explain_stored_report(_clicks, class_name, report_id, num_features, num_samples, seed, kernel_width):
        try:
            settings = LimeSettings.from_form(num_features, num_samples, seed, kernel_width)
            text = stored_report(workspace, report_id).text
            # Read from the workspace cache when a precompute job (or an earlier request) explained it already.
            explanation, stability, _source = report_explanation(workspace, report_model_id(workspace), text, settings)
        except PathReviewError as exc:
            return no_update, no_update, no_update, no_update, no_update, dbc.Alert(str(exc), color="warning")
        chosen = next(c for c in explanation.classes if c.class_name == class_name)
        predicted = explanation.predicted
        badge = dbc.Badge(f"{stability.label}: top-{settings.num_features} overlap {stability.top_k_overlap:.2f} over "
                          f"{len(stability.seeds)} seeds", color={"stable": "success", "moderate": "warning"}.get(stability.label, "danger"),
                          id="lime-stability-badge")
        prediction = [html.Span("Predicted: "), html.B(predicted.class_name, id="report-predicted-class"),
                      html.Span(f" (p = {predicted.probability:.3f}", id="report-probability"),
                      html.Span(f", local fit R² {chosen.r2:.2f})", className="small text-muted")]
        return (highlighted_report(text, chosen.weights, "report-highlighted"), weight_legend(class_name),
                word_weight_figure(explanation, settings.num_features), prediction, badge, "")

    @app.callback(
        Output("report-edit-result", "children"), Output("report-edit-error", "children"),
        Input("report-edit-run", "n_clicks"),
        State("report-edit", "value"), State("report-id", "data"), State("lime-class", "value"),
        State("lime-num-features", "value"), State("lime-num-samples", "value"), State("lime-seed", "value"),
        State("lime-kernel-width", "value"), prevent_initial_call=True,
    )
    def explain_edited_report(_clicks, edited, report_id, class_name, num_features, num_samples, seed, kernel_width):
        try:
            limits = workspace.config.limits
            edited = check_edited_report(edited, limits.edited_report_chars)  # first: an oversized edit costs nothing
            settings = LimeSettings.from_form(num_features, num_samples, seed, kernel_width)
            model_id = report_model_id(workspace)
            model = workspace.model(model_id)
            if class_name not in model.manifest.class_names:
                raise PathReviewError(f"choose one of the classes {', '.join(model.manifest.class_names)}")
            original_text = stored_report(workspace, report_id).text
            # The stored report as the panel explained it (cached when it was shown with these settings); only the
            # edit is new work.
            original = cached_report_explanation(workspace, model_id, original_text, settings) or explain_report(
                original_text, model, settings, max_sample_words=limits.lime_sample_words)
            edit = explain_report(edited, model, settings, max_sample_words=limits.lime_sample_words)
        except PathReviewError as exc:
            return no_update, dbc.Alert(str(exc), color="warning", id="report-edit-alert")
        before = next(c for c in original.classes if c.class_name == class_name)
        after = next(c for c in edit.classes if c.class_name == class_name)
        diff = [html.Span(t + " ", className={"added": "word-added", "removed": "word-removed"}.get(op, ""))
                for op, t in token_diff(original_text, edited) if op != "equal"]
        return html.Div([
            html.Div([f"P({class_name}): ", html.B(f"{before.probability:.3f}"), " → ",
                      html.B(f"{after.probability:.3f}", id="edited-probability"),
                      html.Span(f" ({after.probability - before.probability:+.3f})", className="text-muted")], className="fs-6"),
            html.Div([html.Span("Words changed: ", className="small text-muted"), *(diff or [html.Span("none", className="small")])],
                     id="report-word-diff", className="my-2"),
            highlighted_report(edited, after.weights, "edited-highlighted"),
        ]), ""
