"""One pass over a workspace that finds what would fail in front of a reviewer: slides that do not open or read, models
that do not load or run, visits a sequence model cannot encode, and stored predictions from other weights. The command
line prints it as a table; the app runs it at start-up and shows it to admins as a warning."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import cast

import torch
from sqlalchemy import func, select
from tqdm import tqdm

from core.errors import PathReviewError
from core.imports.problems import SKIP_REPORTS
from core.imports.slide_files import read_geometry
from core.models.patch_cnn import PatchResNet
from core.store.schema import Prediction, Report, Slide
from core.training.predictions import cohort_visits, encode_cohort, report_scores, sequence_risks
from core.workspace import Workspace


@dataclass(frozen=True)
class CheckProblem:
    kind: str  # slide | model | visits | predictions
    subject: str  # slide id, model id, or "model: patient"
    message: str


def check_slides(workspace: Workspace, progress: bool = False) -> list[CheckProblem]:
    with workspace.store.session() as s:
        slides = s.execute(select(Slide.id, Slide.file)).all()
    problems = []
    for slide_id, file in tqdm(slides, desc="slides", unit="slide", disable=not progress or None):
        geometry = read_geometry(workspace.slides_dir / file)
        if isinstance(geometry, str):
            why = f"the file {file} is missing" if not (workspace.slides_dir / file).exists() else geometry
            problems.append(CheckProblem("slide", slide_id, why))
    return problems


def check_last_import(workspace: Workspace) -> list[CheckProblem]:
    """What the last ``import --skip-invalid`` left out (its skip report), so an unreadable slide stays in sight."""
    reports = sorted((workspace.root / SKIP_REPORTS).glob("skipped-*.csv"))
    if not reports:
        return []
    with reports[-1].open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [CheckProblem("not imported", ", ".join(x for x in (r["file"], r["row"] and f"row {r['row']}", r["column"] and f"column {r['column']}") if x),
                         r["problem"]) for r in rows]


@torch.no_grad()
def _run_once(workspace: Workspace, model_id: str) -> str | None:
    """Load the model and run it on one sample of what it reads; why it cannot, or None."""
    manifest = workspace.manifest(model_id)
    model = workspace.model(model_id)
    if manifest.task == "sequence":
        readable, data, _ = encode_cohort(manifest, cohort_visits(workspace)[:50])
        if data is None:
            return "no patient's visits can be encoded for it, so it cannot be run on one"
        sequence_risks(model, type(data)(data.numeric[:1], data.categories[:1], data.elapsed[:1], data.lengths[:1], data.labels[:1]))
    elif manifest.task == "report":
        with workspace.store.session() as s:
            text = s.scalar(select(Report.text).limit(1))
        report_scores(model, [text or "sample report"])
    elif manifest.task == "patch":
        size, _ = manifest.patch_geometry()
        cast(PatchResNet, model.module)(torch.zeros(1, 3, size, size, device=model.device))
    # a MIL head reads a slide's patch features, which a check does not compute: loading it is what is checked
    return None


def check_models(workspace: Workspace) -> list[CheckProblem]:
    problems = []
    for model_id in workspace.manifests:
        try:
            why = _run_once(workspace, model_id)
        except (PathReviewError, RuntimeError, ValueError, TypeError) as exc:
            why = f"does not load or run: {exc}"
        if why:
            problems.append(CheckProblem("model", model_id, why))
    return problems


def check_visits(workspace: Workspace) -> list[CheckProblem]:
    """Patients whose visits a sequence model cannot encode (the cohort pages leave them out of its plots)."""
    patients = cohort_visits(workspace)
    problems = []
    for model_id in workspace.models_for("sequence"):
        _, _, left_out = encode_cohort(workspace.manifest(model_id), patients)
        problems += [CheckProblem("visits", f"{model_id}: {pid}", why) for pid, why in left_out.items()]
    return problems


def check_predictions(workspace: Workspace) -> list[CheckProblem]:
    problems = []
    with workspace.store.session() as s:
        for model_id, manifest in workspace.manifests.items():
            stale = s.scalar(select(func.count()).select_from(Prediction).where(Prediction.model_id == model_id,
                                                                                Prediction.weights_sha256 != manifest.weights_sha256))
            if stale:
                problems.append(CheckProblem("predictions", model_id, f"{stale} stored predictions come from other weights than the model's "
                                             "current ones (shown as stale); run predict"))
    return problems


def check_workspace(workspace: Workspace, progress: bool = False) -> list[CheckProblem]:
    return check_last_import(workspace) + check_slides(workspace, progress) + check_models(workspace) + check_visits(workspace) + check_predictions(workspace)


def problem_table(problems: list[CheckProblem]) -> str:
    if not problems:
        return "no problems found"
    width = min(40, max(len(p.subject) for p in problems))
    lines = [f"{'kind':<12} {'subject':<{width}}  problem"] + [f"{p.kind:<12} {p.subject:<{width}}  {p.message}" for p in problems]
    return "\n".join(lines)
