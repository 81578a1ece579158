"""Building the deterministic demo workspace: patients, slides, visits, reports, trained models."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sqlalchemy import select

from core.demo import train_patch, train_report, train_sequence
from core.demo.feature_files import write_demo_feature_heads
from core.demo.patch_dataset import PATCH_CLASSES, PATCH_MPP, PATCH_PX, SlidePatches, slide_patches
from core.demo.report_synthesis import synthesise_report
from core.demo.slide_synthesis import BASE_MPP, GG4, GG5, MAP_UM_PER_PX, SlidePlan, write_slide_job
from core.demo.visit_synthesis import (
    FEATURE_RANGES,
    FEATURE_UNITS,
    NUMERIC_FEATURES,
    ONSET_TYPES,
    PatientProfile,
    SyntheticVisit,
    synthesise_visits,
)
from core.errors import WorkspaceError
from core.models.metrics import binary_metrics, multiclass_metrics
from core.models.mil import GatedAttentionMIL, InstancePoolingMIL
from core.models.registry import save_model
from core.models.visit_encoding import VisitTensors, encode_sequences
from core.store.database import open_store
from core.store.schema import ModelRecord, Patient, Prediction, Report, Slide, Visit
from core.workspace import DEMO_BUILD_MARKER, WorkspaceConfig, write_workspace_config

Progress = Callable[[str], None]
BUILD_MARKER = DEMO_BUILD_MARKER
DEMO_FORMAT = 5  # bump when generators, training or the stored fields change, so older demo builds are rebuilt

# Gleason (primary, secondary) per patient; None is benign tissue only.
_GLEASON = [None, (3, 3), (3, 4), (4, 3), (4, 4), (4, 5), (5, 4), (5, 5)]
_GLEASON_P = [0.15, 0.2, 0.15, 0.1, 0.15, 0.1, 0.05, 0.1]
_PATTERN_CLASS = {3: 2, 4: 3, 5: 4}  # Gleason pattern -> class-map label


@dataclass(frozen=True)
class _DemoPatient:
    id: str
    gleason: tuple[int, int] | None
    profile: PatientProfile
    visits: list[SyntheticVisit]
    reports: list[tuple[str, int]]  # (text, label)
    slides: list[tuple[str, SlidePlan]]  # (slide id, plan)


@dataclass(frozen=True)
class DemoSpec:
    n_patients: int = 40
    slide_px: int = 8192
    large_slide_px: int | None = 32768  # one extra slide this size, for a realistic viewer load
    second_slide_every: int = 5  # every k-th patient has a second slide
    reports_per_patient: int = 3
    cnn_epochs: int = 5
    patches_per_class: int = 1000
    mil_epochs: int = 40
    sequence_epochs: int = 120
    test_fraction: float = 0.3
    seed: int = 7

    def fingerprint(self) -> str:
        content = {"format": DEMO_FORMAT, **asdict(self)}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


REDUCED_SPEC = DemoSpec(slide_px=4096, large_slide_px=None, second_slide_every=8, cnn_epochs=4)


def demo_is_built(root: Path, spec: DemoSpec) -> bool:
    marker = root / BUILD_MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == spec.fingerprint()


def build_demo(root: Path, spec: DemoSpec = DemoSpec(), progress: Progress = print) -> Path:
    """Build the demo workspace at ``root`` unless an identical build is already there.

    Everything is written to a sibling temporary folder that is renamed into place at the end,
    so an interrupted build never leaves a workspace that looks complete."""
    root = Path(root).resolve()
    if demo_is_built(root, spec):
        return root
    if root.exists() and any(root.iterdir()) and not (root / BUILD_MARKER).is_file():
        raise WorkspaceError(f"{root} exists and is not a demo workspace; choose another folder with --demo-dir")
    staging = root.with_name(root.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "slides").mkdir(parents=True)
    started = time.monotonic()
    say = lambda msg: progress(f"[demo {time.monotonic() - started:5.1f}s] {msg}")  # noqa: E731
    held_out = _DemoBuild(staging, spec, say).run()
    (staging / BUILD_MARKER).write_text(json.dumps(
        {"fingerprint": spec.fingerprint(), "spec": asdict(spec), "held_out_patients": sorted(held_out)}, indent=1))
    if root.exists():
        shutil.rmtree(root)
    os.replace(staging, root)
    say(f"workspace ready at {root}")
    return root


class _DemoBuild:
    def __init__(self, root: Path, spec: DemoSpec, say: Progress) -> None:
        self.root, self.spec, self.say = root, spec, say
        self.rng = np.random.default_rng(spec.seed)
        self.store = open_store(f"sqlite:///{root / 'cases.db'}")

    def run(self) -> set[str]:
        """Build everything; return the held-out (test) patient ids."""
        patients = self.synthesise_patients()
        class_maps = self.write_slides(patients)
        test_ids = self.split(patients)
        models = [
            *self.train_slide_models(patients, class_maps, test_ids),
            self.train_visit_model(patients, test_ids),
            self.train_report_model(patients, test_ids),
        ]
        write_workspace_config(
            self.root,
            WorkspaceConfig(
                name="Demo prostate and ALS cohort",
                description="Synthetic, deterministic demo: slides, visits and reports with models trained on them.",
                models=models,
            ),
        )
        self.store.dispose()
        return test_ids

    # -- data -----------------------------------------------------------------------------
    def synthesise_patients(self) -> list[_DemoPatient]:
        patients = []
        for i in range(self.spec.n_patients):
            pid = f"P{i + 1:03d}"
            rng = np.random.default_rng([self.spec.seed, i])
            gleason = _GLEASON[rng.choice(len(_GLEASON), p=_GLEASON_P)]
            profile, visits = synthesise_visits(rng)
            reports = [synthesise_report(rng, gleason, pid) for _ in range(self.spec.reports_per_patient)]
            n_slides = 2 if self.spec.second_slide_every and (i + 1) % self.spec.second_slide_every == 0 else 1
            patterns = () if gleason is None else tuple(dict.fromkeys(_PATTERN_CLASS[g] for g in gleason))
            slides = [(f"{pid}-S{k + 1}", SlidePlan(self.spec.slide_px, self.spec.slide_px, patterns, int(rng.integers(1 << 31))))
                      for k in range(n_slides)]
            if i == 0 and self.spec.large_slide_px:
                px = self.spec.large_slide_px
                slides.append((f"{pid}-S{n_slides + 1}", SlidePlan(px, px, patterns, int(rng.integers(1 << 31)))))
            patients.append(_DemoPatient(pid, gleason, profile, visits, reports, slides))
        with self.store.session() as s:
            for p in patients:
                s.add(Patient(id=p.id, age=p.profile.age, sex=p.profile.sex, onset_type=p.profile.onset_type))
                s.add_all(Visit(patient_id=p.id, day=v.day, features=v.features, label=v.label) for v in p.visits)
                report_days = _spread_over_visits([v.day for v in p.visits], len(p.reports))
                s.add_all(Report(id=f"{p.id}-R{k + 1}", patient_id=p.id, text=t, label=lab, day=day)
                          for k, ((t, lab), day) in enumerate(zip(p.reports, report_days)))
        self.say(f"{len(patients)} patients, {sum(len(p.visits) for p in patients)} visits, "
                 f"{sum(len(p.reports) for p in patients)} reports")
        return patients

    def write_slides(self, patients: list[_DemoPatient]) -> dict[str, np.ndarray]:
        jobs = [(sid, plan, p.id) for p in patients for sid, plan in p.slides]
        slide_days = {sid: day for p in patients
                      for (sid, _), day in zip(p.slides, _spread_over_visits([v.day for v in p.visits], len(p.slides)))}
        jobs.sort(key=lambda j: -j[1].width)  # largest first keeps both workers busy to the end
        workers = max(1, min(2, os.cpu_count() or 1))
        class_maps: dict[str, np.ndarray] = {}
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {sid: pool.submit(write_slide_job, str(self.root / "slides" / f"{sid}.tiff"), plan, self.spec.seed) for sid, plan, _ in jobs}
            for n, (sid, plan, pid) in enumerate(jobs, 1):
                class_maps[sid] = futures[sid].result()
                Image.fromarray(class_maps[sid]).save(self.root / "slides" / f"{sid}.mask.png")
                with self.store.session() as s:
                    s.add(Slide(id=sid, patient_id=pid, file=f"{sid}.tiff", mpp=BASE_MPP, width=plan.width, height=plan.height,
                                mask_file=f"{sid}.mask.png", mask_mpp=MAP_UM_PER_PX, label=_slide_label(class_maps[sid]),
                                day=slide_days[sid]))
                if n % 10 == 0 or n == len(jobs):
                    self.say(f"slides written: {n}/{len(jobs)}")
        return class_maps

    def split(self, patients: list[_DemoPatient]) -> set[str]:
        """Held-out patients, stratified by Gleason category."""
        test: set[str] = set()
        for g in _GLEASON:
            ids = [p.id for p in patients if p.gleason == g]
            self.rng.shuffle(ids)
            test.update(ids[: int(round(len(ids) * self.spec.test_fraction))])
        return test

    # -- models ---------------------------------------------------------------------------
    def _register(self, fields: dict, module: torch.nn.Module, vocabulary: dict | None = None) -> str:
        manifest = save_model(self.root / "models" / fields["id"], fields, module, vocabulary)
        with self.store.session() as s:
            s.add(ModelRecord(id=manifest.id, task=manifest.task, architecture=manifest.architecture,
                              weights_sha256=manifest.weights_sha256, metrics=manifest.metrics.model_dump()))
        self.say(f"model {manifest.id}: held-out AUC {manifest.metrics.auc:.3f} (n={manifest.metrics.n_test})")
        return manifest.id

    def _predictions(self, model_id: str, rows: list[tuple[str, str, str, float]]) -> None:
        """rows: (subject kind, subject id, patient id, score)."""
        with self.store.session() as s:
            record = s.get(ModelRecord, model_id)
            if record is None:  # _register stores the record before any prediction; a miss is a build bug
                raise WorkspaceError(f"model {model_id} is not registered in the demo store")
            sha = record.weights_sha256
            s.add_all(Prediction(model_id=model_id, weights_sha256=sha, subject_kind=k, subject_id=sid, patient_id=pid, score=float(v))
                      for k, sid, pid, v in rows)

    def train_slide_models(self, patients: list[_DemoPatient], class_maps: dict[str, np.ndarray], test_ids: set[str]) -> list[str]:
        slide_owner = {sid: p.id for p in patients for sid, _ in p.slides}
        patches: dict[str, SlidePatches] = {}
        for sid in slide_owner:
            patches[sid] = slide_patches(sid, self.root / "slides" / f"{sid}.tiff", class_maps[sid])
        self.say(f"patches read through OpenSlide: {sum(len(p.label) for p in patches.values())}")
        train = [patches[s] for s, o in slide_owner.items() if o not in test_ids]
        test = [patches[s] for s, o in slide_owner.items() if o in test_ids]
        x, y = train_patch.training_patches(train, self.rng, self.spec.patches_per_class)
        cnn = train_patch.train_patch_cnn(x, y, self.spec.cnn_epochs, self.spec.seed, self.say)
        tx, ty = train_patch.training_patches(test, self.rng, per_class=10**9)
        probs, _ = train_patch.predict_patches(cnn, tx)
        cnn_id = self._register({
            "id": "patch-cnn", "name": "Gleason pattern patch classifier",
            "description": f"ResNet-style CNN on {PATCH_PX}x{PATCH_PX} px patches at {PATCH_MPP} um/px; "
                           f"trained on {len(x)} patches from {len(train)} slides.",
            "task": "patch", "architecture": "patch_resnet",
            "params": {"num_classes": len(PATCH_CLASSES), "channel_mean": list(cnn.mean.flatten().tolist()),
                       "channel_std": list(cnn.std.flatten().tolist())},
            "class_names": list(PATCH_CLASSES), "cam_target_layer": "layer4",
            "input": {"patch_size_px": PATCH_PX, "mpp": PATCH_MPP},
            "metrics": multiclass_metrics(ty, probs, split="held-out patients' slides, pure patches"),
        }, cnn)

        bags: list[np.ndarray] = []
        owners: list[str] = []
        slide_ids: list[str] = []
        for sid, owner in slide_owner.items():
            _, feats = train_patch.predict_patches(cnn, patches[sid].images)
            bags.append(feats)
            owners.append(owner)
            slide_ids.append(sid)
        labels = np.array([_slide_label(class_maps[sid]) for sid in slide_ids])
        is_test = np.array([o in test_ids for o in owners])
        train_bags = [b for b, t in zip(bags, is_test) if not t]
        mil = train_patch.train_mil_head(GatedAttentionMIL(bags[0].shape[1], num_classes=2), train_bags, labels[~is_test],
                                         self.spec.mil_epochs, self.spec.seed, self.say)
        scores = train_patch.mil_scores(mil, bags)
        mil_common = {
            "task": "mil", "feature_model": cnn_id, "class_names": ["no pattern 4/5", "pattern 4/5 present"],
            "positive_class": "pattern 4/5 present", "input": {"patch_size_px": PATCH_PX, "mpp": PATCH_MPP},
        }
        mil_id = self._register({
            **mil_common, "id": "mil-attention", "name": "Slide: pattern 4/5 present (gated attention MIL)",
            "description": "Gated-attention MIL head over patch-CNN embeddings; slide positive when Gleason "
                           "pattern 4 or 5 covers at least 1% of tissue.",
            "architecture": "gated_attention_mil", "params": {"in_dim": bags[0].shape[1], "num_classes": 2},
            "metrics": binary_metrics(labels[is_test], scores[is_test], split="held-out patients' slides"),
        }, mil)
        self._slide_predictions(mil_id, slide_ids, owners, scores)
        # A pooling baseline beside attention: log-sum-exp over instance probabilities (r = 8), as WeGleNet.
        lse = train_patch.train_mil_head(InstancePoolingMIL(bags[0].shape[1], 2, "lse_probabilities"), train_bags, labels[~is_test],
                                         self.spec.mil_epochs, self.spec.seed, self.say)
        lse_scores = train_patch.mil_scores(lse, bags)
        lse_id = self._register({
            **mil_common, "id": "mil-lse", "name": "Slide: pattern 4/5 present (log-sum-exp pooling baseline)",
            "description": "Linear instance classifier over patch-CNN embeddings; log-sum-exp (r = 8) of the instances' "
                           "probabilities of pattern 4/5 (WeGleNet's pooling); "
                           "the pooling baseline to compare attention against.",
            "architecture": "instance_pooling_mil", "params": {"in_dim": bags[0].shape[1], "num_classes": 2, "pooling": "lse_probabilities"},
            "metrics": binary_metrics(labels[is_test], lse_scores[is_test], split="held-out patients' slides"),
        }, lse)
        self._slide_predictions(lse_id, slide_ids, owners, lse_scores)
        return [cnn_id, mil_id, lse_id, *write_demo_feature_heads(self.root, self.store, cnn_id, dict(zip(slide_ids, bags)), patches, dict(zip(slide_ids, labels.tolist())), {s for s, t in zip(slide_ids, is_test) if t}, self.spec.seed, self.say)]  # noqa: E501

    def _slide_predictions(self, model_id: str, slide_ids: list[str], owners: list[str], scores: np.ndarray) -> None:
        """Per slide, and per patient the highest of their slides."""
        rows = [("slide", sid, o, sc) for sid, o, sc in zip(slide_ids, owners, scores)]
        per_patient: dict[str, float] = {}
        for _, _, o, sc in rows:
            per_patient[o] = max(per_patient.get(o, 0.0), sc)
        self._predictions(model_id, rows + [("patient", o, o, sc) for o, sc in per_patient.items()])

    def train_visit_model(self, patients: list[_DemoPatient], test_ids: set[str]) -> str:
        seqs = [[(v.day, v.features, v.label) for v in p.visits] for p in patients]
        is_test = np.array([p.id in test_ids for p in patients])
        train_values = np.array([[v[1][k] for k in NUMERIC_FEATURES] for s, t in zip(seqs, is_test) if not t for v in s])
        means, stds = train_sequence.feature_standardisation(train_values)
        categorical = {"onset_type": list(ONSET_TYPES)}
        data = encode_sequences(seqs, NUMERIC_FEATURES, means, stds, categorical)
        params = {"n_numeric": len(NUMERIC_FEATURES), "category_sizes": [len(ONSET_TYPES)], "cell": "gru",
                  "hidden": 32, "bidirectional": False, "elapsed_time": True}
        train_idx = torch.from_numpy(np.flatnonzero(~is_test))
        sub = VisitTensors(*(getattr(data, f)[train_idx] for f in ("numeric", "categories", "elapsed", "lengths", "labels")))
        net = train_sequence.train_sequence_net(sub, params, self.spec.sequence_epochs, self.spec.seed, self.say)
        risks = train_sequence.visit_risks(net, data)
        test_mask = (data.labels >= 0) & torch.from_numpy(is_test)[:, None]
        model_id = self._register({
            "id": "niv-gru", "name": "NIV within 90 days (GRU over visits)",
            "description": "Unidirectional GRU with onset-type embedding and elapsed time between visits; "
                           "predicts at every visit whether non-invasive ventilation starts within 90 days.",
            "task": "sequence", "architecture": "visit_sequence_net", "params": params,
            "class_names": ["no NIV within 90 days", "NIV within 90 days"], "positive_class": "NIV within 90 days",
            "input": {"features": list(NUMERIC_FEATURES), "feature_means": means, "feature_stds": stds,
                      "categorical": categorical, "elapsed_time": True, "feature_units": FEATURE_UNITS,
                      "feature_ranges": FEATURE_RANGES},
            "metrics": binary_metrics(data.labels[test_mask].numpy(), risks[test_mask].numpy(), split="held-out patients' visits"),
        }, net)
        with self.store.session() as s:
            visit_ids = {p.id: [v.id for v in s.scalars(select(Visit).where(Visit.patient_id == p.id).order_by(Visit.day, Visit.id))]
                         for p in patients}
        rows = []
        for i, p in enumerate(patients):
            n = len(p.visits)
            rows += [("visit", str(vid), p.id, float(risks[i, j])) for j, vid in enumerate(visit_ids[p.id])]
            rows.append(("patient", p.id, p.id, float(risks[i, n - 1])))
        self._predictions(model_id, rows)
        return model_id

    def train_report_model(self, patients: list[_DemoPatient], test_ids: set[str]) -> str:
        items = [(f"{p.id}-R{k + 1}", p.id, text, label) for p in patients for k, (text, label) in enumerate(p.reports)]
        train = [it for it in items if it[1] not in test_ids]
        test = [it for it in items if it[1] in test_ids]
        vocabulary = train_report.build_vocabulary([t for _, _, t, _ in train])
        model = train_report.train_report_classifier([t for _, _, t, _ in train], np.array([lab for *_, lab in train]), vocabulary, self.spec.seed)
        probs = train_report.report_probabilities(model, [t for _, _, t, _ in items], vocabulary)[:, 1]
        is_test = np.array([it[1] in test_ids for it in items])
        model_id = self._register({
            "id": "report-tfidf", "name": "Report: high vs low grade (TF-IDF + logistic regression)",
            "description": "Word 1-2-gram TF-IDF and logistic regression on cleaned report text; high grade "
                           "means Gleason score above 7.",
            "task": "report", "architecture": "tfidf_logistic_regression",
            "params": {"vocabulary_size": len(vocabulary), "num_classes": 2},
            "class_names": ["low grade", "high grade"], "positive_class": "high grade",
            "input": {"max_ngram": 2},
            "metrics": binary_metrics(np.array([it[3] for it in test]), probs[is_test], split="held-out patients' reports"),
        }, model, vocabulary)
        rows = [("report", rid, pid, pr) for (rid, pid, _, _), pr in zip(items, probs)]
        per_patient: dict[str, float] = {}
        for _, _, pid, pr in rows:
            per_patient[pid] = max(per_patient.get(pid, 0.0), pr)
        self._predictions(model_id, rows + [("patient", pid, pid, pr) for pid, pr in per_patient.items()])
        return model_id


def _spread_over_visits(visit_days: list[float], count: int) -> list[float]:
    """The day of each of ``count`` specimens, spread evenly over the visits: the first at the first visit, the last
    (when there are several) at the last. Uses no random numbers, so every other generated value is unchanged."""
    n = len(visit_days)
    if count <= 1 or n == 1:
        return [visit_days[0]] * count
    return [visit_days[round(k * (n - 1) / (count - 1))] for k in range(count)]


def _slide_label(class_map: np.ndarray) -> int:
    """Positive when Gleason pattern 4 or 5 covers at least 1% of the tissue."""
    tissue = (class_map > 0).sum()
    return int(tissue > 0 and np.isin(class_map, (GG4, GG5)).sum() / tissue >= 0.01)
