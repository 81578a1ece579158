"""``run_dashboard.py models add|list|remove``, ``fit`` and ``predict``: a lab's models from the command line."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import Any

from core.errors import PathReviewError
from core.imports.tables import Sidecar, SidecarError
from core.models.manifest import InputSpec
from core.models.registry import ARCHITECTURES
from core.models.visit_encoding import MISSING_POLICIES
from core.store.schema import ModelRecord, Prediction
from core.tomlfile import read_toml
from core.training.fit_sequence import SequenceFitOptions, fit_sequence_model
from core.training.predictions import PredictionRun, predict_all
from core.training.registration import add_model, remove_model
from core.workspace import Workspace


def add_model_parsers(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="register, list and remove a workspace's models")
    actions = models.add_subparsers(dest="models_command", required=True)
    add = actions.add_parser("add", help="copy weights into the workspace, write the manifest and load the model once")
    add.add_argument("--workspace", type=Path, required=True)
    add.add_argument("--id", required=True, help="the model's id: letters, digits, '_', '-' and '.'")
    add.add_argument("--task", required=True, choices=["patch", "mil", "sequence", "report"])
    add.add_argument("--architecture", required=True, help=f"one of {', '.join(sorted(ARCHITECTURES))}, or package.module:factory")
    add.add_argument("--weights", type=Path, required=True, help=".safetensors, or a state_dict saved as .pt (read with weights_only=True)")
    add.add_argument("--class-names", required=True, help="comma-separated, in the order of the model's outputs")
    add.add_argument("--positive-class", default=None, help="for a binary model: the class whose probability is its score")
    add.add_argument("--name", default=None, help="the name reviewers see (default: the id)")
    add.add_argument("--params", type=Path, help="TOML of the architecture's constructor arguments")
    add.add_argument("--input", type=Path, help="TOML of what the model reads ([input] of model.toml: features, means, ...)")
    listing = actions.add_parser("list", help="the workspace's models, their weights hash and stored predictions")
    listing.add_argument("--workspace", type=Path, required=True)
    remove = actions.add_parser("remove", help="unregister a model and delete its folder and stored predictions")
    remove.add_argument("--workspace", type=Path, required=True)
    remove.add_argument("--id", required=True)
    for p in (add, listing, remove):
        p.add_argument("--database-url", default=None, help="override the workspace's database URL")

    fit = sub.add_parser("fit", help="fit a built-in model on the imported cohort, register it and store its predictions")
    fit.add_argument("--workspace", type=Path, required=True)
    fit.add_argument("--task", required=True, choices=["sequence"], help="sequence: a GRU/LSTM over each patient's labelled visits")
    fit.add_argument("--id", required=True)
    fit.add_argument("--name", default="")
    fit.add_argument("--class-names", default="negative,positive", help="the two classes, negative first (default %(default)s)")
    fit.add_argument("--cell", default="gru", choices=["rnn", "gru", "lstm"])
    fit.add_argument("--hidden", type=int, default=32)
    fit.add_argument("--max-epochs", type=int, default=80)
    fit.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of held-out patients for the 95 %% intervals")
    fit.add_argument("--sidecar", type=Path, help="visits.toml: units, ranges, kinds and missing-value policies of the features")
    fit.add_argument("--missing", default="carry_forward", choices=MISSING_POLICIES, help="policy of features the sidecar gives none")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--database-url", default=None)

    predict = sub.add_parser("predict", help="store every sequence and report model's predictions for every subject")
    predict.add_argument("--workspace", type=Path, required=True)
    predict.add_argument("--models", default=None, help="comma-separated model ids (default: every sequence and report model)")
    predict.add_argument("--database-url", default=None)


def _toml_table(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PathReviewError(f"{path} is not readable TOML: {exc}") from exc


def print_prediction_runs(runs: list[PredictionRun]) -> None:
    for run in runs:
        line = f"{run.model_id}: {run.subjects} predictions stored"
        if run.left_out:
            shown = ", ".join(list(run.left_out)[:5]) + (" …" if len(run.left_out) > 5 else "")
            line += f"; {len(run.left_out)} patients left out ({shown}): their visits cannot be encoded; run check for why"
        print(line)


def run_models_command(args: argparse.Namespace, workspace: Workspace) -> int:
    if args.models_command == "add":
        input_spec = read_toml(args.input, InputSpec, PathReviewError).model_dump() if args.input else {}
        fields = {"id": args.id, "name": args.name or args.id, "task": args.task, "architecture": args.architecture,
                  "params": _toml_table(args.params), "class_names": [c.strip() for c in args.class_names.split(",") if c.strip()],
                  "positive_class": args.positive_class, "input": input_spec}
        manifest = add_model(workspace, fields, args.weights)
        print(f"model {manifest.id} added (weights sha256 {manifest.weights_sha256[:12]}…); it loads. "
              f"Store its predictions with: predict --workspace {workspace.root} --models {manifest.id}")
    elif args.models_command == "list":
        from sqlalchemy import func, select

        with workspace.store.session() as s:
            counts = dict(s.execute(select(Prediction.model_id, func.count()).group_by(Prediction.model_id)).tuples().all())
            stale = dict(s.execute(select(Prediction.model_id, func.count()).join(ModelRecord, ModelRecord.id == Prediction.model_id)
                                   .where(Prediction.weights_sha256 != ModelRecord.weights_sha256).group_by(Prediction.model_id)).tuples().all())
        print(f"{'id':<24} {'task':<9} {'architecture':<28} {'weights':<13} {'AUC':>6}  predictions")
        for model_id, m in workspace.manifests.items():
            auc = f"{m.metrics.auc:.3f}" if m.metrics.auc is not None else "-"
            stored = f"{counts.get(model_id, 0)}" + (f" ({stale[model_id]} stale)" if stale.get(model_id) else "")
            print(f"{model_id:<24} {m.task:<9} {m.architecture[:28]:<28} {m.weights_sha256[:12]:<13} {auc:>6}  {stored}")
    elif args.models_command == "remove":
        removed = remove_model(workspace, args.id)
        print(f"model {args.id} removed with its {removed} stored predictions")
    return 0


def run_fit(args: argparse.Namespace, workspace: Workspace) -> int:
    names = tuple(c.strip() for c in args.class_names.split(","))
    if len(names) != 2 or not all(names):
        raise PathReviewError("--class-names gives the two classes, negative first, e.g. 'no NIV,NIV within 90 days'")
    sidecar = read_toml(args.sidecar, Sidecar, SidecarError) if args.sidecar else Sidecar()
    options = SequenceFitOptions(model_id=args.id, name=args.name, class_names=(names[0], names[1]), cell=args.cell, hidden=args.hidden,
                                 max_epochs=args.max_epochs, bootstrap_resamples=args.bootstrap, missing=args.missing, seed=args.seed)
    manifest, run = fit_sequence_model(workspace, sidecar, options, progress=print)
    m = manifest.metrics
    print(f"model {manifest.id} fitted: held-out AUC {m.auc} (95 % CI {m.auc_ci95[0]} to {m.auc_ci95[1]}, {m.n_patients_test} patients, "
          f"{m.bootstrap_resamples} bootstrap resamples); {m.calibration}")
    print_prediction_runs([run])
    return 0


def run_predict(args: argparse.Namespace, workspace: Workspace) -> int:
    ids = [m.strip() for m in args.models.split(",")] if args.models else None
    runs = predict_all(workspace, ids)
    if not runs:
        print("this workspace has no sequence or report model to predict with (models add, or fit)")
    print_prediction_runs(runs)
    return 0

