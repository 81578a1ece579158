"""What the components' callbacks share: telling a real click on pattern-matched buttons from their re-rendering, and
setting up the process a background callback runs in."""

from __future__ import annotations

import torch
from dash import callback_context

from core.workspace import Workspace, open_workspace


def ctx_triggered_click(clicks: list | None) -> bool:
    """Pattern-matched buttons re-render with n_clicks 0; only a real click counts."""
    return bool(callback_context.triggered) and any(c for c in clicks or [])


def forked_job_workspace(workspace: Workspace) -> Workspace:
    """Set up a background job's process (forked from the server): its own workspace handle, so no lock or
    connection held by a server thread at fork time is inherited, and one torch thread, because the OpenMP
    thread pool of a parent that already ran torch does not survive fork (work in it can hang)."""
    torch.set_num_threads(1)
    return open_workspace(workspace.root, workspace.store.url)
