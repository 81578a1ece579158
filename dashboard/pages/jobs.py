"""Jobs page (``/jobs``): queued, running, finished and failed jobs with their progress; start a precompute, cancel
or retry a job. Jobs run on the Celery workers when the workspace names a broker, else in this server's process."""

from __future__ import annotations

from datetime import UTC, datetime

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, callback_context, dcc, html, no_update
from flask import has_request_context
from sqlalchemy import select

from core.errors import PathReviewError
from core.jobs import WHAT
from core.jobs.dispatch import JobDispatcher
from core.jobs.kinds import plan_precompute
from core.jobs.state import ACTIVE, JobView, list_jobs
from core.store.schema import Patient, Slide
from core.workspace import Workspace
from dashboard.auth import current_role_allows, current_username, requires_role

SHOWN_JOBS = 100
REFRESH_MS = 1000
FILTERS = {"all": None, "active": ACTIVE, "failed": ("failed", "cancelled"), "done": ("done",)}
STATUS_COLOURS = {"queued": "secondary", "running": "primary", "done": "success", "failed": "danger", "cancelled": "warning",
                  "stalled": "dark"}
JOB_MANAGER_ROLE = "reviewer"
WHAT_LABELS = {"heatmaps": "Heatmaps", "cams": "CAM + attention maps", "shap": "Visit SHAP", "lime": "Report LIME"}


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Jobs", href="/jobs", active="exact"))


def _shows_job_controls() -> bool:
    """Reviewers and admins start, cancel and retry jobs (the callbacks require it); viewers watch, without the buttons."""
    return not has_request_context() or current_role_allows(JOB_MANAGER_ROLE)


def layout(workspace: Workspace) -> html.Div:
    with workspace.store.session() as s:
        patients = list(s.scalars(select(Patient.id).order_by(Patient.id)))
        slides = list(s.scalars(select(Slide.id).order_by(Slide.id)))
    mode = ("Jobs go through the broker to the Celery workers." if workspace.config.broker_url
            else "Jobs run one at a time in this server's process (workspace.toml names no broker).")
    return html.Div([
        html.H2("Jobs", id="jobs-title"),
        html.P(mode, className="text-muted small", id="jobs-mode"),
        dbc.Card([
            dbc.CardHeader("Precompute"),
            dbc.CardBody([
                dbc.Row([
                    dbc.Col([dbc.Label("What", className="small"),
                             dbc.Checklist(id="jobs-what", options=[{"label": WHAT_LABELS[w], "value": w} for w in WHAT], value=["heatmaps"])],
                            md=3),
                    dbc.Col([dbc.Label("Patients (none chosen: every patient)", className="small"),
                             dcc.Dropdown(id="jobs-patients", options=patients, multi=True, placeholder="all patients"),
                             dbc.Label("or slides", className="small mt-2"),
                             dcc.Dropdown(id="jobs-slides", options=slides, multi=True, placeholder="slides…")], md=5),
                    dbc.Col([dbc.Label("Patch overlap", className="small"),
                             dbc.RadioItems(id="jobs-overlap", options=[{"label": "0 %", "value": 0.0}, {"label": "50 %", "value": 0.5},
                                                                        {"label": "75 %", "value": 0.75}], value=0.0, inline=True),
                             dbc.Button("Start", id="jobs-start", color="primary", size="sm", className="mt-3",
                                        disabled=not _shows_job_controls())], md=4),
                ]),
                html.Div(id="jobs-start-message", className="mt-2"),
            ]),
        ], className="mb-3"),
        html.Div([dbc.RadioItems(id="jobs-filter", options=[{"label": k, "value": k} for k in FILTERS], value="all", inline=True),
                  html.Div(id="jobs-action-message", className="small ms-3")], className="d-flex align-items-center mb-2"),
        html.Div(id="jobs-table", children=jobs_table(list_jobs(workspace.store, limit=SHOWN_JOBS), _shows_job_controls())),
        dcc.Store(id="jobs-action", data=0),
        dcc.Interval(id="jobs-refresh", interval=REFRESH_MS),
    ])


