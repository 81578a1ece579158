"""The Patients page of a 2,000-patient cohort whose SHAP values are all precomputed, through the real server, against
the time to read those cached SHAP values.

    python bench/cohort_pages.py [--patients 2000] [--repeats 3]

It writes a two-visit cohort as CSV, builds the workspace with the command line (import, fit, predict), precomputes
every patient's SHAP values into the workspace cache, serves it (``run_dashboard.py serve``) and times the Patients
page's cohort callback (feature importance, beeswarm, overview) as a browser requests it, signed in, cold (the
server's first request) and warm (best of ``--repeats``). The cohort-level SHAP array is built once, on the page's
first view after precompute (its time is printed), and read from the cache from then on. The bound it names: reading every patient's cached SHAP arrays
from the cache in this process. RESULT cohort_page_vs_read = warm page time / read time (target at most 3).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from core.cache import load_arrays  # noqa: E402
from core.explain.cohort_explanations import cohort_shap, filtered_patient_ids  # noqa: E402
from core.explain.patient_explanations import PatientExplainers  # noqa: E402
from core.workspace import open_workspace  # noqa: E402
from tests.cohort_files import write_labelled_cohort  # noqa: E402
from tests.helpers import ACCOUNTS, PASSWORD, LiveServer, add_test_accounts, callback_dependency, run_cli  # noqa: E402
from tests.load.reviewers import callback_body  # noqa: E402


def build(root: Path, patients: int) -> Path:
    files = write_labelled_cohort(root / "lab", patients)
    ws = root / "ws"
    for args in (["import", "--workspace", str(ws), "--patients", str(files["patients"]), "--visits", str(files["visits"])],
                 ["fit", "--workspace", str(ws), "--task", "sequence", "--id", "lab-gru", "--sidecar", str(files["sidecar"]), "--bootstrap", "200"],
                 ["predict", "--workspace", str(ws)]):
        result = run_cli(*args, timeout=1800)
        if result.returncode:
            raise SystemExit(f"{args[0]} failed: {result.stderr}")
    add_test_accounts(ws)
    return ws


def precompute_shap(ws_root: Path) -> tuple[list[str], float, float]:
    """Every patient's SHAP values into the cache (as precompute stores them), then the cohort-level array the Patients
    page reads (built from those on its first view); returns the patients, the time to read every patient's cached
    SHAP back, and the time the cohort array took to build."""
    ws = open_workspace(ws_root)
    explainers = PatientExplainers(ws, max_patients=8)
    ids, _ = explainers.encodable(filtered_patient_ids(explainers))
    explainers.explain_many(ids, chunk=64)
    model_id = explainers.sequence_model_id()
    explainer = explainers.explainer(model_id)
    paths = [explainers._shap_path(model_id, explainer, explainers._patient_inputs(pid, model_id)[3]) for pid in ids]
    start = time.perf_counter()
    arrays = [load_arrays(p) for p in paths]
    read = time.perf_counter() - start
    assert all(a is not None for a in arrays)
    start = time.perf_counter()
    cohort_shap(PatientExplainers(ws, max_patients=8), filtered_patient_ids(explainers))
    build = time.perf_counter() - start
    ws.store.dispose()
    return ids, read, build


def time_page(ws_root: Path, repeats: int) -> tuple[float, float]:
    from dashboard.app import create_app

    ws = open_workspace(ws_root)
    dependency = callback_dependency(create_app(ws), "cohort-beeswarm.figure")
    ws.store.dispose()
    server = LiveServer(ws_root)
    try:
        session = requests.Session()
        session.post(f"{server.url}/login", data={"username": ACCOUNTS["reviewer"], "password": PASSWORD, "next": "/"})
        body = callback_body(dependency, {}, [], {"name": []})
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            response = session.post(f"{server.url}/_dash-update-component", json=body, timeout=600)
            times.append(time.perf_counter() - start)
            response.raise_for_status()
        return times[0], min(times[1:])
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cohort-pages-") as tmp:
        ws = build(Path(tmp), args.patients)
        ids, read, built = precompute_shap(ws)
        cold, warm = time_page(ws, args.repeats)
    print(f"{len(ids)} patients with cached SHAP: read in {read:.3f} s; cohort array built from them in {built:.1f} s; "
          f"Patients page cohort callback {cold:.2f} s on the server's first request, {warm:.2f} s after")
    print(f"RESULT cohort_page_cold_vs_read={cold / read:.2f}")
    print(f"RESULT cohort_page_vs_read={warm / read:.2f}")


if __name__ == "__main__":
    main()
