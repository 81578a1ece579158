"""Long work: slide heatmaps, CAM and attention maps, cohort SHAP and report LIME, as jobs.

``kinds`` holds one function per kind of job (idempotent, keyed by the cache's content hashes, reporting progress,
writing its result atomically to the workspace cache); ``state`` the jobs table every process sees; ``runner`` runs
one job wherever it is (in this process, a Dash background callback, a Celery task) with bounded retries;
``celery_app`` the Celery application and its one task; ``dispatch`` sends jobs to Celery or to a local thread;
``cli`` the ``precompute`` and ``worker`` commands.
"""

WHAT = ("heatmaps", "cams", "shap", "lime")  # what a precompute can cover, in the order it is queued
