"""Simulated reviewers driving the real server over HTTP, as the browser does: sign in, open a case (page, layout and
the Dash callback that renders it), fetch slide tiles, run a what-if edit of a visit and save a verdict.

aiohttp: one event loop drives every reviewer, each with its own cookie jar (its session) and connection pool, so the
client needs little CPU beside a server on the same two cores. Callback requests are built from the callback list the
renderer itself loads (``/_dash-dependencies``), with the ids, inputs and state it would send.

Used by ``tests/load/test_load.py`` (short, in CI) and ``bench/load.py`` (60 s).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

MODALITIES = ("slide", "patient", "report")
VERDICTS = ("agree", "disagree", "uncertain")
ENDPOINTS = ("login", "dependencies", "case_page", "case_layout", "case_render", "tile", "visit_table", "whatif_apply", "whatif_show", "review_save")
CALLBACK_OUTPUTS = {  # endpoint -> an output that names its callback
    "case_render": "page-content.children",
    "visit_table": "visit-edit-table.rowData",
    "whatif_apply": "whatif-store.data@",
    "whatif_show": "patient-risk.figure",
    "review_save": "review-versions.data",
}


@dataclass(frozen=True)
class Scenario:
    base_url: str
    accounts: list[tuple[str, str]]  # one (user name, password) per simulated reviewer
    cases: list[str]  # patient ids to open
    tiles: dict[str, list[tuple[int, int, int]]]  # slide id -> tile addresses (z, x, y) inside its pyramid
    seconds: float  # no new step starts after this; steps in flight finish
    tiles_per_view: int = 8
    think_s: float = 0.2  # mean pause between a reviewer's steps
    request_timeout_s: float = 120.0
    seed: int = 0


@dataclass(frozen=True)
class SavedVerdict:
    patient_id: str
    modality: str
    verdict: str
    comment: str
    user: str
    version: int


@dataclass
class Outcome:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: list[str] = field(default_factory=list)
    saved: list[SavedVerdict] = field(default_factory=list)  # acknowledged by the server
    conflicts: int = 0  # refused by the version check: someone saved the verdict since this reviewer opened it
    iterations: int = 0

    def p95_ms(self) -> dict[str, float]:
        out = {}
        for endpoint, values in self.latencies.items():
            if values:
                ordered = sorted(values)
                out[endpoint] = 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        return out

    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())


class StepFailed(Exception):
    """A response the load test counts as an error."""


# -- building callback requests as the renderer does -----------------------------------------------------------------

def _split_outputs(output: str) -> list[tuple[str, str]]:
    """The (id, property) pairs of a callback's output key: ``id.prop`` or ``..id.prop...id.prop..``."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    return [tuple(part.rsplit(".", 1)) for part in parts]


def _expand(component_id: str, wildcards: dict[str, list]) -> list[dict] | None:
    """A pattern-matching id (``{"modality":["ALL"],...}``) expanded over the values in ``wildcards``; with none given,
    over nothing, as on a page without such components."""
    if not component_id.startswith("{"):
        return None
    pattern = json.loads(component_id)
    key = next((k for k, v in pattern.items() if v == ["ALL"]), None)
    if key is None:  # a concrete dict id (e.g. a clientside callback's output): one component, sent as declared
        return None
    return [{**pattern, key: value} for value in wildcards.get(key, [])]


def callback_body(dependency: dict, values: dict[tuple[str, str], object], changed: list[str],
                  wildcards: dict[str, list] | None = None) -> dict:
    """The JSON a browser posts to /_dash-update-component for ``dependency`` (an entry of /_dash-dependencies).
    ``values``: (component id, property) -> value; for a pattern-matching id, a list of values in wildcard order."""
    wildcards = wildcards or {}

    def item(spec: dict) -> dict | list:
        expanded = _expand(spec["id"], wildcards)
        value = values.get((spec["id"], spec["property"]))
        if expanded is None:
            return {"id": spec["id"], "property": spec["property"], "value": value}
        value = [None] * len(expanded) if value is None else value
        return [{"id": i, "property": spec["property"], "value": v} for i, v in zip(expanded, value, strict=True)]

    outputs = []
    for component_id, prop in _split_outputs(dependency["output"]):
        expanded = _expand(component_id, wildcards)
        outputs.append({"id": component_id, "property": prop} if expanded is None else [{"id": i, "property": prop} for i in expanded])
    return {"output": dependency["output"], "outputs": outputs if dependency["output"].startswith("..") else outputs[0],
            "inputs": [item(s) for s in dependency["inputs"]], "changedPropIds": changed,
            "state": [item(s) for s in dependency.get("state", [])]}


