"""Panels that fold away on the case page, so that its first screen holds the slide, the risk plot and the verdict:
each secondary panel (patch inspector, method comparison, what-if table, LIME settings) sits in a fold whose state is
part of the page's link (``open=inspector,whatif``). Other pages show the same panels unfolded.

A fold is a one-item accordion with the id ``{"type": "fold", "name": <name>}``; its ``active_item`` (the name when
open) is what the link writes (``assets/case_page.js``)."""

from __future__ import annotations

import dash_bootstrap_components as dbc

FOLDS = {"inspector": "Patch inspector", "comparison": "Method comparison against the ground truth", "whatif": "Edit visit (what-if)",
         "lime": "LIME settings"}
OPEN_KEY = "open"  # the link's key: the open folds, comma-separated


def fold_id(name: str) -> dict:
    return {"type": "fold", "name": name}


def fold(name: str, children, is_open: bool = True, className: str = "") -> dbc.Accordion:
    """``children`` under the fold's title (``FOLDS``); shown when ``is_open``."""
    return dbc.Accordion(dbc.AccordionItem(children, title=FOLDS[name], item_id=name), id=fold_id(name), always_open=True,
                         active_item=[name] if is_open else [], start_collapsed=not is_open, className=f"fold {className}".strip())


def open_folds(query: dict, problems: list[str]) -> set[str]:
    """The folds a link opens; a name that is not one is added to ``problems`` (the page names it)."""
    names = [n for n in query.get(OPEN_KEY, "").split(",") if n]
    unknown = [n for n in names if n not in FOLDS]
    if unknown:
        problems.append(f"panel {', '.join(repr(n[:20]) for n in unknown)} is not one of {', '.join(FOLDS)}")
    return {n for n in names if n in FOLDS}
