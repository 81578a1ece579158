"""TOML files validated by pydantic schemas: one clear error per problem, atomic writes."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TypeVar

import tomli_w
from pydantic import BaseModel, ValidationError

Schema = TypeVar("Schema", bound=BaseModel)


def read_toml(path: Path, schema: type[Schema], error: type[Exception]) -> Schema:
    """Parse and validate ``path``; raise ``error`` naming the file and every bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid TOML: {exc}") from exc
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise error(f"{path} is invalid: {problems}") from exc


def write_toml(path: Path, value: BaseModel) -> Path:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(tomli_w.dumps(value.model_dump(exclude_none=True)), encoding="utf-8")
    os.replace(tmp, path)
    return path
