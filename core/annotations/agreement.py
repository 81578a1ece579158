"""Reviewers' tumour regions compared: inter-observer Dice and a consensus region, computed on the polygons themselves.

A reviewer's tumour region is the union of their regions whose class is marked ``tumour`` in the workspace (tumour
pattern 3/4/5 by default), so overlaps count once. Dice between two reviewers is 2|A ∩ B| / (|A| + |B|) on polygon
areas (Dice 1945; exact, no grid); it is undefined (NaN) when neither marked tumour. The consensus is either:

- ``union``: everywhere at least one reviewer marked tumour;
- ``majority``: everywhere more than half of the reviewers who marked tumour on the slide did, i.e. the union of the
  intersections of every group of ⌊n/2⌋ + 1 of them. With two reviewers that is their intersection; with one, their
  region.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import shapely
from shapely.geometry.base import BaseGeometry

from core.annotations.statistics import as_geometry
from core.store.annotations import RegionVersion
from core.workspace import AnnotationClass

CONSENSUS_RULES = ("union", "majority")
MAX_MAJORITY_REVIEWERS = 12  # groups of ⌊n/2⌋+1 grow combinatorially; 12 reviewers give 924 intersections


def tumour_class_names(classes: Sequence[AnnotationClass]) -> set[str]:
    return {c.name for c in classes if c.tumour}


def tumour_by_reviewer(regions: Sequence[RegionVersion], classes: Sequence[AnnotationClass]) -> dict[str, BaseGeometry]:
    """Each author's tumour regions as one geometry, for authors with at least one tumour region."""
    tumour = tumour_class_names(classes)
    parts: dict[str, list[BaseGeometry]] = {}
    for region in regions:
        if region.class_name in tumour and region.geometry["type"] in ("Polygon", "MultiPolygon"):
            parts.setdefault(region.author or region.user, []).append(as_geometry(region.geometry))
    return {author: shapely.union_all(geoms) for author, geoms in sorted(parts.items())}


def dice(a: BaseGeometry, b: BaseGeometry) -> float:
    total = a.area + b.area
    return 2 * shapely.intersection(a, b).area / total if total > 0 else math.nan


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    dice: float


def pairwise_dice(by_reviewer: dict[str, BaseGeometry]) -> list[PairAgreement]:
    return [PairAgreement(a, b, dice(by_reviewer[a], by_reviewer[b])) for a, b in itertools.combinations(sorted(by_reviewer), 2)]


def consensus(by_reviewer: dict[str, BaseGeometry], rule: str) -> BaseGeometry:
    """The consensus tumour region by ``rule`` (``union`` or ``majority``; see the module)."""
    if rule not in CONSENSUS_RULES:
        raise ValueError(f"consensus rule must be one of {CONSENSUS_RULES}")
    geoms = list(by_reviewer.values())
    if not geoms:
        return shapely.Polygon()
    if rule == "union":
        return shapely.union_all(geoms)
    if len(geoms) > MAX_MAJORITY_REVIEWERS:
        raise ValueError(f"a majority consensus is computed for at most {MAX_MAJORITY_REVIEWERS} reviewers")
    need = len(geoms) // 2 + 1
    return shapely.union_all([shapely.intersection_all(group) for group in itertools.combinations(geoms, need)])
