"""Explanations stored in the workspace cache (``cache/explanations/<kind>/<key>.<ext>``), keyed by content hashes.

A key hashes everything the result depends on (model weights, the input's content, the explainer's settings and
this file format), so a changed input is a new key and a stored file is never stale. Files are written to a
temporary name and renamed into place: a reader sees a complete file or none, whoever wrote it (the app, a
background process or a Celery worker on another host sharing the workspace)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

EXPLANATIONS_DIR = "explanations"


def content_key(*parts: object) -> str:
    """A 32-hex-digit hash of JSON-able parts (bytes and arrays are hashed by content)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"array:{part.dtype}:{part.shape}:".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            digest.update(b"bytes:" + part)
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def explanation_path(cache_dir: Path, kind: str, key: str, suffix: str) -> Path:
    return cache_dir / EXPLANATIONS_DIR / kind / f"{key}{suffix}"


def write_atomic(path: Path, write: Callable[[IO[bytes]], object], mode: int = 0o666) -> Path:
    """Write through ``write(file)`` (its return value is ignored) to a unique temporary name beside ``path``, flush it to disk, then rename.
    ``mode`` (less the umask) applies from creation, so a secret is never readable by others, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_arrays(path: Path, **arrays: np.ndarray) -> Path:
    return write_atomic(path, lambda fh: np.savez(fh, allow_pickle=False, **arrays))  # load_arrays never unpickles either


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a stored result, or None when there is none (or it cannot be read: it is then recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError):
        return None


def save_json(path: Path, content: dict) -> Path:
    return write_atomic(path, lambda fh: fh.write(json.dumps(content, sort_keys=True).encode()))


def load_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
