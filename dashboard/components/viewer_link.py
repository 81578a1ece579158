"""The slide viewer's part of a deep link: position, layer, heatmap style and the tiles' brightness, contrast and gamma, read from a URL query and checked.

A value that cannot be used is not dropped silently: each one becomes a line the page shows, naming the value and
what was shown instead. The names are those the case page writes (``assets/case_page.js``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.heatmaps.overlay import COLORMAPS
from core.heatmaps.reconstruct import NORMALISATIONS
from core.slides.adjust import ADJUSTMENT_NAMES, DisplayAdjustment
from dashboard.components.image_adjust import link_adjustment

OVERLAPS_PERCENT = (0, 50, 75)  # the patch overlaps the viewer offers, as the link writes them
DEFAULT_STYLE = {"cmap": "Viridis", "thr": 0.5, "norm": "raw", "opacity": 0.5}
LINK_KEYS = ("z", "lat", "lng", "layer", "overlap", "cmap", "thr", "norm", "opacity", *ADJUSTMENT_NAMES)


@dataclass
class ViewerLink:
    """The checked values (only those the link gave and that can be used) and a line per value that could not."""

    values: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    @property
    def adjustment(self) -> DisplayAdjustment:
        """The base tiles' brightness, contrast and gamma (1, 1, 1 unless the link names others)."""
        value = self.values.get("adjustment")
        return value if isinstance(value, DisplayAdjustment) else DisplayAdjustment()


def _fraction(query: dict, key: str, what: str, link: ViewerLink) -> None:
    if key not in query:
        return
    try:
        value = float(query[key])
    except ValueError:
        link.problems.append(f"{what} {query[key][:20]!r} is not a number")
        return
    if not 0.0 <= value <= 1.0:
        link.problems.append(f"{what} {value:g} is outside 0–1")
        return
    link.values[key] = value


def unknown_keys_problem(query: dict, known: tuple[str, ...] | set[str]) -> str | None:
    """The line naming the values of ``query`` a link cannot hold (a misspelt name is not silently ignored)."""
    unknown = [k for k in query if k not in known]
    if not unknown:
        return None
    return f"{', '.join(repr(k[:20]) for k in unknown[:5])} {'is not a value' if len(unknown) == 1 else 'are not values'} this link can hold"


def parse_viewer_link(query: dict, layers: list[str]) -> ViewerLink:
    """The viewer's values of a link's ``query``; ``layers``: the layers this slide offers. A name that is not one of
    ``LINK_KEYS`` is named too."""
    link = ViewerLink()
    if problem := unknown_keys_problem(query, LINK_KEYS):
        link.problems.append(problem)
    if "layer" in query:
        if query["layer"] in layers:
            link.values["layer"] = query["layer"]
        else:
            link.problems.append(f"layer {query['layer'][:40]!r} is not offered for this slide")
    if "overlap" in query:
        try:
            overlap = int(query["overlap"])
        except ValueError:
            overlap = -1
        if overlap in OVERLAPS_PERCENT:
            link.values["overlap"] = overlap / 100
        else:
            link.problems.append(f"patch overlap {query['overlap'][:20]!r} is not one of {', '.join(map(str, OVERLAPS_PERCENT))} %")
    if "cmap" in query:
        if query["cmap"] in COLORMAPS:
            link.values["cmap"] = query["cmap"]
        else:
            link.problems.append(f"colour map {query['cmap'][:40]!r} is not one of {', '.join(COLORMAPS)}")
    if "norm" in query:
        if query["norm"] in NORMALISATIONS:
            link.values["norm"] = query["norm"]
        else:
            link.problems.append(f"normalisation {query['norm'][:40]!r} is not one of {', '.join(NORMALISATIONS)}")
    _fraction(query, "thr", "threshold", link)
    _fraction(query, "opacity", "opacity", link)
    link.values["adjustment"] = link_adjustment(query, link.problems)
    position = [k for k in ("z", "lat", "lng") if k in query]
    if position:
        try:
            link.values.update(z=int(query["z"]), lat=float(query["lat"]), lng=float(query["lng"]))
        except (KeyError, ValueError):
            link.problems.append("the position (z, lat, lng) is incomplete or not numbers")
    return link


def position_problem() -> str:
    return "the position (z, lat, lng) lies outside this slide or its zoom levels"
