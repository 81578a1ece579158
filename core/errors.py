"""Project exceptions: each carries a message a pathologist or lab admin can act on."""


class PathReviewError(Exception):
    """Base class for errors a user can cause and fix."""


class WorkspaceError(PathReviewError):
    """The workspace folder or its ``workspace.toml`` is missing or invalid."""


class ModelLoadError(PathReviewError):
    """A model manifest or its weights cannot be trusted or loaded."""


class NotFoundError(PathReviewError):
    """An id (patient, slide, model) that the case store does not hold."""


class AuditUnavailable(PathReviewError):
    """The audit trail cannot be written (the database is locked past its bound, the disk is full): the action it would
    record is not done, and the user is asked to try again."""