def find_component(tree: object, component_id: str) -> dict | None:
    """The props of the component with ``component_id`` anywhere in a rendered layout."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            props = node.get("props")
            if isinstance(props, dict) and props.get("id") == component_id:
                return props
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _prop_id(component_id: dict | str, prop: str) -> str:
    text = json.dumps(component_id, sort_keys=True, separators=(",", ":")) if isinstance(component_id, dict) else component_id
    return f"{text}.{prop}"


# -- one reviewer -----------------------------------------------------------------------------------------------------

class Reviewer:
    def __init__(self, index: int, scenario: Scenario, outcome: Outcome, deadline: float) -> None:
        self.user, self.password = scenario.accounts[index]
        self.scenario, self.outcome, self.deadline = scenario, outcome, deadline
        self.rng = random.Random(scenario.seed * 1000 + index)
        self.dependencies: dict[str, dict] = {}
        self.sequence = 0

    async def _timed(self, endpoint: str, request):
        start = time.perf_counter()
        async with request as response:
            body = await response.read()
        self.outcome.latencies[endpoint].append(time.perf_counter() - start)
        return response, body

    async def _get(self, session: aiohttp.ClientSession, endpoint: str, path: str, expect=(200,), **kw) -> bytes:
        response, body = await self._timed(endpoint, session.get(self.scenario.base_url + path, **kw))
        if response.status not in expect:
            raise StepFailed(f"{endpoint}: GET {path} answered {response.status}: {body[:200]!r}")
        return body

    async def _callback(self, session: aiohttp.ClientSession, endpoint: str, values: dict, changed: list[str],
                        wildcards: dict | None = None) -> dict:
        body = callback_body(self.dependencies[endpoint], values, changed, wildcards)
        response, raw = await self._timed(endpoint, session.post(self.scenario.base_url + "/_dash-update-component", json=body))
        if response.status != 200:
            raise StepFailed(f"{endpoint}: callback answered {response.status}: {raw[:300]!r}")
        return json.loads(raw)["response"]

    async def sign_in(self, session: aiohttp.ClientSession) -> None:
        form = {"username": self.user, "password": self.password, "next": "/"}
        response, body = await self._timed("login", session.post(self.scenario.base_url + "/login", data=form, allow_redirects=False))
        if response.status != 302:
            raise StepFailed(f"login as {self.user} answered {response.status}: {body[:200]!r}")
        dependencies = json.loads(await self._get(session, "dependencies", "/_dash-dependencies"))
        for endpoint, output in CALLBACK_OUTPUTS.items():
            self.dependencies[endpoint] = next(d for d in dependencies if output in d["output"] and
                                               (endpoint != "visit_table" or d["output"].startswith("..visit-edit-table")))

    async def think(self) -> None:
        await asyncio.sleep(self.rng.expovariate(1 / self.scenario.think_s) if self.scenario.think_s > 0 else 0)

    async def review_one_case(self, session: aiohttp.ClientSession) -> None:
        patient_id = self.rng.choice(self.scenario.cases)
        await self._get(session, "case_page", f"/case/{patient_id}", headers={"Accept": "text/html"})
        await self._get(session, "case_layout", "/_dash-layout")
        page = await self._callback(session, "case_render", {("url", "pathname"): f"/case/{patient_id}", ("url", "search"): ""},
                                    ["url.pathname"])
        tree = page["page-content"]["children"]
        versions = (find_component(tree, "review-versions") or {}).get("data")
        if not isinstance(versions, dict):
            raise StepFailed(f"case_render: the case page of {patient_id} has no review form")
        await self.think()
        await self.fetch_tiles(session, find_component(tree, "case-selected-slide"))
        visit = (find_component(tree, "selected-visit") or {}).get("data")
        if visit is not None:
            await self.think()
            await self.what_if(session, patient_id, visit)
        await self.think()
        await self.save_verdict(session, patient_id, versions)

    async def fetch_tiles(self, session: aiohttp.ClientSession, selected: dict | None) -> None:
        slide_id = (selected or {}).get("data")
        addresses = self.scenario.tiles.get(slide_id) or []
        if not addresses:
            return
        chosen = self.rng.sample(addresses, min(self.scenario.tiles_per_view, len(addresses)))
        await asyncio.gather(*(self._get(session, "tile", f"/slides/{slide_id}/tiles/{z}/{x}/{y}.jpeg") for z, x, y in chosen))

    async def what_if(self, session: aiohttp.ClientSession, patient_id: str, visit: int) -> None:
        table = await self._callback(session, "visit_table", {("selected-visit", "data"): visit, ("visit-edit-reset", "n_clicks"): None,
                                                               ("patient-id", "data"): patient_id}, ["selected-visit.data"])
        rows = table["visit-edit-table"]["rowData"]
        ranged = [r for r in rows if re.fullmatch(r"-?[\d.]+ – -?[\d.]+", str(r.get("range", "")))]
        if not ranged:
            raise StepFailed(f"visit_table: no editable numeric value for {patient_id}")
        row = self.rng.choice(ranged)
        low, high = (float(v) for v in row["range"].split(" – "))
        row["value"] = round(self.rng.uniform(low, high), 1)
        applied = await self._callback(session, "whatif_apply", {("visit-edit-apply", "n_clicks"): 1, ("visit-edit-table", "rowData"): rows,
                                                                  ("selected-visit", "data"): visit, ("patient-id", "data"): patient_id},
                                       ["visit-edit-apply.n_clicks"])
        store = applied.get("whatif-store", {}).get("data")
        if not store:
            raise StepFailed(f"whatif_apply: the edit of {row['feature']} = {row['value']} was refused: {json.dumps(applied)[:300]}")
        shown = await self._callback(session, "whatif_show", {("selected-visit", "data"): visit, ("whatif-store", "data"): store,
                                                               ("patient-id", "data"): patient_id}, ["whatif-store.data"])
        if not shown.get("visit-edit-comparison", {}).get("children"):
            raise StepFailed(f"whatif_show: no comparison for the what-if on {patient_id}")

    async def save_verdict(self, session: aiohttp.ClientSession, patient_id: str, versions: dict) -> None:
        modality = self.rng.choice(MODALITIES)
        verdict = self.rng.choice(VERDICTS)
        self.sequence += 1
        comment = f"load {self.user} #{self.sequence}"
        picked = [m == modality for m in MODALITIES]
        values = {
            ('{"modality":["ALL"],"type":"review-save"}', "n_clicks"): [1 if p else 0 for p in picked],
            ('{"modality":["ALL"],"type":"review-verdict"}', "value"): [verdict if p else None for p in picked],
            ('{"modality":["ALL"],"type":"review-comment"}', "value"): [comment if p else "" for p in picked],
            ('{"modality":["ALL"],"type":"review-flags"}', "value"): [[] for _ in picked],
            ('{"modality":["ALL"],"type":"review-signoff"}', "value"): [False for _ in picked],
            ('{"modality":["ALL"],"type":"review-save"}', "id"): [{"modality": m, "type": "review-save"} for m in MODALITIES],
            ("review-versions", "data"): versions, ("case-id", "data"): patient_id,
        }
        changed = [_prop_id({"modality": modality, "type": "review-save"}, "n_clicks")]
        answer = await self._callback(session, "review_save", values, changed, {"modality": list(MODALITIES)})
        message = json.dumps(answer.get("review-message", {}))
        if '"review-saved"' in message:
            version = answer["review-versions"]["data"][modality]
            self.outcome.saved.append(SavedVerdict(patient_id, modality, verdict, comment, self.user, int(version)))
        elif '"review-conflict"' in message:
            self.outcome.conflicts += 1
        else:
            raise StepFailed(f"review_save: neither saved nor a conflict: {message[:300]}")

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.scenario.request_timeout_s)
        connector = aiohttp.TCPConnector(limit=6)  # a browser's connections per host
        # unsafe=True: keep cookies from an IP-address host (127.0.0.1); aiohttp drops them otherwise.
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            try:
                await self.sign_in(session)
            except (TimeoutError, StepFailed, aiohttp.ClientError, StopIteration) as exc:
                self.outcome.errors.append(f"{self.user}: {exc!r}")
                return
            while time.monotonic() < self.deadline:
                try:
                    await self.review_one_case(session)
                    self.outcome.iterations += 1
                except (TimeoutError, StepFailed, aiohttp.ClientError, KeyError, ValueError, TypeError) as exc:
                    self.outcome.errors.append(f"{self.user}: {exc!r}")
                await self.think()


async def run_reviewers(scenario: Scenario) -> Outcome:
    """Run one reviewer per account for ``scenario.seconds`` (then let steps in flight finish, within their timeouts)."""
    outcome = Outcome()
    deadline = time.monotonic() + scenario.seconds
    reviewers = [Reviewer(i, scenario, outcome, deadline) for i in range(len(scenario.accounts))]
    hard_stop = scenario.seconds + 6 * scenario.request_timeout_s  # a hung server cannot keep the run going forever
    try:
        await asyncio.wait_for(asyncio.gather(*(r.run() for r in reviewers)), timeout=hard_stop)
    except TimeoutError:
        outcome.errors.append(f"the run did not finish within {hard_stop:.0f} s")
    return outcome


def missing_verdicts(store, saved: list[SavedVerdict]) -> list[SavedVerdict]:
    """Acknowledged saves that the case store does not hold."""
    from core.store.reviews import review_history

    present = set()
    for patient_id in {s.patient_id for s in saved}:
        present |= {(patient_id, e.modality, e.verdict, e.comment, e.user, e.version) for e in review_history(store, patient_id)}
    return [s for s in saved if (s.patient_id, s.modality, s.verdict, s.comment, s.user, s.version) not in present]


def prepare_workspace(source: Path, dest: Path, users: int, password: str = "load test password", cases: int = 6,
                      tiles_per_slide: int = 64, seed: int = 0) -> tuple[list[tuple[str, str]], list[str], dict[str, list[tuple[int, int, int]]]]:
    """Copy the workspace at ``source`` to ``dest`` with one reviewer account per simulated user; pick the cases to open
    (a few, so that reviewers meet on the same case) and tile addresses of their slides. Returns (accounts, cases, tiles)."""
    from sqlalchemy import select

    from core.auth.users import add_user
    from core.slides.tiles import TileService
    from core.store.cases import case_summary
    from core.store.schema import Patient
    from core.workspace import open_workspace

    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("jobs"))
    ws = open_workspace(dest)
    rng = random.Random(seed)
    try:
        accounts = [(f"load-reviewer-{i:03d}", password) for i in range(users)]
        for name, secret in accounts:
            add_user(ws.store, name, secret, "reviewer")
        with ws.store.session() as s:
            summaries = [case_summary(s, p) for p in sorted(s.scalars(select(Patient.id)))]
            complete = [c for c in summaries if c.visits and c.slides][:cases]  # a case with a slide and visits to edit
            chosen = [c.patient.id for c in complete]
            slide_ids = [sl.id for c in complete for sl in c.slides]
        service = TileService(ws)
        tiles: dict[str, list[tuple[int, int, int]]] = {}
        for slide_id in slide_ids:
            g = service.geometry(slide_id)
            levels = range(max(0, g.max_zoom - 3), g.max_zoom + 1)
            tiles[slide_id] = []
            for _ in range(tiles_per_slide):
                z = rng.choice(levels)
                span = g.tile_size * 2 ** (g.max_zoom - z)
                tiles[slide_id].append((z, rng.randrange(-(-g.width // span)), rng.randrange(-(-g.height // span))))
    finally:
        ws.store.dispose()
    return accounts, chosen, tiles
