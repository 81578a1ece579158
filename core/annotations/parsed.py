"""What reading an annotation file gives: the regions that passed every rule, and a message per one that did not."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from shapely.geometry.base import BaseGeometry

from core.annotations.geometry import RegionRefused, check_geometries
from core.store.annotations import RegionDraft
from core.workspace import AnnotationClass


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off while a file's hundreds of thousands of coordinate lists are built: they hold no
    cycles, yet each collection walks them all, which made reading and storing 10,000 polygons several times slower.

    On the way out, what was made meanwhile goes straight to the oldest generation (``gc.freeze`` then
    ``gc.unfreeze``): otherwise the first young collections after the pause walk every surviving list once more, a
    tenth of a 10,000-polygon import. They are still collected, by the next full collection. (This app never keeps
    objects frozen, which ``gc.unfreeze`` would undo.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


@dataclass
class ParsedFile:
    total: int = 0  # features (QuPath) or annotations (ASAP) in the file
    drafts: list[RegionDraft] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one message per refused feature, naming it
    repaired: list[str] = field(default_factory=list)  # one note per repaired feature, naming it


@dataclass(frozen=True)
class _Pending:
    label: str
    geometry: object
    class_name: str
    object_type: str
    name: str
    comment: str
    index: int  # the feature's place in the file


class FileReader:
    """Collects one file's regions against a slide's size and the workspace's classes; ``finish`` checks every
    geometry at once and gives the ``ParsedFile``, messages in the file's order."""

    def __init__(self, width: int, height: int, classes: Sequence[AnnotationClass]) -> None:
        self.width, self.height = width, height
        self.classes = {c.name: c for c in classes}
        self.total = 0
        self._entries: list[_Pending | str] = []  # in file order: a feature to check, or why one was refused

    def class_name(self, name: str | None) -> str:
        if not name:
            raise RegionRefused(f"has no class; give it one of this workspace's classes: {', '.join(self.classes)}")
        if name not in self.classes:
            raise RegionRefused(f"class {name!r} is not one of this workspace's annotation classes ({', '.join(self.classes)}); "
                                "rename it, or add it to annotation_classes in workspace.toml")
        return name

    def add(self, label: str, geometry: object, class_name: str | None, object_type: str = "annotation", name: str = "",
            comment: str = "") -> None:
        """One feature; ``label`` names it in messages."""
        try:
            self._entries.append(_Pending(label, geometry, self.class_name(class_name), object_type, name, comment, len(self._entries)))
        except RegionRefused as exc:
            self.refuse(label, str(exc))

    def refuse(self, label: str, why: str) -> None:
        self._entries.append(f"{label}: {why}")

    def finish(self, parsed_geometries: Sequence[BaseGeometry] | None = None) -> ParsedFile:
        """``parsed_geometries``: GEOS's reading of every feature's geometry, in file order, when the caller has it."""
        pending = [e for e in self._entries if isinstance(e, _Pending)]
        ready = [parsed_geometries[p.index] for p in pending] if parsed_geometries is not None else None
        checked = iter(check_geometries([p.geometry for p in pending], self.width, self.height, ready))
        parsed = ParsedFile(total=self.total)
        for entry in self._entries:
            if isinstance(entry, str):
                parsed.refused.append(entry)
                continue
            result = next(checked)
            if isinstance(result, RegionRefused):
                parsed.refused.append(f"{entry.label}: {result}")
                continue
            if result.repair:
                parsed.repaired.append(f"{entry.label}: {result.repair}")
            parsed.drafts.append(RegionDraft(result.geometry, entry.class_name, entry.object_type, entry.name, entry.comment))
        return parsed
