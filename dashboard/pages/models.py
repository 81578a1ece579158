"""Models page: each model's purpose, provenance and held-out performance. For a binary model with stored predictions
on its held-out patients: 95 % confidence intervals that resample patients, a threshold control with the operating
point and confusion matrix it gives, and a calibration plot."""

from __future__ import annotations

import math
from functools import lru_cache

import dash_bootstrap_components as dbc
import numpy as np
from dash import ALL, Dash, Input, Output, callback_context, dcc, html, no_update

from core.heatmaps.grade_group import display_class_name
from core.heatmaps.localisation import cohort_comparison
from core.models.evaluation import HeldOutPredictions, held_out_predictions
from core.models.manifest import ModelManifest
from core.models.metrics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, ConfidenceInterval, operating_point, patient_bootstrap, reliability_curve
from core.workspace import Workspace
from dashboard.components.method_comparison import scores_table
from dashboard.figures.cohort_figures import model_comparison_figure
from dashboard.figures.model_performance import calibration_figure, confusion_figure, roc_figure

DEFAULT_THRESHOLD = 0.5
_GRAPH_CONFIG = {"displaylogo": False}


def _metric(label: str, value: float | int | None) -> dbc.Col:
    shown = "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
    return dbc.Col(html.Div([html.Div(label, className="text-muted small"), html.Div(shown, className="fs-4 fw-semibold")]), width="auto")


def _metric_ci(label: str, ci: ConfidenceInterval) -> dbc.Col:
    shown = "n/a" if math.isnan(ci.estimate) else f"{ci.estimate:.3f}"
    interval = "95 % CI n/a" if math.isnan(ci.low) else f"95 % CI {ci.low:.3f}–{ci.high:.3f}"
    return dbc.Col(html.Div([html.Div(label, className="text-muted small"), html.Div(shown, className="fs-4 fw-semibold"),
                             html.Div(interval, className="small metric-ci")]), width="auto")


@lru_cache(maxsize=64)
def _bootstrap(model_id: str, patients: tuple[str, ...], labels: tuple[int, ...], scores: tuple[float, ...]) -> dict[str, ConfidenceInterval]:
    """Kept per model and data: a few thousand resamples take a moment, and the page is opened often."""
    return patient_bootstrap(list(patients), np.array(labels), np.array(scores), DEFAULT_THRESHOLD)


def _rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def operating_point_view(held: HeldOutPredictions, threshold: float, class_names: list[str]) -> tuple[html.Div, object]:
    """The sensitivity, specificity, PPV and NPV at ``threshold``, and its confusion-matrix figure."""
    point = operating_point(held.labels, held.scores, threshold)
    rates = [("Sensitivity", point.sensitivity), ("Specificity", point.specificity), ("PPV", point.ppv), ("NPV", point.npv)]
    text = html.Div([
        html.Span(f"At threshold {threshold:.2f}: ", className="fw-semibold"),
        *[html.Span([f"{name} ", html.B(_rate(value), className="operating-rate"), " · " if i < 3 else ""]) for i, (name, value) in enumerate(rates)],
        html.Span(f" (TP {point.tp}, FP {point.fp}, TN {point.tn}, FN {point.fn})", className="text-muted"),
    ], className="small")
    names = [display_class_name(c) for c in class_names]
    return text, confusion_figure(point.confusion, names, title=f"Confusion matrix at threshold {threshold:.2f}")


