"""Building the deterministic demo workspaces.

``prostate`` (the default): one prostate-cancer cohort of men followed with PSA visits, their needle biopsies (thin
cores, several per slide), re-biopsies and radical prostatectomies (one large section), one report per specimen, and
five models trained on the training patients and scored on held-out patients. ``als``: the ALS cohort of Ferreira et
al., visits only, with its NIV model.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sqlalchemy import select

from core.demo import als_visits, prostate_history, train_patch, train_report, train_sequence
from core.demo.feature_files import write_demo_feature_heads
from core.demo.patch_dataset import PATCH_CLASSES, PATCH_MPP, PATCH_PX, SlidePatches, slide_patches
from core.demo.prostate_history import GRADE_GROUP, ProstateHistory, Specimen, synthesise_history
from core.demo.report_synthesis import ReportIdentity, report_identity, synthesise_report
from core.demo.reproducible import reproducible_torch
from core.demo.slide_synthesis import BASE_MPP, GG3, GG4, GG5, LAB_NAMES, LAB_STAINS, MAP_UM_PER_PX, SlidePlan, artefact_boxes, write_slide_job
from core.errors import WorkspaceError
from core.models.manifest import InputSpec
from core.models.metrics import binary_metrics, multiclass_metrics
from core.models.mil import GatedAttentionMIL, InstancePoolingMIL
from core.models.registry import save_model
from core.models.visit_encoding import VisitTensors, encode_sequences
from core.slides.slide_stain import estimate_stain, tissue_sample
from core.store.database import open_store
from core.store.schema import ModelRecord, Patient, Prediction, Report, Slide, Visit
from core.workspace import DEMO_BUILD_MARKER, PatientAttribute, WorkspaceConfig, write_workspace_config

Progress = Callable[[str], None]
BUILD_MARKER = DEMO_BUILD_MARKER
DEMO_FORMAT = 9  # bump when generators, training or the stored fields change, so older demo builds are rebuilt
COHORTS = ("prostate", "als")

_PATTERN_CLASS = {3: GG3, 4: GG4, 5: GG5}  # Gleason pattern -> class-map label
_CLASS_PATTERN = {v: k for k, v in _PATTERN_CLASS.items()}
FOCI_STREAM = 2  # with a slide's seed: the draws for its minimal foci (its class map uses the seed alone, its stain [seed, 1])
VALIDATION_STREAM = 2  # the sequence model's validation draw has its own random stream, so slide work does not move it
DISCORDANT_FRACTION = 0.075  # of the reports: their stated Gleason differs from the slides' mask (the stated range is 5-10 %)
MINOR_PATTERN_SHARE = 0.05  # a pattern under this share of a specimen's tumour area is not graded
# Slide difficulty (see docs/methods.md, "The demo's slide task"): minimal pattern 4, minor pattern-4 foci, poorly
# formed glands that annotators grade either way, and annotators' outlines put many slides near the label's 1 % of tissue.
BIOPSY_TUMOUR_FRACTION = (0.06, 0.5)  # of the tissue of a biopsy's first slide (the cores with most tumour), log-uniform
HIGH_GRADE_TUMOUR_FRACTION = (0.15, 0.6)  # the same where pattern 4 or 5 is primary: high-grade tumours are larger
EDGE_TUMOUR_FRACTION = (0.01, 0.15)  # of the tissue of a biopsy's further slides with tumour (cores at its edge), log-uniform
SECONDARY_SHARE = (0.1, 0.35)  # of the tumour, log-uniform
MINIMAL_PATTERN_4_RATE = 0.9  # of slides of pattern 3 with pattern 4: pattern 4 as a few scattered glands
MINIMAL_PATTERN_4_AREA = (0.003, 0.03)  # of the tissue, log-uniform: about the label's 1 %
MINIMAL_PATTERN_4_SHARE = (0.08, 0.25)  # of the tumour, log-uniform: scattered glands grow most under generous outlines
MAX_PATTERN_4_SHARE = 0.35  # of the tumour, pattern 4 and poorly formed glands together beside a pattern 3 primary
MINOR_FOCUS_RATE = 0.35  # of pattern-3-only slides whose tumour is large enough to hide it: a minor focus of pattern 4
POORLY_FORMED_RATE = 0.5  # of the other pattern-3-only slides of such a tumour, and of slides of pattern 3 with 4
MINOR_SHARE = (0.005, 0.02)  # of the tumour, uniform: under the grading share even where the annotator's outline grows it
MINOR_MIN_TUMOUR = 0.1  # of the tissue: in a smaller tumour a focus of a few glands is no longer a minor pattern
POORLY_FORMED_BESIDE_4 = (0.05, 0.25)  # of the tumour, beside pattern 4
POORLY_FORMED_CALLED_4 = 0.5  # an annotator grades a slide's poorly formed glands pattern 4 this often, else pattern 3
OUTLINE_HABIT = 0.5  # how far an annotator's outlines lean generous (+) or tight (-), uniform in +-this
# Every other held-out man (by id) was referred from another hospital, the two in turn, and his slides were cut and
# stained there (``LAB_STAINS``): the slide models are trained on the lab's own slides and validated on both.
REFERRED_EVERY = 2


@dataclass(frozen=True)
class DemoSpec:
    cohort: str = "prostate"
    n_patients: int = 60
    # The sizes the slide task's difficulty is set at: larger slides give the models more patches per slide and the
    # task gets easier (at 6144 x 1536 px biopsies and 8192 px sections, with 5 epochs, the patch CNN reached held-out
    # AUC 0.975 and the LSE head came within 0.024 of the fraction of called patches).
    biopsy_px: tuple[int, int] = (3072, 1536)  # a biopsy slide: three thin cores side by side
    prostatectomy_px: int = 3072  # a prostatectomy section, square
    large_slide_px: int | None = 32768  # the first prostatectomy this size instead, for a realistic viewer load
    cnn_epochs: int = 4
    patches_per_class: int = 1000
    mil_epochs: int = 40
    sequence_epochs: int = 300  # at most: training stops early on the validation patients
    development_men: int = 540  # visits-only men from the same generator, added to the sequence model's training
    test_fraction: float = 0.3
    validation_fraction: float = 0.2  # of the training patients, for early stopping and calibration
    seed: int = 7

    def fingerprint(self) -> str:
        content = {"format": DEMO_FORMAT, **asdict(self)}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


REDUCED_SPEC = DemoSpec(large_slide_px=None)  # the tests' build: the demo without its one 32768-px section
ALS_SPEC = DemoSpec(cohort="als", n_patients=200)


def demo_is_built(root: Path, spec: DemoSpec) -> bool:
    marker = root / BUILD_MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("fingerprint") == spec.fingerprint()


def build_demo(root: Path, spec: DemoSpec = DemoSpec(), progress: Progress = print) -> Path:
    """Build the demo workspace at ``root`` unless an identical build is already there.

    Everything is written to a sibling temporary folder that is renamed into place at the end,
    so an interrupted build never leaves a workspace that looks complete."""
    if spec.cohort not in COHORTS:
        raise WorkspaceError(f"unknown demo {spec.cohort!r}; choose one of {', '.join(COHORTS)}")
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
    build = _ProstateBuild(staging, spec, say) if spec.cohort == "prostate" else _AlsBuild(staging, spec, say)
    with reproducible_torch():
        held_out = build.run()
    (staging / BUILD_MARKER).write_text(json.dumps(
        {"fingerprint": spec.fingerprint(), "spec": asdict(spec), "held_out_patients": sorted(held_out),
         "baselines": build.baselines, "artefacts": build.artefacts}, indent=1))
    if root.exists():
        shutil.rmtree(root)
    os.replace(staging, root)
    say(f"workspace ready at {root}")
    return root


@dataclass
class _SlideOfSpecimen:
    id: str
    plan: SlidePlan


@dataclass
class _DemoSpecimen:
    specimen: Specimen
    slides: list[_SlideOfSpecimen]
    stated: tuple[int, int] | None  # the Gleason the report states
    report_id: str = ""
    mask_gleason: tuple[int, int] | None = None  # from the slides' masks, once written


@dataclass
class _DemoPatient:
    id: str
    history: ProstateHistory
    identity: ReportIdentity
    specimens: list[_DemoSpecimen] = field(default_factory=list)

    @property
    def slides(self) -> list[_SlideOfSpecimen]:
        return [sl for sp in self.specimens for sl in sp.slides]


def mask_gleason(annotations: list[np.ndarray]) -> tuple[int, int] | None:
    """(primary, secondary) Gleason pattern of a specimen from its slides' masks: the patterns by tumour area, those
    under ``MINOR_PATTERN_SHARE`` of it left out; one pattern is graded as itself twice; None without tumour."""
    areas = {p: sum(int((a == cls).sum()) for a in annotations) for cls, p in _CLASS_PATTERN.items()}
    total = sum(areas.values())
    if total == 0:
        return None
    graded = sorted((p for p, a in areas.items() if a >= MINOR_PATTERN_SHARE * total), key=lambda p: -areas[p])
    return (graded[0], graded[1] if len(graded) > 1 else graded[0])


def is_high_grade(gleason: tuple[int, int] | None) -> bool:
    """The report model's positive class: ISUP grade group 3 or above, so 4+3 is high grade and 3+4, of the same sum, is not."""
    return gleason is not None and GRADE_GROUP[gleason] >= 3


