"""Models page: each model's purpose, provenance and held-out performance."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from core.heatmaps.localisation import cohort_comparison
from core.models.manifest import ModelManifest
from core.workspace import Workspace
from dashboard.components.method_comparison import scores_table
from dashboard.figures.cohort_figures import model_comparison_figure
from dashboard.figures.model_performance import confusion_figure, roc_figure


def _metric(label: str, value: float | int | None) -> dbc.Col:
    shown = "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
    return dbc.Col(html.Div([html.Div(label, className="text-muted small"), html.Div(shown, className="fs-4 fw-semibold")]), width="auto")


def model_card(manifest: ModelManifest) -> dbc.Card:
    m = manifest.metrics
    figures = []
    if m.roc_fpr:
        figures.append(dbc.Col(dcc.Graph(figure=roc_figure(m.roc_fpr, m.roc_tpr, m.auc), config={"displaylogo": False}), md=6))
    if m.confusion:
        names = manifest.class_names if len(m.confusion) == len(manifest.class_names) else [str(i) for i in range(len(m.confusion))]
        figures.append(dbc.Col(dcc.Graph(figure=confusion_figure(m.confusion, names), config={"displaylogo": False}), md=6))
    return dbc.Card([
        dbc.CardHeader([html.H4(manifest.name, className="mb-0"),
                        html.Code(f"{manifest.id} · {manifest.task} · {manifest.architecture}", className="small")]),
        dbc.CardBody([
            html.P(manifest.description),
            dbc.Row([_metric("AUC", m.auc), _metric("F1", m.f1), _metric("Accuracy", m.accuracy), _metric("Test n", m.n_test)], className="g-4 mb-2"),
            html.P(f"Test split: {m.split}" if m.split else "", className="text-muted small"),
            dbc.Row(figures),
            html.Div([html.Span("Classes: ", className="text-muted"), ", ".join(manifest.class_names),
                      html.Br(), html.Span("Weights sha256: ", className="text-muted"), html.Code(manifest.weights_sha256[:16] + "…")],
                     className="small"),
        ]),
    ], className="mb-4 model-card", id=f"model-{manifest.id}")


def _localisation_card(workspace: Workspace) -> html.Div:
    if not workspace.models_for("patch"):
        return html.Div()
    return dbc.Card([
        dbc.CardHeader("Localisation methods on held-out slides with ground truth"),
        dbc.CardBody([
            html.P("Mean F1+, F1− and Dice of each method's thresholded tumour map (threshold 0.5) over the slides with an "
                   "annotation mask (for the demo, its held-out patients' slides), scored over tissue cells only; the all-ones "
                   "bound marks all tissue. Slides whose annotation has no tumour are not averaged in (their Dice is undefined, "
                   "not 1.0): they get a table of their own with F1− and the share of tissue marked as tumour. Heatmaps are "
                   "computed where missing.", className="small text-muted"),
            dbc.Button("Compute the table", id="localisation-run", size="sm", color="secondary"),
            dcc.Loading(html.Div(id="localisation-table", className="mt-2")),
        ]),
    ], className="mb-4")


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(Output("localisation-table", "children"), Input("localisation-run", "n_clicks"), prevent_initial_call=True)
    def show_localisation_table(_clicks):
        patch_model = workspace.models_for("patch")[0]
        table = cohort_comparison(workspace, patch_model)
        if not table:
            return html.P("No slide with a ground-truth mask.", className="small text-muted")
        first = next(iter(table.values()))
        n, n_benign = first["slides"], first["benign slides"]
        parts = [html.P(f"{n} slides with annotated tumour", className="small text-muted"),
                 scores_table([(m, v["F1+"], v["F1-"], v["Dice"]) for m, v in table.items()], "localisation-scores")]
        if n_benign:
            parts += [html.P(f"{n_benign} slides without annotated tumour", className="small text-muted mt-2"),
                      scores_table([(m, v["benign F1-"], v["benign marked"]) for m, v in table.items()], "localisation-benign-scores",
                                   ("F1−", "tissue marked tumour"))]
        return html.Div(parts)


def layout(workspace: Workspace) -> html.Div:
    manifests = [workspace.manifest(mid) for mid in workspace.config.models]
    comparison = model_comparison_figure([m.id for m in manifests], {
        "AUC": [m.metrics.auc for m in manifests], "F1": [m.metrics.f1 for m in manifests], "accuracy": [m.metrics.accuracy for m in manifests]})
    return html.Div([html.H2("Models"), html.P("Held-out test performance recorded when each model was trained.", className="text-muted"),
                     dcc.Graph(figure=comparison, id="model-comparison", config={"displaylogo": False}),
                     _localisation_card(workspace),
                     *[model_card(m) for m in manifests]])


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Models", href="/models", active="exact"))
