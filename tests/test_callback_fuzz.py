"""Every callback the renderer is told about (``/_dash-dependencies``) driven with hostile payloads through the real app:
wrong types, NaN and infinities, huge numbers, deep nesting, long strings, path-like ids, and broken request structure.
No answer may be a server error.

Bounded for CI: each field of each callback gets ``PAYLOADS_PER_FIELD`` hostile values, chosen by a fixed seed from
``HOSTILE``; ``PATHREVIEW_FUZZ_ALL=1`` sends every one. Background and job-starting callbacks only get payloads their
checks refuse (a valid one would fork a job process or queue precomputes per request)."""

from __future__ import annotations

import json
import os
import random

import pytest

from dashboard.app import create_app
from dashboard.callback_inputs import build_schemas, values_problem
from dashboard.request_limits import callback_body_problem
from tests.helpers import copy_demo, sign_in
from tests.load.reviewers import callback_body

PAYLOADS_PER_FIELD = 3


def _nested(depth: int) -> object:
    value: object = "leaf"
    for i in range(depth):
        value = {"k": value, "l": [value] if i % 5 == 0 else []}
    return value


HOSTILE: list[object] = [
    "x" * 200_000, float("nan"), float("inf"), float("-inf"), 10**30, -(10**30), 1e308, -1, True, False, "false", "1", "",
    [], [1, "a", None], {}, {"visit": "x", "values": [1]}, _nested(40), [[[[[]]]]], "../../../../etc/passwd", "P001\x00",
    "<script>alert(1)</script>", "%2e%2e%2f", 0, None, 3.5, {"slide_id": "../../x", "max_zoom": 99}, ["P001"] * 5000,
]
# Values a page would send, so a callback gets past the fields not under test.
SAMPLE = {
    ("url", "pathname"): "/case/P001", ("url", "search"): "", ("case-id", "data"): "P001", ("patient-id", "data"): "P001",
    ("report-id", "data"): "P001-R1", ("case-report-choice", "value"): "P001-R1", ("case-selected-slide", "data"): "P001-S1",
    ("selected-visit", "data"): 0, ("slide-ctx", "data"): {"slide_id": "P001-S1", "max_zoom": 12, "mpp": 0.5, "width": 4096, "height": 4096},
    ("case-days", "data"): {"visits": [0.0, 30.0], "slides": {"P001-S1": 0.0}, "reports": {"P001-R1": 0.0}},
    ("lime-class", "value"): None, ("lime-num-features", "value"): 6, ("lime-num-samples", "value"): 200, ("lime-seed", "value"): 0,
    ("lime-kernel-width", "value"): 25, ("export-figure", "value"): "risk", ("export-format", "value"): "png",
    ("export-width", "value"): 400, ("cohort-table", "getRowsRequest"): {"startRow": 0, "endRow": 15},
    ("jobs-filter", "value"): "all", ("heat-layer-choice", "value"): "tumour", ("heat-method", "value"): "overlap",
    ("heat-cmap", "value"): "Viridis", ("heat-threshold", "value"): 0.5, ("heat-norm", "value"): "raw", ("heat-smooth", "value"): 0,
    ("slide-map", "zoom"): 10, ("comparison-threshold", "value"): 0.5, ("report-edit", "value"): "carcinoma",
}
WILDCARDS = {"modality": ["slide", "patient", "report"], "slide": ["P001-S1"], "index": [1], "part": ["patient", "report", "slide"],
             "model": ["mil-attention", "report-tfidf"], "region": ["00000000-0000-4000-8000-000000000000"], "name": ["age", "sex"]}
SERVER_ERROR = 500


@pytest.fixture(scope="module")
def app(demo_workspace, tmp_path_factory):
    from core.workspace import open_workspace

    root = copy_demo(demo_workspace, tmp_path_factory.mktemp("fuzz") / "ws", ("P001-S1",))
    ws = open_workspace(root)
    yield create_app(ws)
    ws.store.dispose()


def _values(dependency: dict) -> dict:
    values = {}
    for spec in [*dependency["inputs"], *dependency["state"]]:
        key = (spec["id"], spec["property"])
        if spec["id"].startswith("{"):
            n = len(WILDCARDS[next(k for k, v in json.loads(spec["id"]).items() if v == ["ALL"])])
            values[key] = [1 if spec["property"] == "n_clicks" else None] * n
        else:
            values[key] = SAMPLE.get(key, 1 if spec["property"] in ("n_clicks", "n_intervals") else None)
    return values


def _changed(dependency: dict) -> list[str]:
    first = dependency["inputs"][0]
    if first["id"].startswith("{"):
        pattern = json.loads(first["id"])
        key = next(k for k, v in pattern.items() if v == ["ALL"])
        one = {**pattern, key: WILDCARDS[key][0]}
        return ["{" + ",".join(f"{json.dumps(k)}:{json.dumps(one[k])}" for k in sorted(one)) + "}." + first["property"]]
    return [f"{first['id']}.{first['property']}"]


def _bodies(dependency: dict, rng: random.Random, every: bool):
    """(what is hostile, the request body) for each field and each chosen payload, then broken structure."""
    values = _values(dependency)
    for key in values:
        payloads = HOSTILE if every else rng.sample(HOSTILE, PAYLOADS_PER_FIELD)
        for payload in payloads:
            hostile = {**values, key: [payload] * len(values[key]) if isinstance(values[key], list) and key[0].startswith("{") else payload}
            yield f"{key} = {json.dumps(payload)[:40]}", callback_body(dependency, hostile, _changed(dependency), WILDCARDS)
    good = callback_body(dependency, values, _changed(dependency), WILDCARDS)
    for field, payload in (("inputs", {"a": 1}), ("state", [None] * 3), ("changedPropIds", ["nope.value"]), ("outputs", 7),
                           ("changedPropIds", [float("nan")]), ("inputs", [[{"id": {"type": 1}, "property": "x"}]] * len(good["inputs"]))):
        yield f"{field} = {json.dumps(payload)[:40]}", {**good, field: payload}


def test_no_callback_answers_a_hostile_payload_with_a_server_error(app):
    client = app.server.test_client()
    sign_in(client, "admin")  # every callback is open to an admin: the payload, not the role, is what is tested
    dependencies = client.get("/_dash-dependencies").get_json()
    assert len(dependencies) == len(app.callback_map)
    schemas = build_schemas(app.callback_map)
    every = os.environ.get("PATHREVIEW_FUZZ_ALL") == "1"
    failures, sent = [], 0
    for dependency in dependencies:
        rng = random.Random(dependency["output"])
        background = app.callback_map[dependency["output"]].get("background")
        for what, body in _bodies(dependency, rng, every):
            refused = callback_body_problem(body, app.callback_map) or values_problem(body, schemas[dependency["output"]])[0]
            if (background or schemas[dependency["output"]].rule.starts_job) and not refused:
                continue  # a valid request would start real work (a job process, queued precomputes)
            data = json.dumps(body)  # NaN and Infinity as JavaScript writes them: Python's parser takes them
            response = client.post("/_dash-update-component", data=data, content_type="application/json")
            sent += 1
            if response.status_code >= SERVER_ERROR or b"Traceback" in response.data:
                failures.append(f"{dependency['output'][:60]} with {what}: {response.status_code} {response.data[:120]!r}")
    assert sent > 300
    assert not failures, f"{len(failures)} of {sent} requests failed:\n" + "\n".join(failures[:40])
