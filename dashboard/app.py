"""The Dash app factory: navigation, page routing and the workspace every page reads."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote

import dash_bootstrap_components as dbc
import diskcache
from dash import CeleryManager, Dash, DiskcacheManager, Input, Output, State, dcc, html

from core.errors import PathReviewError
from core.explain.patient_explanations import PatientExplainers
from core.jobs.dispatch import JobDispatcher
from core.slides.tiles import TileService
from core.workspace import Workspace
from dashboard.auth import csrf_token, current_role, current_role_allows, current_username, install_auth
from dashboard.components import patient_panel, report_panel, slide_viewer
from dashboard.pages import admin, case, cohort, models, patient, report, slide
from dashboard.pages import jobs as jobs_page
from dashboard.pages import patients as patients_page
from dashboard.pages import slides as slides_page
from dashboard.request_limits import install_request_limits, page_id_problem
from dashboard.routes import register_routes
from dashboard.security_headers import install_security_headers

APP_TITLE = "PathReview"
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def _navbar(workspace: Workspace) -> dbc.Navbar:
    items = [cohort.nav_item(), patients_page.nav_item(), slides_page.nav_item(), models.nav_item(), jobs_page.nav_item()]
    if current_role_allows("admin"):
        items.append(admin.nav_item())
    return dbc.Navbar(dbc.Container([
        dbc.NavbarBrand(APP_TITLE, href="/"),
        dbc.Nav(items, navbar=True),
        html.Span(workspace.name, className="navbar-text ms-auto small me-3"),
        html.Span([html.Span(current_username(), id="signed-in-user"), html.Span(f" ({current_role()})", className="text-white-50"),
                   html.Form([dcc.Input(type="hidden", name="csrf_token", value=csrf_token(), id="sign-out-token"),
                              html.Button("Sign out", type="submit", id="sign-out", className="btn btn-link btn-sm link-light p-0 ms-2")],
                             method="POST", action="/logout", className="d-inline")], className="navbar-text small"),
    ], fluid=True), color="dark", dark=True, className="mb-3")



def render_page(workspace: Workspace, tiles: TileService, pathname: str | None, patients: PatientExplainers | None = None,
                search: str | None = None):
    path = (pathname if isinstance(pathname, str) else "/").rstrip("/") or "/"
    search = search if isinstance(search, str) else ""
    patients = patients or PatientExplainers(workspace)
    try:
        if path in ("/", "/cohort"):
            return cohort.layout(workspace)
        if path == "/patients":
            return patients_page.layout(workspace)
        if path == "/slides":
            return slides_page.layout(workspace)
        if path == "/models":
            return models.layout(workspace)
        if path == "/jobs":
            return jobs_page.layout(workspace)
        if path == "/admin":
            return admin.layout(workspace) if current_role_allows("admin") else dbc.Alert(
                "The admin page is for administrators.", color="warning", id="page-error")
        kind, _, page_id = path[1:].partition("/")
        if kind in ("case", "patient", "report", "slide") and page_id and "/" not in page_id:
            page_id = unquote(page_id)  # the browser's pathname keeps ids percent-encoded
            if problem := page_id_problem(page_id):
                return dbc.Alert(f"There is no {kind} at this address: {problem}.", color="warning", id="page-error")
            if kind == "case":
                return case.layout(workspace, tiles, patients, page_id, dict(parse_qsl(search.lstrip("?"))))
            if kind == "patient":
                return patient.layout(workspace, patients, page_id)
            if kind == "report":
                return report.layout(workspace, page_id)
            return slide.layout(workspace, tiles, page_id)
    except PathReviewError as exc:
        return dbc.Alert(str(exc), color="warning", id="page-error")
    return dbc.Alert(f"There is no page at {path[:200]}.", color="warning", id="page-error")


def _celery_app(workspace: Workspace):
    if not workspace.config.broker_url:
        return None
    from core.jobs.celery_app import make_celery

    return make_celery(workspace.config.broker_url)


def create_app(workspace: Workspace, secure_cookies: bool = False, celery_app=None) -> Dash:
    """``celery_app``: the Celery app to run background callbacks on (a worker passes its own); by default one on the
    broker that ``workspace.toml`` names, if any."""
    tiles = TileService(workspace)
    patients = PatientExplainers(workspace)
    celery_app = celery_app if celery_app is not None else _celery_app(workspace)
    # Long jobs run as background callbacks: on the Celery workers when the workspace names a broker, else in
    # processes forked from this one with their state in the workspace cache (the one-machine setup).
    jobs = CeleryManager(celery_app) if celery_app is not None else DiskcacheManager(diskcache.Cache(str(workspace.cache_dir / "jobs")))
    dispatcher = JobDispatcher(workspace, celery_app)
    # Bootstrap (Bootswatch Flatly) is served from assets/: the app must work with no internet access.
    app = Dash(__name__, title=APP_TITLE, assets_folder=str(ASSETS_DIR), suppress_callback_exceptions=True,
               background_callback_manager=jobs)
    # A function: the navigation bar shows who is signed in. Pages fill in through the router below.
    app.layout = lambda: html.Div([
        dcc.Location(id="url"),
        _navbar(workspace),
        dbc.Container(html.Div(id="page-content"), fluid=True),
    ])

    # The query is read when a page opens (deep links); pages rewrite it in place without re-rendering.
    @app.callback(Output("page-content", "children"), Input("url", "pathname"), State("url", "search"))
    def show_page(pathname, search):
        return render_page(workspace, tiles, pathname, patients, search)  # its audit row: dashboard.callback_inputs

    cohort.register_callbacks(app, workspace)
    case.register_callbacks(app, workspace, tiles, patients)
    models.register_callbacks(app, workspace)
    # The components shown by more than one page register their callbacks once, here.
    slide_viewer.register_callbacks(app, workspace, tiles, dispatcher)
    patient_panel.register_callbacks(app, workspace, patients)
    report_panel.register_callbacks(app, workspace)
    patients_page.register_callbacks(app, workspace, patients)
    admin.register_callbacks(app, workspace)
    slides_page.register_callbacks(app, workspace, dispatcher)
    jobs_page.register_callbacks(app, workspace, dispatcher)
    install_auth(app.server, workspace, secure_cookies)  # first: an anonymous request learns nothing, not even about its body
    install_request_limits(app.server, app.callback_map, workspace)
    register_routes(app.server, workspace, tiles, dispatcher)
    install_security_headers(app.server, app.csp_hashes())
    return app
