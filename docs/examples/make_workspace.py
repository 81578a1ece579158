"""Worked example: turn a lab's own files into a workspace that ``run_dashboard.py --workspace`` serves.

    PYTHONPATH=. python docs/examples/make_workspace.py /path/to/new-workspace

It writes one small slide with tifffile to stand in for a scanner file (copy your .svs, .ndpi,
.mrxs or .tiff files instead), adds a patient with visits and a report to the case store, and
registers a visit-sequence model from a state_dict (use your own trained weights).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch

from core.models.registry import save_model
from core.models.sequence import VisitSequenceNet
from core.slides.reader import open_slide
from core.store.database import open_store
from core.store.schema import Patient, Report, Slide, Visit
from core.workspace import PatientAttribute, WorkspaceConfig, write_workspace_config


def main(root: Path) -> None:
    (root / "slides").mkdir(parents=True, exist_ok=True)

    # 1. Slides: any format OpenSlide reads. Here a 2048 x 2048 pyramidal TIFF at 0.5 um/px.
    slide_path = root / "slides" / "LAB-0001-A.tiff"
    image = np.full((2048, 2048, 3), 235, np.uint8)
    image[512:1536, 512:1536] = (200, 120, 180)  # a block of "tissue"
    with tifffile.TiffWriter(slide_path, bigtiff=True) as tif:
        for level in range(3):
            step = 2**level
            px_per_cm = 1e4 / (0.5 * step)
            tif.write(image[::step, ::step], tile=(256, 256), compression="jpeg", photometric="rgb",
                      resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER", subfiletype=int(level > 0))
    slide = open_slide(slide_path)  # check OpenSlide can read it before registering it
    width, height = slide.dimensions
    slide.close()

    # 2. Cases: patients, slides, visits and reports go into the case store (SQLite here).
    store = open_store(f"sqlite:///{root / 'cases.db'}")
    with store.session() as s:
        s.add(Patient(id="LAB-0001", attributes={"age": 67, "sex": "M", "onset_type": "bulbar"}))
        s.add(Slide(id="LAB-0001-A", patient_id="LAB-0001", file=slide_path.name, mpp=0.5, width=width, height=height))
        for day, fvc in [(0, 88.0), (92, 79.5), (181, 66.0)]:
            s.add(Visit(patient_id="LAB-0001", day=day, label=None,
                        features={"fvc_percent": fvc, "alsfrs_respiratory": 11.0 - day / 60, "onset_type": "bulbar"}))
        s.add(Report(id="LAB-0001-R1", patient_id="LAB-0001", label=1,
                     text="PROSTATE, NEEDLE BIOPSY\nAdenocarcinoma, Gleason score 4+4=8. Grade group 4."))
    store.dispose()

    # 3. Models: a manifest plus weights. Your trained module's state_dict goes here.
    params = {"n_numeric": 2, "category_sizes": [3], "cell": "lstm", "hidden": 16, "elapsed_time": True}
    net = VisitSequenceNet(**params)  # e.g. net.load_state_dict(torch.load("my_lstm.pt", weights_only=True))
    torch.manual_seed(0)
    save_model(root / "models" / "lab-niv-lstm", {
        "id": "lab-niv-lstm", "name": "NIV within 90 days (lab LSTM)", "task": "sequence",
        "architecture": "visit_sequence_net", "params": params,
        "class_names": ["no NIV", "NIV within 90 days"], "positive_class": "NIV within 90 days",
        "input": {"features": ["fvc_percent", "alsfrs_respiratory"], "feature_means": [75.0, 8.0],
                  "feature_stds": [15.0, 3.0], "categorical": {"onset_type": ["spinal", "bulbar", "mixed"]},
                  "elapsed_time": True},
        # Record your own held-out results under "metrics" (auc, f1, accuracy, n_test, roc_fpr/roc_tpr,
        # confusion) and the Models page shows them.
    }, net)

    # 4. workspace.toml ties it together.
    #    [patient_attributes] names the attributes the cohort table and case header show, with their units.
    attributes = {"age": PatientAttribute(label="Age", unit="years"), "sex": PatientAttribute(label="Sex"),
                  "onset_type": PatientAttribute(label="Onset")}
    write_workspace_config(root, WorkspaceConfig(name="Lab example", models=["lab-niv-lstm"], patient_attributes=attributes))
    print(f"workspace written to {root}; serve it with: python run_dashboard.py --workspace {root}")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "lab-workspace").resolve()
    if target.exists():
        shutil.rmtree(target)
    main(target)