def _ago(t: datetime, now: datetime) -> str:
    seconds = max(0, int((now - t).total_seconds()))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago" if seconds < 7200 else f"{seconds // 3600} h ago"


def _subject_link(job: JobView):
    if job.kind in ("heatmap", "cams", "layer", "mil", "mil-refine"):
        return html.A(job.subject, href=f"/slide/{job.subject}")
    if job.kind == "lime":
        return html.A(job.subject, href=f"/report/{job.subject}")
    if job.kind == "shap" and len(job.params.get("patients", [])) == 1:
        return html.A(job.subject, href=f"/patient/{job.subject}")
    return job.subject


RUNNER_WORDS = {"local": "this server", "background": "this server, for a page", "celery": "a job worker",
                "precompute": "the precompute command"}


def runs_on(job: JobView) -> str:
    """Where the job runs, in plain words: the kind of runner and the machine, not a process id."""
    where = RUNNER_WORDS.get(job.runner, job.runner)
    host = job.worker.rpartition(" ")[2].rpartition(":")[0] if job.worker else ""
    return f"{where} ({host})" if host else where


def jobs_table(jobs: list[JobView], may_manage: bool = True) -> html.Div:
    if not jobs:
        return html.P("No jobs yet.", className="text-muted", id="jobs-empty")
    now = datetime.now(UTC)
    rows = []
    for job in jobs:
        status = "stalled" if job.stalled(now) else job.status
        percent = round(100 * job.progress)
        actions = []
        if may_manage and job.status in ACTIVE:
            actions.append(dbc.Button("Cancel", id={"type": "job-cancel", "index": job.id}, size="sm", color="secondary", outline=True))
        if may_manage and (job.status in ("failed", "cancelled") or status == "stalled"):
            actions.append(dbc.Button("Retry", id={"type": "job-retry", "index": job.id}, size="sm", color="primary", outline=True))
        rows.append(html.Tr([
            html.Td(job.id), html.Td(job.kind), html.Td(_subject_link(job)),
            html.Td(dbc.Badge(status, color=STATUS_COLOURS[status], className="job-status")),
            html.Td(dbc.Progress(value=percent, label=f"{percent} %", striped=job.status == "running", animated=job.status == "running",
                                 color=STATUS_COLOURS[status], className="job-progress", style={"height": "18px", "minWidth": "8rem"})),
            html.Td(f"{job.attempts}/{job.max_attempts}"),
            html.Td(job.message, className="small job-message" + (" text-warning" if job.result.get("notices") else ""),
                    style={"maxWidth": "28rem"}),
            html.Td(runs_on(job), className="small job-runs-on", title=job.worker),
            html.Td(_ago(job.updated_at, now), className="small"),
            html.Td(actions),
        ], id=f"job-row-{job.id}", className=f"job-row job-{job.status}"))
    header = html.Thead(html.Tr([html.Th(h) for h in ("#", "Kind", "Subject", "Status", "Progress", "Attempts", "Message", "Runs on",
                                                      "Updated", "")]))
    return dbc.Table([header, html.Tbody(rows)], size="sm", hover=True, responsive=True, id="jobs-list")


def register_callbacks(app: Dash, workspace: Workspace, dispatcher: JobDispatcher) -> None:
    @app.callback(Output("jobs-start-message", "children"), Output("jobs-action", "data", allow_duplicate=True),
                  Input("jobs-start", "n_clicks"), State("jobs-what", "value"), State("jobs-patients", "value"),
                  State("jobs-slides", "value"), State("jobs-overlap", "value"), State("jobs-action", "data"), prevent_initial_call=True)
    @requires_role(JOB_MANAGER_ROLE)
    def start_precompute(_clicks, what, patients, slides, overlap, action):
        try:
            specs = plan_precompute(workspace, what or [], patients or None, slides or None, float(overlap or 0.0))
            if not specs:
                raise PathReviewError("nothing to compute for this selection")
            new, existing = dispatcher.submit(specs, current_username())
        except PathReviewError as exc:
            return dbc.Alert(str(exc), color="warning", id="jobs-start-error"), no_update
        text = f"Queued {len(new)} job{'s' if len(new) != 1 else ''}"
        if existing:
            text += f"; {len(existing)} were already queued or running"
        return html.Span(text + ".", id="jobs-started"), (action or 0) + 1

    @app.callback(Output("jobs-table", "children"), Input("jobs-refresh", "n_intervals"), Input("jobs-filter", "value"),
                  Input("jobs-action", "data"))
    def refresh_jobs(_n, status_filter, _action):
        return jobs_table(list_jobs(workspace.store, FILTERS.get(status_filter), SHOWN_JOBS), _shows_job_controls())

    @app.callback(Output("jobs-action-message", "children"), Output("jobs-action", "data"),
                  Input({"type": "job-cancel", "index": ALL}, "n_clicks"), Input({"type": "job-retry", "index": ALL}, "n_clicks"),
                  State("jobs-action", "data"), prevent_initial_call=True)
    @requires_role(JOB_MANAGER_ROLE)
    def cancel_or_retry(_cancels, _retries, action):
        triggered = callback_context.triggered
        if not triggered or not triggered[0].get("value"):
            return no_update, no_update  # a button appeared with the table; nothing was clicked
        target = callback_context.triggered_id
        user = current_username()
        try:
            if target["type"] == "job-cancel":
                job = dispatcher.cancel(int(target["index"]), user)
                text = f"Job {job.id} cancelled."
            else:
                job = dispatcher.retry(int(target["index"]), user)
                text = f"Job {job.id} queued again."
        except PathReviewError as exc:
            return html.Span(str(exc), className="text-danger"), (action or 0) + 1
        return html.Span(text, id="jobs-action-done"), (action or 0) + 1
