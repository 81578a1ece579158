"""N simulated reviewers against the real server for D seconds (default 20 x 60 s): sign in, open cases (page, layout
and the callback that renders it), fetch tiles, run what-if edits of a visit and save verdicts.

    python bench/load.py [--workspace DIR] [--users 20] [--seconds 60]

The server is run_dashboard.py on a copy of the workspace (without --workspace: the reduced demo, built once under
bench/.cache/), with one reviewer account per simulated user. Prints the p95 latency of each kind of request, the
errors (any failed request), and the verdicts the server acknowledged that the case store does not hold; saves
refused by the version check (reviewers meeting on a case) are counted as conflicts, not errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo_workspace import bench_workspace_root  # noqa: E402

from core.workspace import open_workspace  # noqa: E402
from tests.helpers import LiveServer, add_test_accounts  # noqa: E402
from tests.load.reviewers import Scenario, missing_verdicts, prepare_workspace, run_reviewers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=float, default=0.2, help="mean pause between a reviewer's steps, in seconds")
    args = parser.parse_args()
    source = bench_workspace_root(args.workspace)
    with tempfile.TemporaryDirectory(prefix="pathreview-load-") as tmp:
        root = Path(tmp) / "workspace"
        accounts, cases, tiles = prepare_workspace(source, root, args.users)
        add_test_accounts(root)  # the server needs an admin account to start
        server = LiveServer(root)
        try:
            outcome = asyncio.run(run_reviewers(Scenario(server.url, accounts, cases, tiles, args.seconds, think_s=args.think)))
        finally:
            server.stop()
        tracebacks = server.output().count("Traceback")
        ws = open_workspace(root)
        try:
            lost = missing_verdicts(ws.store, outcome.saved)
        finally:
            ws.store.dispose()
    print(f"{args.users} reviewers x {args.seconds:.0f} s on {len(cases)} cases: {outcome.iterations} cases reviewed, "
          f"{outcome.requests()} requests, {len(outcome.saved)} verdicts saved, {outcome.conflicts} version conflicts")
    for error in outcome.errors[:20]:
        print(f"error: {error}")
    if tracebacks:
        print(f"the server logged {tracebacks} tracebacks")
    p95 = outcome.p95_ms()
    for endpoint, ms in p95.items():
        print(f"  {endpoint:13s} {len(outcome.latencies[endpoint]):6d} requests  p95 {ms:8.0f} ms")
    print(f"RESULT load_errors={len(outcome.errors) + tracebacks}")
    print(f"RESULT lost_verdicts={len(lost)}")
    print(f"RESULT saved_verdicts={len(outcome.saved)}")
    print(f"RESULT verdict_conflicts={outcome.conflicts}")
    for endpoint, ms in p95.items():
        print(f"RESULT p95_ms_{endpoint}={ms:.0f}")


if __name__ == "__main__":
    main()
