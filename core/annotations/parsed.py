"""What reading an annotation file gives: the regions that passed every rule, and a message per one that did not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from core.annotations.geometry import RegionRefused, check_geometry
from core.store.annotations import RegionDraft
from core.workspace import AnnotationClass


@dataclass
class ParsedFile:
    total: int = 0  # features (QuPath) or annotations (ASAP) in the file
    drafts: list[RegionDraft] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one message per refused feature, naming it
    repaired: list[str] = field(default_factory=list)  # one note per repaired feature, naming it


class FileReader:
    """Collects one file's regions against a slide's size and the workspace's classes."""

    def __init__(self, width: int, height: int, classes: Sequence[AnnotationClass]) -> None:
        self.width, self.height = width, height
        self.classes = {c.name: c for c in classes}
        self.parsed = ParsedFile()

    def class_name(self, name: str | None) -> str:
        if not name:
            raise RegionRefused(f"has no class; give it one of this workspace's classes: {', '.join(self.classes)}")
        if name not in self.classes:
            raise RegionRefused(f"class {name!r} is not one of this workspace's annotation classes ({', '.join(self.classes)}); "
                                "rename it, or add it to annotation_classes in workspace.toml")
        return name

    def add(self, label: str, geometry: object, class_name: str | None, object_type: str = "annotation", name: str = "",
            comment: str = "") -> None:
        """Check one feature; keep it, or record why it was refused. ``label`` names it in messages."""
        try:
            cls = self.class_name(class_name)
            checked = check_geometry(geometry, self.width, self.height)
        except RegionRefused as exc:
            self.parsed.refused.append(f"{label}: {exc}")
            return
        if checked.repair:
            self.parsed.repaired.append(f"{label}: {checked.repair}")
        self.parsed.drafts.append(RegionDraft(checked.geometry, cls, object_type, name, comment))

    def refuse(self, label: str, why: str) -> None:
        self.parsed.refused.append(f"{label}: {why}")