def _held_out_section(manifest: ModelManifest, held: HeldOutPredictions) -> html.Div:
    cis = _bootstrap(manifest.id, tuple(held.patients), tuple(int(v) for v in held.labels), tuple(float(v) for v in held.scores))
    kinds = ", ".join(sorted(set(held.subject_kinds)))
    text, confusion = operating_point_view(held, DEFAULT_THRESHOLD, manifest.class_names)
    model_key = {"model": manifest.id}
    return html.Div([
        dbc.Row([_metric_ci("AUC", cis["auc"]), _metric_ci(f"F1 (≥ {DEFAULT_THRESHOLD})", cis["f1"]),
                 _metric_ci(f"Accuracy (≥ {DEFAULT_THRESHOLD})", cis["accuracy"]), _metric("Held-out n", len(held.labels)),
                 _metric("Patients", held.n_patients)], className="g-4 mb-1"),
        html.P(f"Computed on the stored predictions for {len(held.labels)} labelled {kinds}s of {held.n_patients} held-out patients "
               f"(named by {held.source}). 95 % confidence intervals: percentile bootstrap resampling patients, not samples "
               f"({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}; a patient's samples are drawn together).",
               className="text-muted small", id={"type": "model-ci-note", **model_key}),
        dbc.Label("Decision threshold", className="small mb-0"),
        dcc.Slider(id={"type": "model-threshold", **model_key}, min=0.05, max=0.95, step=0.05, value=DEFAULT_THRESHOLD,
                   marks={0.05: "0.05", 0.25: "0.25", 0.5: "0.5", 0.75: "0.75", 0.95: "0.95"}),
        html.Div(text, id={"type": "model-operating-point", **model_key}, className="mb-2"),
        dbc.Row([
            dbc.Col(dcc.Graph(figure=confusion, id={"type": "model-confusion", **model_key}, config=_GRAPH_CONFIG), md=6),
            dbc.Col(dcc.Graph(figure=calibration_figure(reliability_curve(held.labels, held.scores)), id={"type": "model-calibration", **model_key},
                              config=_GRAPH_CONFIG), md=6),
        ]),
    ], className="held-out-evaluation")


def model_card(manifest: ModelManifest, held: HeldOutPredictions | None = None) -> dbc.Card:
    m = manifest.metrics
    figures = []
    if m.roc_fpr:
        figures.append(dbc.Col(dcc.Graph(figure=roc_figure(m.roc_fpr, m.roc_tpr, m.auc), config=_GRAPH_CONFIG), md=6))
    if m.confusion and held is None:
        names = manifest.class_names if len(m.confusion) == len(manifest.class_names) else [str(i) for i in range(len(m.confusion))]
        figures.append(dbc.Col(dcc.Graph(figure=confusion_figure(m.confusion, [display_class_name(n) for n in names]), config=_GRAPH_CONFIG), md=6))
    no_ci = ("Confidence intervals, the threshold control and calibration need this model's predictions on held-out patients, "
             "which the workspace does not store (binary models with [metrics] held_out_patients in model.toml).")
    return dbc.Card([
        dbc.CardHeader([html.H4(manifest.name, className="mb-0"),
                        html.Code(f"{manifest.id} · {manifest.task} · {manifest.architecture}", className="small")]),
        dbc.CardBody([
            html.P(manifest.description),
            html.Div("Recorded at training:", className="small text-muted"),
            dbc.Row([_metric("AUC", m.auc), _metric("F1", m.f1), _metric("Accuracy", m.accuracy), _metric("Test n", m.n_test)], className="g-4 mb-2"),
            html.P(f"Test split: {m.split}" if m.split else "", className="text-muted small"),
            dbc.Row(figures),
            _held_out_section(manifest, held) if held is not None else html.P(no_ci, className="small text-muted"),
            html.Div([html.Span("Classes: ", className="text-muted"), ", ".join(display_class_name(c) for c in manifest.class_names),
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


def held_out(workspace: Workspace, model_id: str) -> HeldOutPredictions | None:
    """The model's stored predictions on its held-out patients, when the workspace names them."""
    patients = workspace.held_out_patients(model_id)
    if patients is None:
        return None
    with workspace.store.session() as s:
        return held_out_predictions(s, workspace.manifest(model_id), *patients)


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    # ALL rather than MATCH: the request gate takes pattern-matched values as lists. Only the moved slider's model is redrawn.
    @app.callback(Output({"type": "model-operating-point", "model": ALL}, "children"), Output({"type": "model-confusion", "model": ALL}, "figure"),
                  Input({"type": "model-threshold", "model": ALL}, "value"), prevent_initial_call=True)
    def show_operating_point(thresholds):
        models = [item["id"]["model"] for item in callback_context.inputs_list[0]]
        moved = (callback_context.triggered_id or {}).get("model")
        texts, figures = [no_update] * len(models), [no_update] * len(models)
        for i, (model_id, threshold) in enumerate(zip(models, thresholds, strict=True)):
            held = held_out(workspace, model_id) if model_id == moved and model_id in workspace.manifests else None
            if held is not None and threshold is not None:
                texts[i], figures[i] = operating_point_view(held, float(threshold), workspace.manifest(model_id).class_names)
        return texts, figures

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
                     *[model_card(m, held_out(workspace, m.id)) for m in manifests]])


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Models", href="/models", active="exact"))
