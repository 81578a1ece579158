"""Set-up of a job's process when it is forked from the app server (a Dash background callback on the one-machine setup)."""

from __future__ import annotations

import torch

from core.workspace import Workspace, open_workspace


def forked_job_workspace(workspace: Workspace) -> Workspace:
    """Its own workspace handle, so no lock or connection held by a server thread at fork time is inherited, and
    one torch thread, because the OpenMP thread pool of a parent that already ran torch does not survive fork (work
    in it can hang)."""
    torch.set_num_threads(1)
    return open_workspace(workspace.root, workspace.store.url)
