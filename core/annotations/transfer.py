"""Annotation files in and out of a workspace: a slide's import (all or nothing), a slide's or a cohort's export."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.annotations.asap import ASAPFileError, read_asap_xml
from core.annotations.parsed import ParsedFile, gc_paused
from core.annotations.qupath import GeoJSONFileError, read_geojson, write_geojson
from core.errors import PathReviewError
from core.store.annotations import RegionVersion, add_regions, current_regions, slides_with_regions
from core.store.cases import slide_record
from core.workspace import Workspace

MAX_FILE_BYTES = 256 * 1024 * 1024
GEOJSON_SUFFIXES = (".geojson", ".json")
XML_SUFFIXES = (".xml",)
MESSAGES_SHOWN = 20  # refused features named in one error; the count says how many more


class AnnotationImportError(PathReviewError):
    """The file, or some of its features, cannot be imported; nothing was written. ``problems`` has one line each."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)


@dataclass(frozen=True)
class ImportResult:
    imported: list[RegionVersion]
    skipped: list[str]  # refused features, when the import was asked to skip them
    repaired: list[str]
    total: int


def read_annotation_file(name: str, data: bytes, width: int, height: int, workspace: Workspace) -> ParsedFile:
    """Parse by the file's suffix: .geojson/.json as QuPath GeoJSON, .xml as ASAP XML."""
    suffix = Path(name).suffix.lower()
    classes = workspace.config.annotation_classes
    try:
        if suffix in GEOJSON_SUFFIXES:
            return read_geojson(data, width, height, classes)
        if suffix in XML_SUFFIXES:
            return read_asap_xml(data, width, height, classes)
    except (GeoJSONFileError, ASAPFileError) as exc:
        raise AnnotationImportError(f"{name}: {exc}; nothing was imported") from None
    raise AnnotationImportError(f"{name}: unknown annotation format {suffix or '(no suffix)'!r}; use QuPath GeoJSON "
                                f"({', '.join(GEOJSON_SUFFIXES)}) or ASAP XML (.xml)")


def _listed(problems: list[str]) -> str:
    shown = "; ".join(problems[:MESSAGES_SHOWN])
    return shown + (f"; and {len(problems) - MESSAGES_SHOWN} more" if len(problems) > MESSAGES_SHOWN else "")


def import_annotations(workspace: Workspace, slide_id: str, name: str, data: bytes, user: str,
                       skip_invalid: bool = False) -> ImportResult:
    """Store every region of one file on ``slide_id`` as ``user``'s, in one transaction with their audit rows.

    A refused feature refuses the whole file (``AnnotationImportError`` naming each), unless ``skip_invalid``: then
    only the valid features are stored and the refused ones are reported in ``skipped``."""
    if len(data) > MAX_FILE_BYTES:
        raise AnnotationImportError(f"{name}: {len(data) / 2**20:.0f} MiB is over the {MAX_FILE_BYTES // 2**20} MiB limit "
                                    "for one annotation file; split it")
    with workspace.store.session() as s:
        slide = slide_record(s, slide_id)
        width, height = slide.width, slide.height
    parsed = read_annotation_file(name, data, width, height, workspace)
    if parsed.refused and not skip_invalid:
        raise AnnotationImportError(f"{name}: {len(parsed.refused)} of {parsed.total} features refused, nothing was imported "
                                    f"(skip them with --skip-invalid): {_listed(parsed.refused)}", parsed.refused)
    if not parsed.drafts:
        raise AnnotationImportError(f"{name}: no region to import ({parsed.total} features"
                                    + (f", all refused: {_listed(parsed.refused)}" if parsed.refused else "") + ")", parsed.refused)
    with gc_paused():
        imported = add_regions(workspace.store, slide_id, parsed.drafts, user)
    return ImportResult(imported, parsed.refused, parsed.repaired, parsed.total)


def export_slide(workspace: Workspace, slide_id: str) -> str:
    """The slide's current regions (every reviewer's) as QuPath GeoJSON."""
    with workspace.store.session() as s:
        slide_record(s, slide_id)
    return write_geojson(current_regions(workspace.store, slide_id), workspace.config.annotation_classes)


def _file_name(slide_id: str) -> str:
    """A slide id as a file name inside the zip: no folders, no leading dot."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", slide_id).lstrip(".") or "slide"


def export_cohort(workspace: Workspace) -> bytes:
    """A zip of ``<slide id>.geojson`` for every slide with current regions."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for slide_id in slides_with_regions(workspace.store):
            regions = current_regions(workspace.store, slide_id)
            if regions:
                archive.writestr(f"{_file_name(slide_id)}.geojson", write_geojson(regions, workspace.config.annotation_classes))
    return buffer.getvalue()