_GLEASON_SUM = re.compile(r"(\d)\s*\+\s*(\d)")


def regex_gleason_sum(text: str) -> float:
    """The trivial report baseline: the first "a+b" Gleason sum in the text, 0 when there is none."""
    m = _GLEASON_SUM.search(text)
    return float(int(m.group(1)) + int(m.group(2))) if m else 0.0


class _Build:
    """What both demos share: the store, model registration, stored predictions and the visit model."""

    def __init__(self, root: Path, spec: DemoSpec, say: Progress) -> None:
        self.root, self.spec, self.say = root, spec, say
        self.rng = np.random.default_rng(spec.seed)
        self.store = open_store(f"sqlite:///{root / 'cases.db'}")
        self.baselines: dict[str, dict[str, float]] = {}
        self.artefacts: dict[str, dict[str, list[list[int]]]] = {}
        # Slides scored but never trained on: the large section's ~10,000 patches would be 40 % of the patch pool and
        # make the slide task easier than the reduced build's, on which the tests assert.
        self.scored_only: set[str] = set()

    def run(self) -> set[str]:
        raise NotImplementedError

    def split(self, strata: dict[str, object]) -> set[str]:
        """Held-out patients, stratified by ``strata`` (patient id -> stratum)."""
        test: set[str] = set()
        for stratum in sorted(set(strata.values()), key=repr):
            ids = sorted(pid for pid, s in strata.items() if s == stratum)
            self.rng.shuffle(ids)
            test.update(ids[: int(round(len(ids) * self.spec.test_fraction))])
        return test

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

    def _slide_predictions(self, model_id: str, slide_ids: list[str], owners: list[str], scores: np.ndarray) -> None:
        """Per slide, and per patient the highest of their slides."""
        rows = [("slide", sid, o, sc) for sid, o, sc in zip(slide_ids, owners, scores)]
        per_patient: dict[str, float] = {}
        for _, _, o, sc in rows:
            per_patient[o] = max(per_patient.get(o, 0.0), sc)
        self._predictions(model_id, rows + [("patient", o, o, sc) for o, sc in per_patient.items()])

    def train_visit_model(self, ids: list[str], visits: list[list[tuple[float, dict, int | None]]], test_ids: set[str], model: dict,
                          numeric: tuple[str, ...], categorical: dict[str, list[str]],
                          development: Sequence[list[tuple[float, dict, int | None]]] = ()) -> str:
        """Train, calibrate and register a visit-sequence model; store its output at every visit. ``development``:
        visits-only patients added to the training (and validation) patients, never stored or scored as held out."""
        visits = [*visits, *development]
        is_test = np.array([pid in test_ids for pid in ids] + [False] * len(development))
        train_values = np.array([[v[1][k] for k in numeric] for seq, t in zip(visits, is_test) if not t for v in seq])
        means, stds = train_sequence.feature_standardisation(train_values)
        data = encode_sequences(visits, numeric, means, stds, categorical)
        params = {"n_numeric": len(numeric), "category_sizes": [len(v) for v in categorical.values()], "cell": "gru",
                  "hidden": 16, "bidirectional": False, "elapsed_time": True, "clip_z": 3.0}
        train_idx = np.flatnonzero(~is_test)
        order = np.random.default_rng([self.spec.seed, VALIDATION_STREAM]).permutation(train_idx)  # apart from the slide models' draws
        n_val = int(round(len(order) * self.spec.validation_fraction))
        net, temperature = train_sequence.train_sequence_net(train_sequence.subset(data, np.sort(order[n_val:])),
                                                             train_sequence.subset(data, np.sort(order[:n_val])),
                                                             params, self.spec.sequence_epochs, self.spec.seed, self.say)
        risks = train_sequence.visit_risks(net, data)
        test_mask = (data.labels >= 0) & torch.from_numpy(is_test)[:, None]
        self.baselines[model["id"]] = _visit_baselines(data, ~is_test, is_test, list(numeric))
        units, ranges = model.pop("feature_units"), model.pop("feature_ranges")
        model_id = self._register({
            **model, "task": "sequence", "architecture": "visit_sequence_net", "params": params,
            "input": {"features": list(numeric), "feature_means": means, "feature_stds": stds, "categorical": categorical,
                      "elapsed_time": True, "feature_units": units, "feature_ranges": ranges},
            "metrics": binary_metrics(data.labels[test_mask].numpy(), risks[test_mask].numpy(),
                                      split=f"held-out patients' visits; calibrated (temperature {temperature:.2f})"),
        }, net)
        with self.store.session() as s:
            visit_ids = {pid: [v.id for v in s.scalars(select(Visit).where(Visit.patient_id == pid).order_by(Visit.day, Visit.id))]
                         for pid in ids}
        rows = []
        for i, pid in enumerate(ids):  # the workspace's own patients come first in ``data``
            rows += [("visit", str(vid), pid, float(risks[i, j])) for j, vid in enumerate(visit_ids[pid])]
            rows.append(("patient", pid, pid, float(risks[i, len(visit_ids[pid]) - 1])))
        self._predictions(model_id, rows)
        return model_id


