"""Admin page (``/admin``): accounts and the audit trail, with the trail as CSV (``/admin/audit.csv``)."""

from __future__ import annotations

from collections import Counter

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, dcc, html

from core.auth.users import list_users
from core.checks.startup import startup_check
from core.store.audit import ACTIONS, audit_events
from core.workspace import Workspace
from dashboard.auth import requires_role
from dashboard.figures.audit_figures import audit_activity_figure

SHOWN_EVENTS = 500


def nav_item() -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink("Admin", href="/admin", active="exact"))


def _check_notice(workspace: Workspace) -> html.Div | None:
    """What the start-up workspace check found (run_dashboard.py check runs the same), as a warning for admins."""
    check = startup_check(workspace)
    if check is None:
        return None
    if not check.done.is_set():
        return dbc.Alert("The workspace check is still running; reload this page to see what it finds.", color="info", id="admin-check")
    if check.failure:
        return dbc.Alert(f"The workspace check did not finish: {check.failure}", color="warning", id="admin-check")
    if not check.problems:
        return dbc.Alert("Workspace check: every slide reads, every model loads and runs, every patient's visits fit their models.",
                         color="success", id="admin-check")
    rows = [html.Tr([html.Td(p.kind), html.Td(p.subject), html.Td(p.message)]) for p in check.problems[:50]]
    more = f" (the first 50 of {len(check.problems)}; run_dashboard.py check lists all)" if len(check.problems) > 50 else ""
    noun = "problem" if len(check.problems) == 1 else "problems"
    return dbc.Alert([html.Strong(f"Workspace check: {len(check.problems)} {noun}{more}. "), "The app serves everything else.",
                      dbc.Table([html.Tbody(rows)], size="sm", className="mb-0 mt-2 small")], color="warning", id="admin-check")


def layout(workspace: Workspace) -> html.Div:
    users = list_users(workspace.store)
    return html.Div([
        html.H2("Administration", id="admin-title"),
        _check_notice(workspace),
        html.P("Accounts are managed with: python run_dashboard.py users add|remove|list|passwd --workspace DIR", className="small text-muted"),
        dbc.Table([html.Thead(html.Tr([html.Th("User"), html.Th("Role"), html.Th("Created")])),
                   html.Tbody([html.Tr([html.Td(u.username), html.Td(u.role), html.Td(u.created_at.strftime("%Y-%m-%d %H:%M"))])
                               for u in users])], size="sm", id="admin-users-table", style={"maxWidth": "40rem"}),
        html.Div([html.H4("Audit trail", className="me-3 mb-0"),
                  html.A("Download all as CSV", href="/admin/audit.csv", id="audit-csv-link", className="btn btn-sm btn-outline-primary")],
                 className="d-flex align-items-center mt-4 mb-2"),
        dbc.Row([dbc.Col(dcc.Dropdown(id="audit-action", options=list(ACTIONS), placeholder="all actions", clearable=True), md=3),
                 dbc.Col(dbc.Input(id="audit-user", placeholder="user", size="sm", debounce=True), md=3)], className="mb-2"),
        dcc.Graph(id="audit-activity", config={"displaylogo": False}),
        html.Div(id="admin-audit-table"),
    ])


def register_callbacks(app: Dash, workspace: Workspace) -> None:
    @app.callback(Output("admin-audit-table", "children"), Output("audit-activity", "figure"),
                  Input("audit-action", "value"), Input("audit-user", "value"))
    @requires_role("admin")
    def show_audit(action, user):
        events = audit_events(workspace.store, limit=SHOWN_EVENTS, action=action or None, user=(user or "").strip() or None)
        rows = [html.Tr([html.Td(e.at.strftime("%Y-%m-%d %H:%M:%S")), html.Td(e.user), html.Td(e.action), html.Td(e.target),
                         html.Td(", ".join(f"{k}={v}" for k, v in e.detail.items()), className="small")], className="audit-row") for e in events]
        table = dbc.Table([html.Thead(html.Tr([html.Th(h) for h in ("UTC", "User", "Action", "Target", "Detail")])), html.Tbody(rows)],
                          size="sm", striped=True, id="audit-table", className="small")
        note = html.P(f"The latest {len(events)} events" + (f" (of at most {SHOWN_EVENTS} shown)" if len(events) == SHOWN_EVENTS else ""),
                      className="small text-muted")
        return html.Div([note, table]), audit_activity_figure(Counter(e.action for e in events))
