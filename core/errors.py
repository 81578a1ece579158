"""Project exceptions: each carries a message a pathologist or lab admin can act on."""


class DashboardError(Exception):
    """Base class for errors a user can cause and fix."""


class WorkspaceError(DashboardError):
    """The workspace folder or its ``workspace.toml`` is missing or invalid."""


class ModelLoadError(DashboardError):
    """A model manifest or its weights cannot be trusted or loaded."""


class NotFoundError(DashboardError):
    """An id (patient, slide, model) that the case store does not hold."""
