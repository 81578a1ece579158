"""Limits on what a request may carry, and clear 4xx answers for requests the app cannot use.

- Bodies over ``MAX_REQUEST_BYTES`` are refused with 413 before they are read (Flask's ``MAX_CONTENT_LENGTH``).
- A Dash callback request (``POST /_dash-update-component``) must be a JSON object of the shape the Dash renderer
  sends: a registered callback's output, and as many inputs and state items as it declares, each naming the
  component property it stands for. Anything else is a 400 with a message; Dash itself would fail with a 500.
  A signed-in user's body that is not a JSON object is refused before the sign-in hooks read it; the shape is
  checked when the callback is dispatched, after the sign-in and role checks (so a viewer still gets 403).
- Then ``dashboard.callback_inputs``: the role the callback needs (403), the type of every value it is sent (400),
  the user's running jobs for a callback that starts one (429); after it runs, the audit rows its answer means.
- A project error (``PathReviewError``) that escapes a callback was caused by what the client sent (an unknown id,
  a value no form would send): 404 for an unknown id, 422 for an unreadable slide, 400 otherwise, with its message.
  When the audit trail cannot be written (``AuditUnavailable``): 503, try again, and nothing was done.
- Ids in page paths (``/case/<id>`` ...) are checked by ``page_id_problem`` before any lookup.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import unicodedata
from collections import OrderedDict

from dash.exceptions import InvalidCallbackReturnValue
from flask import Flask, Response, g, request
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from core.errors import AuditUnavailable, NotFoundError, PathReviewError
from core.jobs.state import active_job_count
from core.slides.reader import SlideReadError
from core.workspace import Workspace
from dashboard.auth import audit, current_role, current_role_allows, current_username
from dashboard.callback_inputs import Answer, CallbackSchema, build_schemas, values_problem

MAX_REQUEST_BYTES = 2 << 20  # 2 MiB: a callback's inputs, a 100,000-character report edit; never an upload
MAX_PAGE_ID_CHARS = 128
CALLBACK_PATH = "/_dash-update-component"
log = logging.getLogger(__name__)


def _plain(message: str, status: int) -> Response:
    return Response(message, status=status, mimetype="text/plain", headers={"Cache-Control": "no-store"})


def page_id_problem(page_id: str) -> str | None:
    """Why ``page_id`` (already percent-decoded) cannot name a record, or None when it may (the store decides)."""
    if not page_id:
        return "the address names no record"
    if len(page_id) > MAX_PAGE_ID_CHARS:
        return f"a record id is at most {MAX_PAGE_ID_CHARS} characters"
    if page_id in (".", "..") or any(c in page_id for c in "/\\") or any(unicodedata.category(c)[0] == "C" for c in page_id):
        return "a record id has no slashes, dot segments or control characters"
    return None


def _item_problem(item: object, declared: dict, where: str) -> str | None:
    """One input or state entry: ``{"id", "property", "value"}``, or a list of them for a pattern-matching (ALL) id."""
    wildcard = declared["id"].startswith("{")
    entries = item if wildcard and isinstance(item, list) else [item]
    for entry in entries:
        if not isinstance(entry, dict):
            return f"{where} must be an object with an id and a property"
        if entry.get("property") != declared["property"]:
            return f"{where} must be the {declared['property']!r} property of {declared['id']}"
        if wildcard and not isinstance(entry.get("id"), dict):
            return f"{where} must have a pattern-matching id"
        if not wildcard and entry.get("id") != declared["id"]:
            return f"{where} must be component {declared['id']!r}"
    return None


def callback_body_problem(body: object, callback_map: dict | None) -> str | None:
    """Why ``body`` is not a callback request this app can run, or None."""
    if not isinstance(body, dict):
        return "a callback request must be a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or not output:
        return "a callback request must name its output"
    if callback_map is not None and output not in callback_map:
        return "the request names no callback of this app (reload the page)"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
        return "'changedPropIds' must be a list of strings"
    outputs = body.get("outputs", [])
    if not isinstance(outputs, dict | list):
        return "'outputs' must be an object or a list"
    for key in ("inputs", "state"):
        if not isinstance(body.get(key, []), list):
            return f"'{key}' must be a list"
    if callback_map is None:
        return None
    callback = callback_map[output]
    indices = callback.get("outputs_indices", 0)
    if not callback.get("no_output") and isinstance(indices, list) and (not isinstance(outputs, list) or len(outputs) != len(indices)):
        return f"'outputs' must list the callback's {len(indices)} outputs"
    for key in ("inputs", "state"):
        items, declared = body.get(key, []), callback.get(key, [])
        if len(items) != len(declared):
            return f"the callback takes {len(declared)} {key} (got {len(items)})"
        for i, (item, spec) in enumerate(zip(items, declared, strict=True)):
            problem = _item_problem(item, spec, f"{key}[{i}]")
            if problem:
                return problem
    return None


def _parsed_body() -> tuple[object, str | None]:
    """The request's JSON body, or the message saying why there is none; parsed once a request (the body check and
    the shape check both read it)."""
    if "parsed_body" not in g:
        try:
            g.parsed_body = json.loads(request.get_data(cache=True)), None  # deep nesting is a RecursionError, not a ValueError
        except (ValueError, RecursionError):
            g.parsed_body = None, "The callback request is not valid JSON; nothing was done."
    return g.parsed_body


# Raised by a callback given values that are each valid but do not fit together (a visit past the last, a stale
# slide context): the request's fault, answered 400, never a 500.
INCONSISTENT_VALUES = (LookupError, TypeError, ValueError, AttributeError, ArithmeticError, InvalidCallbackReturnValue)


class StartedJobs:
    """The checked values each background callback job was started with, by the cache key Dash answered with."""

    def __init__(self, most: int = 2000) -> None:
        self._values: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()
        self._most = most

    def remember(self, response: Response, values: dict) -> None:
        key = (json.loads(response.get_data()) or {}).get("cacheKey")  # absent when the job's result came at once
        if isinstance(key, str):
            with self._lock:
                self._values[key] = values
                while len(self._values) > self._most:
                    self._values.popitem(last=False)

    def values_of(self, key: str) -> dict:
        with self._lock:
            return self._values.get(key, {})


def _gate(schema: CallbackSchema, body: dict, workspace: Workspace | None) -> tuple[Response | None, dict]:
    """The role, value and job checks of one callback request: (the refusal, or None; its values)."""
    rule = schema.rule
    problem, values = values_problem(body, schema)
    if problem:
        return _plain(f"Malformed callback request: {problem}; nothing was done.", 400), {}
    if rule.starts_job and workspace is not None and "cacheKey" not in request.args:
        limit = workspace.config.limits.jobs_per_user
        if active_job_count(workspace.store, current_username()) >= limit:
            return _plain(f"You have {limit} jobs queued or running, the most one user may have; wait for one to finish or "
                          "cancel one on the Jobs page, then try again.", 429), {}
    return None, values


def install_request_limits(server: Flask, callback_map: dict | None = None, workspace: Workspace | None = None) -> None:
    """Install the limits on ``server`` (after the sign-in hooks or before: the body check goes first either way, so that
    they only ever see a JSON object). ``callback_map``: the Dash app's (it fills as callbacks register), to check callback requests against.

    Order of answers for a callback request: 413 (too large); 400 for a signed-in user's body that is not a JSON
    object; 401 (not signed in); 415 (not JSON); 403 (the callback needs a higher role); 400 when its shape or its
    values do not fit the callback it names; 429 (a job-starting callback and the user's jobs at the limit); then
    the callback (400 when it fails on values that do not fit together); 503 when its audit row cannot be written."""
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    def refuse_bodies_that_are_not_json_objects():
        if request.path != CALLBACK_PATH or request.method != "POST" or not current_user.is_authenticated:
            return None  # an anonymous request is answered by the sign-in check, whatever it carries
        body, problem = _parsed_body()
        if problem is None and not isinstance(body, dict):
            problem = "Malformed callback request: a callback request must be a JSON object; nothing was done."
        return _plain(problem, 400) if problem else None

    # First of all hooks, whenever this is installed: the role check reads the body as a JSON object.
    server.before_request_funcs.setdefault(None, []).insert(0, refuse_bodies_that_are_not_json_objects)

    started_jobs = StartedJobs()
    # Built now: every callback is registered before this is installed, and one with an unknown property fails at start.
    schemas: dict[str, CallbackSchema] = build_schemas(callback_map) if callback_map is not None else {}
    dispatch = server.view_functions.get(CALLBACK_PATH)
    if dispatch is not None:
        @functools.wraps(dispatch)  # keeps the name integrations (e.g. CSRF exemptions) know Dash's view by
        def checked_dispatch(*args, **kwargs):
            if request.mimetype != "application/json":
                return _plain("A callback request is JSON (Content-Type: application/json); nothing was done.", 415)
            body, problem = _parsed_body()
            if problem:
                return _plain(problem, 400)
            schema = schemas.get(body.get("output")) if isinstance(body, dict) and isinstance(body.get("output"), str) else None
            if schema is not None and not current_role_allows(schema.rule.role):  # before the shape: a viewer learns only this
                return _plain(f"Your role ({current_role()}) may not do this; it needs {schema.rule.role}.", 403)
            shape = callback_body_problem(body, callback_map)
            if shape:
                return _plain(f"Malformed callback request: {shape}; nothing was done.", 400)
            values: dict = {}
            poll = request.args.get("cacheKey")
            if schema is not None and poll:
                # Collecting a background job's result: the job runs with the values checked when it started (Dash sends
                # the page's values again, and nulls once the job is done), so those are the request's values.
                values = started_jobs.values_of(poll)
            elif schema is not None:
                refusal, values = _gate(schema, body, workspace)
                if refusal is not None:
                    return refusal
            try:
                response = dispatch(*args, **kwargs)
            except INCONSISTENT_VALUES as exc:
                log.warning("callback %s refused values that do not fit together", body.get("output", "")[:200], exc_info=True)
                return _plain(f"Malformed callback request: the values sent do not fit together ({exc.__class__.__name__}); "
                              "nothing was done.", 400)
            if schema is not None and not poll and response.status_code == 200 and callback_map[body["output"]].get("background"):
                started_jobs.remember(response, values)
            if schema is not None and schema.rule.audit is not None and workspace is not None and response.status_code == 200:
                for row in schema.rule.audit(values, Answer(response.get_data())):  # unwritten: 503, and the answer is not sent
                    audit(workspace, row.action, row.target, row.detail)
            return response

        server.view_functions[CALLBACK_PATH] = checked_dispatch

    @server.errorhandler(RequestEntityTooLarge)
    def too_large(_exc):
        return _plain(f"The request is larger than the {MAX_REQUEST_BYTES >> 20} MiB this app accepts; nothing was done.", 413)

    @server.errorhandler(PathReviewError)
    def client_caused(exc: PathReviewError):
        if isinstance(exc, AuditUnavailable):
            log.error("%s %s answered 503: %s (%s)", request.method, request.path, exc, exc.__cause__)
            return _plain(f"Not done: {exc}.", 503)
        status = 404 if isinstance(exc, NotFoundError) else 422 if isinstance(exc, SlideReadError) else 400
        log.info("%s %s answered %d: %s", request.method, request.path, status, exc)
        return _plain(str(exc), status)
