"""Load: 20 simulated reviewers for 15 s against the real server (run_dashboard.py on a copy of the demo workspace).

Every request must succeed, and every verdict the server acknowledged must be in the case store afterwards. Saves
refused by the version check (two reviewers on one case) are conflicts, counted apart: neither errors nor losses.
The 60-second form with more output is ``bench/load.py``."""

from __future__ import annotations

import asyncio
from collections import Counter

from core.workspace import open_workspace
from tests.helpers import LiveServer
from tests.load.reviewers import Scenario, missing_verdicts, prepare_workspace, run_reviewers

USERS, SECONDS = 20, 15


def test_reviewers_under_load_lose_nothing_and_see_no_errors(demo_workspace, tmp_path):
    root = tmp_path / "workspace"
    accounts, cases, tiles = prepare_workspace(demo_workspace, root, USERS)
    server = LiveServer(root)
    try:
        outcome = asyncio.run(run_reviewers(Scenario(server.url, accounts, cases, tiles, SECONDS)))
    finally:
        server.stop()
    p95 = outcome.p95_ms()
    print(f"\n{USERS} reviewers x {SECONDS} s: {outcome.iterations} cases reviewed, {outcome.requests()} requests, "
          f"{len(outcome.saved)} verdicts saved, {outcome.conflicts} version conflicts, {len(outcome.errors)} errors")
    for endpoint, ms in p95.items():
        print(f"  p95 {endpoint:13s} {ms:8.0f} ms  ({len(outcome.latencies[endpoint])} requests)")

    assert outcome.errors == [], outcome.errors[:10]
    assert "Traceback" not in server.output(), server.output()[-3000:]
    assert outcome.iterations >= USERS and outcome.saved, "the reviewers did too little for the run to show anything"
    assert set(p95) >= {"login", "case_render", "tile", "whatif_apply", "whatif_show", "review_save"}
    # An acknowledged version belongs to exactly one save, and every acknowledged save is stored.
    versions = Counter((s.patient_id, s.modality, s.version) for s in outcome.saved)
    assert [v for v, n in versions.items() if n > 1] == []
    ws = open_workspace(root)
    try:
        assert missing_verdicts(ws.store, outcome.saved) == []
    finally:
        ws.store.dispose()
