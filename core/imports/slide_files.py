"""A lab's slide folder: every file OpenSlide opens (DICOM-WSI series folders included), its size, levels and µm/px
from OpenSlide, and its patient from a file-name pattern or a mapping CSV."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openslide
from PIL import Image
from tqdm import tqdm

from core.imports.ids import id_problem
from core.imports.naming import match_name
from core.imports.problems import Problem
from core.imports.tables import read_csv
from core.imports.values import parse_day, parse_label, parse_number
from core.slides.measure import MAX_PLAUSIBLE_MPP  # above it, a level-0 resolution is not a microscope's

# Extensions of the formats OpenSlide reads (openslide.org/formats): a file with one of these that does not open is an
# error; any other file that OpenSlide does not recognise (a README, a spreadsheet) is passed over.
SLIDE_EXTENSIONS = {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif", ".dcm", ".czi"}
MPP_HINT = "give it in an mpp column of a mapping CSV (--slide-map), or for every such slide with --mpp"


@dataclass
class SlideFile:
    """A slide found in the folder, before it is matched to a patient."""

    path: Path  # the file OpenSlide opens (for a DICOM series: one file of its folder)
    shown: str  # its place in the folder, as error lines name it
    name: str  # the name matched against the pattern (a DICOM series: its folder's name)
    stem: str


@dataclass
class SlideRecord:
    id: str
    patient_id: str
    source: Path  # the file (or DICOM folder) in the lab's folder
    opened: Path  # the file OpenSlide opens
    width: int
    height: int
    levels: int
    mpp: float
    label: int | None = None
    day: float | None = None
    mask_source: Path | None = None
    mask_mpp: float | None = None


def find_slide_files(folder: Path, skip: Path | None = None) -> Iterator[SlideFile]:
    """Files under ``folder`` that may be slides, in name order. The ``.dcm`` files of one folder are one DICOM-WSI series."""
    dicom_dirs: set[Path] = set()
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or (skip is not None and skip in path.parents):
            continue
        if path.suffix.lower() == ".dcm":
            if path.parent not in dicom_dirs:
                dicom_dirs.add(path.parent)
                yield SlideFile(path, str(path.parent.relative_to(folder)), path.parent.name, path.parent.name)
            continue
        if path.suffix.lower() in SLIDE_EXTENSIONS or openslide.OpenSlide.detect_format(str(path)) is not None:
            stem = path.name[: -len(".ome.tiff")] if path.name.lower().endswith(".ome.tiff") else path.stem
            yield SlideFile(path, str(path.relative_to(folder)), path.name, stem)


@dataclass
class SlideGeometry:
    width: int
    height: int
    levels: int
    mpp: float | None  # None: the file records none, or an implausible one (see ``warning``)
    warning: str | None = None


def read_geometry(path: Path) -> SlideGeometry | str:
    """Size, levels and level-0 µm/px from OpenSlide, after reading one small region (a file can open and then fail on
    read); or OpenSlide's reason it cannot."""
    try:
        slide = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as exc:
        return f"OpenSlide cannot open it: {exc}"
    try:
        width, height = slide.dimensions
        size = (min(64, width), min(64, height))
        slide.read_region(((width - size[0]) // 2, (height - size[1]) // 2), 0, size)
        mpps = [slide.properties.get(k) for k in (openslide.PROPERTY_NAME_MPP_X, openslide.PROPERTY_NAME_MPP_Y)]
        levels = slide.level_count
    except (openslide.OpenSlideError, OSError) as exc:
        return f"OpenSlide opens it but cannot read it: {exc}"
    finally:
        slide.close()
    try:
        values = [float(m) for m in mpps if m]
    except ValueError:
        values = []
    if not values:
        return SlideGeometry(width, height, levels, None)
    mpp = values[0]
    if not math.isfinite(mpp) or not 0 < mpp <= MAX_PLAUSIBLE_MPP:
        return SlideGeometry(width, height, levels, None, f"its recorded {mpp:.4g} µm/px is not a microscope's (above {MAX_PLAUSIBLE_MPP:g} µm/px; "
                             "a TIFF written without a resolution says 72 dpi, 352.78 µm/px), so its µm/px is unknown")
    return SlideGeometry(width, height, levels, mpp)


@dataclass
class SlideMapRow:
    slide_id: str
    patient_id: str
    mpp: float | None
    label: int | None
    day: float | None
    row: int


def read_slide_map(path: Path, problems: list[Problem]) -> dict[str, SlideMapRow]:
    """A mapping CSV: ``file`` (relative to the slide folder), ``slide_id``, ``patient_id``, optional ``mpp``, ``label``, ``day``."""
    table = read_csv(path, ["file", "slide_id", "patient_id"])
    out: dict[str, SlideMapRow] = {}
    for i, cells in enumerate(table.rows):
        row, ok = i + 2, True
        for column in ("slide_id", "patient_id"):
            problem = id_problem(cells[column])
            if problem:
                problems.append(Problem(table.name, row, column, problem))
                ok = False
        values: dict[str, float | int | None] = {}
        for column, parse in (("mpp", parse_number), ("label", parse_label), ("day", parse_day)):
            text = cells.get(column, "")
            try:
                values[column] = parse(text) if text else None
            except ValueError as exc:
                problems.append(Problem(table.name, row, column, str(exc)))
                ok = False
        mpp = values["mpp"]
        if mpp is not None and not 0 < mpp <= MAX_PLAUSIBLE_MPP:
            problems.append(Problem(table.name, row, "mpp", f"{mpp:g} µm/px is not a microscope's resolution (0 to {MAX_PLAUSIBLE_MPP:g} µm/px)"))
            ok = False
        if ok:
            label, day = values["label"], values["day"]
            out[cells["file"]] = SlideMapRow(cells["slide_id"], cells["patient_id"], float(mpp) if mpp is not None else None,
                                             int(label) if label is not None else None, float(day) if day is not None else None, row)
    return out


@dataclass
class SlideScan:
    records: list[SlideRecord]
    problems: list[Problem]
    warnings: list[str]


def scan_slides(folder: Path, known_patients: set[str], pattern: str, slide_map: Path | None = None, default_mpp: float | None = None,
                masks: Path | None = None) -> SlideScan:
    """Every slide of ``folder`` read with OpenSlide and matched to a known patient; one problem per file that cannot be."""
    problems: list[Problem] = []
    warnings: list[str] = []
    mapping = read_slide_map(slide_map, problems) if slide_map else None
    files = list(find_slide_files(folder, skip=masks.resolve() if masks else None))
    records: list[SlideRecord] = []
    seen: dict[str, str] = {}
    for found in tqdm(files, desc="slides", unit="slide", disable=None):
        mapped = mapping.get(found.shown) if mapping is not None else None
        if mapping is not None:
            if mapped is None:
                warnings.append(f"{found.shown}: not in {slide_map.name if slide_map else ''}; left out")
                continue
            slide_id, patient, mpp_given = mapped.slide_id, mapped.patient_id, mapped.mpp
        else:
            named = match_name(pattern, found.name, found.stem)
            if isinstance(named, str):
                problems.append(Problem(found.shown, None, None, named))
                continue
            slide_id, patient, mpp_given = named.id, named.patient, None
        if patient not in known_patients:
            problems.append(Problem(found.shown, None, None, f"unknown patient {patient!r}: not in the patients file or the workspace"))
            continue
        if slide_id in seen:
            problems.append(Problem(found.shown, None, None, f"slide id {slide_id!r} is also the id of {seen[slide_id]}"))
            continue
        geometry = read_geometry(found.path)
        if isinstance(geometry, str):
            problems.append(Problem(found.shown, None, None, geometry))
            continue
        if geometry.warning and mpp_given is None:
            warnings.append(f"{found.shown}: {geometry.warning}")
        mpp = mpp_given or geometry.mpp or default_mpp
        if mpp is None:
            why = "its recorded resolution is implausible" if geometry.warning else "the file records no µm/px"
            problems.append(Problem(found.shown, None, None, f"no µm/px: {why}; {MPP_HINT}"))
            continue
        seen[slide_id] = found.shown
        source = found.path.parent if found.path.suffix.lower() == ".dcm" else found.path
        records.append(SlideRecord(slide_id, patient, source, found.path, geometry.width, geometry.height, geometry.levels, mpp,
                                   mapped.label if mapped else None, mapped.day if mapped else None))
    if mapping is not None:
        listed = {f.shown for f in files}
        problems += [Problem(slide_map.name if slide_map else "", m.row, "file", f"{file!r} is not a slide file in {folder}")
                     for file, m in mapping.items() if file not in listed]
    if masks is not None:
        _attach_masks(records, masks, problems, warnings)
    return SlideScan(records, problems, warnings)


def _attach_masks(records: list[SlideRecord], masks: Path, problems: list[Problem], warnings: list[str]) -> None:
    """Ground-truth label images named by slide id (any image format); their µm/px follows from the slide's width."""
    by_id = {r.id: r for r in records}
    for path in sorted(p for p in masks.rglob("*") if p.is_file() and not p.name.startswith(".")):
        record = by_id.get(path.stem)
        if record is None:
            warnings.append(f"{path.name}: a mask for no imported slide; left out")
            continue
        try:
            with Image.open(path) as image:
                mask_width = image.size[0]
        except OSError as exc:
            problems.append(Problem(path.name, None, None, f"the mask cannot be read as an image: {exc}"))
            continue
        record.mask_source = path
        record.mask_mpp = record.mpp * record.width / mask_width