def development_visits(spec: DemoSpec) -> list[list[tuple[float, dict, int | None]]]:
    """The visits of the prostate demo's development men (see ``prostate_history.development_cohort``)."""
    return [[(v.day, v.features, v.label) for v in h.visits] for h in prostate_history.development_cohort(spec.seed, spec.development_men)]


def _visit_baselines(data: VisitTensors, train: np.ndarray, test: np.ndarray, numeric: list[str]) -> dict[str, float]:
    """Held-out AUCs of the trivial visit baselines: logistic regression on each single numeric feature (the best one
    is reported) and on all of one visit's features with no sequence (numbers, elapsed time, category codes one-hot)."""
    def rows(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (data.labels >= 0) & torch.from_numpy(mask)[:, None]
        cats = [torch.nn.functional.one_hot(data.categories[..., c], int(data.categories[..., c].max()) + 1).float()
                for c in range(data.categories.shape[-1])]
        x = torch.cat([data.numeric, data.elapsed.unsqueeze(-1), *cats], -1)[keep].numpy()
        return x, data.labels[keep].numpy()

    x_train, y_train = rows(train)
    x_test, y_test = rows(test)
    single = {name: roc_auc_score(y_test, LogisticRegression().fit(x_train[:, [j]], y_train).decision_function(x_test[:, [j]]))
              for j, name in enumerate(numeric)}
    best = max(single, key=lambda k: single[k])
    per_visit = LogisticRegression(max_iter=2000).fit(x_train, y_train).decision_function(x_test)
    return {f"single feature ({best})": round(float(single[best]), 4),
            "last visit, all features": round(float(roc_auc_score(y_test, per_visit)), 4)}


class _ProstateBuild(_Build):
    def run(self) -> set[str]:
        patients = self.synthesise_patients()
        test_ids = self.split({p.id: (p.specimens[0].stated is not None, p.history.progression_day is not None) for p in patients})
        self.refer(patients, test_ids)
        class_maps = self.write_slides(patients)
        self.write_reports(patients, class_maps)
        visits = [[(v.day, v.features, v.label) for v in p.history.visits] for p in patients]
        models = [
            *self.train_slide_models(patients, class_maps, test_ids),
            self.train_visit_model([p.id for p in patients], visits, test_ids, {
                "id": "progression-gru", "name": "Progression on active surveillance within 12 months (GRU over visits)",
                "description": "Unidirectional GRU over PSA follow-up visits with PI-RADS and DRE embeddings and the time "
                               "between visits; predicts at every visit of a man on active surveillance whether an upgrade "
                               f"is found on re-biopsy within 12 months. Trained on the training men and {self.spec.development_men} "
                               "visits-only men of the same synthetic cohort; early stopping and temperature calibration on "
                               "validation men; held-out metrics on the held-out demo men only.",
                "class_names": ["no progression within 12 months", "progression within 12 months"],
                "positive_class": "progression within 12 months",
                "feature_units": prostate_history.FEATURE_UNITS, "feature_ranges": prostate_history.FEATURE_RANGES,
            }, prostate_history.NUMERIC_FEATURES, prostate_history.CATEGORICAL, development=development_visits(self.spec)),
            self.train_report_model(patients, test_ids),
        ]
        write_workspace_config(self.root, WorkspaceConfig(
            name="Demo prostate cancer cohort",
            description="Synthetic, deterministic demo: men on PSA follow-up with their biopsies, prostatectomies and "
                        "reports, and models trained on them.",
            models=models,
            # No sex column: every man of a prostate cohort would read "M".
            patient_attributes={"age": PatientAttribute(label="Age", unit="years"),
                                "clinical_stage": PatientAttribute(label="cT stage"),
                                "stained_at": PatientAttribute(label="Stained at")},
        ))
        self.store.dispose()
        return test_ids

    # -- data -----------------------------------------------------------------------------
    def synthesise_patients(self) -> list[_DemoPatient]:
        patients = []
        for i in range(self.spec.n_patients):
            pid = f"P{i + 1:03d}"
            rng = np.random.default_rng([self.spec.seed, i])
            history = synthesise_history(rng)
            patient = _DemoPatient(pid, history, report_identity(rng, pid))
            for k, specimen in enumerate(history.specimens, 1):  # reports R1, R2, ... and slides S1, S2, ... in time order
                slides = self._slides_of(rng, pid, specimen, first=len(patient.slides) + 1)
                patient.specimens.append(_DemoSpecimen(specimen, slides, specimen.gleason, report_id=f"{pid}-R{k}"))
            patients.append(patient)
        self._make_discordant(patients)
        with self.store.session() as s:
            for p in patients:
                s.add(Patient(id=p.id, attributes={"age": p.history.age, "clinical_stage": p.history.stage}))
                s.add_all(Visit(patient_id=p.id, day=v.day, features=v.features, label=v.label) for v in p.history.visits)
        self.say(f"{len(patients)} patients, {sum(len(p.history.visits) for p in patients)} visits, "
                 f"{sum(len(p.specimens) for p in patients)} specimens, {sum(len(p.slides) for p in patients)} slides")
        return patients

    def _slides_of(self, rng: np.random.Generator, pid: str, specimen: Specimen, first: int) -> list[_SlideOfSpecimen]:
        """A biopsy: one or two slides of three cores, the tumour on the first and perhaps the second; a prostatectomy:
        one large section."""
        gleason = specimen.gleason
        patterns = () if gleason is None else tuple(dict.fromkeys(_PATTERN_CLASS[g] for g in gleason))
        n = 1 if specimen.kind == "prostatectomy" else int(rng.integers(1, 3))
        slides = []
        for k in range(n):
            with_tumour = patterns if k == 0 or rng.random() < 0.6 else ()
            # The patient's stream is drawn as always, so slide ids, seeds and artefacts stay where they were; the
            # draws for the minimal foci come from the slide's own seed.
            u_fraction, seed, u_secondary = rng.random(), int(rng.integers(1 << 31)), rng.random()
            blur, pen = bool(rng.random() < 0.2), bool(rng.random() < 0.2)
            width, height = self.spec.biopsy_px if specimen.kind == "biopsy" else (self.spec.prostatectomy_px,) * 2
            layout = _tumour_layout(np.random.default_rng([seed, FOCI_STREAM]), with_tumour, specimen.kind, k == 0, u_fraction, u_secondary)
            plan = SlidePlan(width, height, specimen.kind, with_tumour, seed, blur=blur, pen=pen, **layout)  # type: ignore[arg-type]
            slides.append(_SlideOfSpecimen(f"{pid}-S{first + k}", plan))
        return slides

    def refer(self, patients: list[_DemoPatient], test_ids: set[str]) -> None:
        """Every ``REFERRED_EVERY``-th held-out man was referred from another hospital (the two in turn): his slides
        carry its staining; each man's record names where his slides were stained."""
        referred = {pid: 1 + k % (len(LAB_STAINS) - 1) for k, pid in enumerate(sorted(test_ids)[::REFERRED_EVERY])}
        for p in patients:
            lab = referred.get(p.id, 0)
            for sp in p.specimens:
                sp.slides = [_SlideOfSpecimen(sl.id, replace(sl.plan, lab=lab)) for sl in sp.slides]
        with self.store.session() as s:
            for record in s.scalars(select(Patient)):
                record.attributes = {**record.attributes, "stained_at": LAB_NAMES[referred.get(record.id, 0)]}

    def _make_discordant(self, patients: list[_DemoPatient]) -> None:
        """A fixed share of the reports state a grade one step off the slides' (a pathologist's over- or under-call)."""
        cancers = [sp for p in patients for sp in p.specimens if sp.stated is not None]
        n_reports = sum(len(p.specimens) for p in patients)
        for index in self.rng.permutation(len(cancers))[: int(round(DISCORDANT_FRACTION * n_reports))]:
            specimen = cancers[int(index)]
            assert specimen.stated is not None
            p, s = specimen.stated
            # Calls across the grade group 2 / 3 boundary (4+3 read as 3+4, 3+4 as 3+5) are the disagreements that
            # change management, and the ones a reviewer most needs to find: they are made where the grade allows one.
            candidates = [c for c in ((p, s + 1), (p, s - 1), (s, p)) if c in GRADE_GROUP and c != (p, s)]
            crossing = [c for c in candidates if is_high_grade(c) != is_high_grade((p, s))]
            specimen.stated = (crossing or candidates)[0]

    def write_slides(self, patients: list[_DemoPatient]) -> dict[str, np.ndarray]:
        jobs = [(sl.id, sl.plan, p.id, sp.specimen.day) for p in patients for sp in p.specimens for sl in sp.slides]
        big = next((k for k, j in enumerate(jobs) if j[1].kind == "prostatectomy"), None)
        if self.spec.large_slide_px and big is not None:
            sid, plan, pid, day = jobs[big]
            jobs[big] = (sid, _resized(plan, self.spec.large_slide_px), pid, day)
            self.scored_only.add(sid)
        jobs.sort(key=lambda j: -j[1].width * j[1].height)  # largest first keeps both workers busy to the end
        workers = max(1, min(2, os.cpu_count() or 1))
        class_maps: dict[str, np.ndarray] = {}
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {sid: pool.submit(write_slide_job, str(self.root / "slides" / f"{sid}.tiff"), plan, self.spec.seed)
                       for sid, plan, _, _ in jobs}
            for n, (sid, plan, pid, day) in enumerate(jobs, 1):
                maps = futures[sid].result()
                class_maps[sid] = maps.annotation
                boxes = artefact_boxes(maps)
                if boxes:
                    self.artefacts[sid] = boxes
                Image.fromarray(maps.annotation).save(self.root / "slides" / f"{sid}.mask.png")
                with self.store.session() as s:
                    s.add(Slide(id=sid, patient_id=pid, file=f"{sid}.tiff", mpp=BASE_MPP, width=plan.width, height=plan.height,
                                mask_file=f"{sid}.mask.png", mask_mpp=MAP_UM_PER_PX, label=_slide_label(maps.annotation), day=day))
                if n % 20 == 0 or n == len(jobs):
                    self.say(f"slides written: {n}/{len(jobs)}")
        return class_maps

    def write_reports(self, patients: list[_DemoPatient], class_maps: dict[str, np.ndarray]) -> None:
        """One report per specimen, on the specimen's day; labelled high grade (grade group 3 or above) from the slides'
        masks, whatever the text states."""
        with self.store.session() as s:
            for p in patients:
                rng = np.random.default_rng([self.spec.seed, 1, int(p.id[1:])])
                for sp in p.specimens:
                    sp.mask_gleason = mask_gleason([class_maps[sl.id] for sl in sp.slides])
                    psa = _psa_before(p.history, sp.specimen.day)
                    text = synthesise_report(rng, p.identity, sp.specimen.kind, sp.specimen.day, sp.stated, psa, 3 * len(sp.slides))
                    label = int(is_high_grade(sp.mask_gleason))
                    s.add(Report(id=sp.report_id, patient_id=p.id, text=text, label=label, day=sp.specimen.day))

    # -- models ---------------------------------------------------------------------------
    def train_slide_models(self, patients: list[_DemoPatient], class_maps: dict[str, np.ndarray], test_ids: set[str]) -> list[str]:
        slide_owner = {sl.id: p.id for p in patients for sl in p.slides}
        patches: dict[str, SlidePatches] = {}
        for sid in slide_owner:
            patches[sid] = slide_patches(sid, self.root / "slides" / f"{sid}.tiff", class_maps[sid])
        self.say(f"patches read through OpenSlide: {sum(len(p.label) for p in patches.values())}")
        # Each slide's stains, as the app estimates them for a model that fits stains per slide (from the same sample).
        sources = {sid: estimate_stain(tissue_sample(self.root / "slides" / f"{sid}.tiff", BASE_MPP, PATCH_PX, PATCH_MPP), "macenko")
                   for sid in slide_owner}
        train = [patches[s] for s, o in slide_owner.items() if o not in test_ids and s not in self.scored_only]
        test = [patches[s] for s, o in slide_owner.items() if o in test_ids]
        keep = train_patch.training_indices(train, self.rng, self.spec.patches_per_class)
        x, y = np.concatenate([p.images for p in train])[keep], np.concatenate([p.label for p in train])[keep]
        cnn_input = train_patch.macenko_input(x, self.rng, InputSpec(patch_size_px=PATCH_PX, mpp=PATCH_MPP))
        seen = {p.slide_id: p for p in train_patch.as_read(list(patches.values()), cnn_input, sources)}  # as the model reads them
        cnn = train_patch.train_patch_cnn(np.concatenate([seen[p.slide_id].images for p in train])[keep], y, self.spec.cnn_epochs,
                                          self.spec.seed, self.say)
        tx, ty = train_patch.all_patches([seen[p.slide_id] for p in test])  # every tissue patch of the held-out patients, not only pure ones
        probs, _ = train_patch.predict_patches(cnn, tx)
        cnn_id = self._register({
            "id": "patch-cnn", "name": "Gleason pattern patch classifier",
            "description": f"ResNet-style CNN on {PATCH_PX}x{PATCH_PX} px patches at {PATCH_MPP} um/px; "
                           f"trained on {len(x)} patches from {len(train)} slides.",
            "task": "patch", "architecture": "patch_resnet",
            "params": {"num_classes": len(PATCH_CLASSES), "channel_mean": list(cnn.mean.flatten().tolist()),
                       "channel_std": list(cnn.std.flatten().tolist())},
            "class_names": list(PATCH_CLASSES), "cam_target_layer": "layer4",
            "input": cnn_input.model_dump(exclude_none=True),
            "metrics": multiclass_metrics(ty, probs, split="held-out patients' slides, every tissue patch (majority label)"),
        }, cnn)

        bags: list[np.ndarray] = []
        owners: list[str] = []
        slide_ids: list[str] = []
        called: list[float] = []  # the trivial slide baseline: the fraction of a slide's patches called pattern 4 or 5
        for sid, owner in slide_owner.items():
            patch_probs, feats = train_patch.predict_patches(cnn, seen[sid].images)
            called.append(float(np.isin(patch_probs.argmax(1), (2, 3)).mean()))
            bags.append(feats)
            owners.append(owner)
            slide_ids.append(sid)
        labels = np.array([_slide_label(class_maps[sid]) for sid in slide_ids])
        is_test = np.array([o in test_ids for o in owners])
        is_train = ~is_test & ~np.isin(slide_ids, sorted(self.scored_only))
        train_bags = [b for b, t in zip(bags, is_train) if t]
        mil = train_patch.train_mil_head(GatedAttentionMIL(bags[0].shape[1], num_classes=2), train_bags, labels[is_train],
                                         self.spec.mil_epochs, self.spec.seed, self.say)
        scores = train_patch.mil_scores(mil, bags)
        fraction_auc = round(float(roc_auc_score(labels[is_test], np.array(called)[is_test])), 4)
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
        self.baselines[mil_id] = {"fraction of patches called pattern 4/5": fraction_auc}
        # A pooling baseline beside attention: log-sum-exp over instance probabilities (r = 8), as WeGleNet.
        lse = train_patch.train_mil_head(InstancePoolingMIL(bags[0].shape[1], 2, "lse_probabilities"), train_bags, labels[is_train],
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
        self.baselines[lse_id] = {"fraction of patches called pattern 4/5": fraction_auc}
        feature_heads = write_demo_feature_heads(self.root, self.store, cnn_id, dict(zip(slide_ids, bags)), patches, dict(zip(slide_ids, labels.tolist())),
                                                 {s for s, t in zip(slide_ids, is_test) if t}, self.scored_only, self.spec.seed, self.say)
        return [cnn_id, mil_id, lse_id, *feature_heads]

    def train_report_model(self, patients: list[_DemoPatient], test_ids: set[str]) -> str:
        with self.store.session() as s:
            items = [(r.id, r.patient_id, r.text, r.label) for r in s.scalars(select(Report).order_by(Report.id))]
        train = [it for it in items if it[1] not in test_ids]
        test = [it for it in items if it[1] in test_ids]
        vocabulary = train_report.build_vocabulary([t for _, _, t, _ in train])
        model = train_report.train_report_classifier([t for _, _, t, _ in train], np.array([lab for *_, lab in train]), vocabulary, self.spec.seed)
        probs = train_report.report_probabilities(model, [t for _, _, t, _ in items], vocabulary)[:, 1]
        is_test = np.array([it[1] in test_ids for it in items])
        model_id = self._register({
            "id": "report-tfidf", "name": "Report: high vs low grade (TF-IDF + logistic regression)",
            "description": "Word 1-2-gram TF-IDF and logistic regression on cleaned report text (identifiers, dates and "
                           "numbers other than grades removed); high grade means ISUP grade group 3 or above (Gleason "
                           "4+3 or worse) in the specimen's slides, the grades that usually rule out active surveillance.",
            "task": "report", "architecture": "tfidf_logistic_regression",
            "params": {"vocabulary_size": len(vocabulary), "num_classes": 2},
            "class_names": ["low grade", "high grade"], "positive_class": "high grade",
            "input": {"max_ngram": 2},
            "metrics": binary_metrics(np.array([it[3] for it in test]), probs[is_test], split="held-out patients' reports"),
        }, model, vocabulary)
        regex = np.array([regex_gleason_sum(t) for _, _, t, _ in test])
        self.baselines[model_id] = {"regex on the Gleason sum": round(float(roc_auc_score([it[3] for it in test], regex)), 4)}
        rows = [("report", rid, pid, pr) for (rid, pid, _, _), pr in zip(items, probs)]
        per_patient: dict[str, float] = {}
        for _, _, pid, pr in rows:
            per_patient[pid] = max(per_patient.get(pid, 0.0), pr)
        self._predictions(model_id, rows + [("patient", pid, pid, pr) for pid, pr in per_patient.items()])
        return model_id


def _resized(plan: SlidePlan, px: int) -> SlidePlan:
    return replace(plan, width=px, height=px)


def _uniform(u: float, low: float, high: float) -> float:
    """The value at quantile ``u`` of a uniform distribution between ``low`` and ``high``."""
    return low + u * (high - low)


def _log_uniform(u: float, low: float, high: float) -> float:
    """The value at quantile ``u`` of a log-uniform distribution between ``low`` and ``high``."""
    return float(np.exp(np.log(low) + u * (np.log(high) - np.log(low))))


def _tumour_layout(rng: np.random.Generator, patterns: tuple[int, ...], kind: str, first: bool, u_fraction: float,
                   u_secondary: float) -> dict[str, float | int | bool]:
    """A slide's ``SlidePlan`` fields for its tumour and its annotator: the tumour's share of the tissue, the second
    pattern's share of the tumour, the minimal foci, and how generously the annotator outlines.

    Minimal pattern 4 beside pattern 3 is a few scattered glands whose area lies about the label's 1 % of tissue, in a
    tumour sized to match. Minor pattern-4 foci and poorly formed glands go only with a pattern 3 primary and never
    beside pattern 5, so the specimen's grade from its masks stays the report's: in pattern 3 alone they stay under
    the grading share of a large enough tumour; beside pattern 4 they keep it the minority pattern."""
    if kind == "biopsy" and not first:
        fraction = _log_uniform(u_fraction, *EDGE_TUMOUR_FRACTION)
    elif kind == "biopsy":
        fraction = _log_uniform(u_fraction, *(HIGH_GRADE_TUMOUR_FRACTION if patterns[:1] in ((GG4,), (GG5,)) else BIOPSY_TUMOUR_FRACTION))
    else:
        fraction = 0.06 + 0.19 * u_fraction
    share = _log_uniform(u_secondary, *SECONDARY_SHARE)
    roll, u_area, u_poorly, u_share = rng.random(4)
    called = GG4 if rng.random() < POORLY_FORMED_CALLED_4 else GG3
    layout: dict[str, float | int | bool] = {"tumour_fraction": fraction, "secondary_share": share,
                                             "outline": float(rng.uniform(-OUTLINE_HABIT, OUTLINE_HABIT))}
    if patterns == (GG3, GG4):
        if roll < MINIMAL_PATTERN_4_RATE:
            share = _log_uniform(u_secondary, *MINIMAL_PATTERN_4_SHARE)
            layout |= {"tumour_fraction": min(0.5, _log_uniform(u_area, *MINIMAL_PATTERN_4_AREA) / share), "secondary_share": share,
                       "focal_secondary": True}
        if u_poorly < POORLY_FORMED_RATE:
            layout |= {"poorly_formed_share": min(_uniform(u_share, *POORLY_FORMED_BESIDE_4), MAX_PATTERN_4_SHARE - share),
                       "poorly_formed_as": called}
    elif patterns == (GG3,) and fraction >= MINOR_MIN_TUMOUR:
        minor = _uniform(u_share, *MINOR_SHARE)
        if roll < MINOR_FOCUS_RATE:
            layout |= {"minor_share": minor}
        elif u_poorly < POORLY_FORMED_RATE:
            layout |= {"poorly_formed_share": minor, "poorly_formed_as": called}
    return layout


def _psa_before(history: ProstateHistory, day: float) -> float:
    """The PSA of the last visit on or before ``day`` (the first visit's when none is)."""
    before = [v for v in history.visits if v.day <= day] or history.visits[:1]
    return float(before[-1].features["psa"])


def _slide_label(class_map: np.ndarray) -> int:
    """Positive when Gleason pattern 4 or 5 covers at least 1% of the tissue."""
    tissue = (class_map > 0).sum()
    return int(tissue > 0 and np.isin(class_map, (GG4, GG5)).sum() / tissue >= 0.01)


class _AlsBuild(_Build):
    """The ALS cohort of Ferreira et al.: visits only (no slides, no reports) and the NIV-within-90-days model."""

    def run(self) -> set[str]:
        ids: list[str] = []
        visits: list[list[tuple[float, dict, int | None]]] = []
        profiles = []
        for i in range(self.spec.n_patients):
            rng = np.random.default_rng([self.spec.seed, i])
            profile, history = als_visits.synthesise_visits(rng)
            ids.append(f"ALS{i + 1:03d}")
            profiles.append(profile)
            visits.append([(v.day, v.features, v.label) for v in history])
        with self.store.session() as s:
            for pid, profile, seq in zip(ids, profiles, visits):
                s.add(Patient(id=pid, attributes={"age": profile.age, "sex": profile.sex, "onset_type": profile.onset_type}))
                s.add_all(Visit(patient_id=pid, day=day, features=features, label=label) for day, features, label in seq)
        self.say(f"{len(ids)} patients, {sum(len(v) for v in visits)} visits")
        test_ids = self.split({pid: profile.onset_type for pid, profile in zip(ids, profiles)})
        model_id = self.train_visit_model(ids, visits, test_ids, {
            "id": "niv-gru", "name": "NIV within 90 days (GRU over visits)",
            "description": "Unidirectional GRU with onset-type embedding and elapsed time between visits; predicts at every "
                           "visit whether non-invasive ventilation starts within 90 days. Early stopping and temperature "
                           "calibration on validation patients.",
            "class_names": ["no NIV within 90 days", "NIV within 90 days"], "positive_class": "NIV within 90 days",
            "feature_units": als_visits.FEATURE_UNITS, "feature_ranges": als_visits.FEATURE_RANGES,
        }, als_visits.NUMERIC_FEATURES, {"onset_type": list(als_visits.ONSET_TYPES)})
        write_workspace_config(self.root, WorkspaceConfig(
            name="Demo ALS cohort (NIV)",
            description="Synthetic, deterministic demo of the ALS non-invasive-ventilation cohort: visits only.",
            models=[model_id],
            patient_attributes={"age": PatientAttribute(label="Age", unit="years"), "sex": PatientAttribute(label="Sex"),
                                "onset_type": PatientAttribute(label="Onset")},
        ))
        self.store.dispose()
        return test_ids
