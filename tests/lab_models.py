"""A lab's own architecture, referenced from a manifest as ``tests.lab_models:tiny_visit_net``."""

from core.models.sequence import VisitSequenceNet


def tiny_visit_net(**params) -> VisitSequenceNet:
    return VisitSequenceNet(**params)
