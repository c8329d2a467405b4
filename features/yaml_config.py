"""Load a pydantic config from YAML with errors that name the file, the field and the value."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(cls: type[M], path: str | Path, text: str | None = None, **overrides) -> M:
    """``cls(**yaml, **overrides)``; raises ValueError naming ``path`` and each bad field."""
    raw = yaml.safe_load(Path(path).read_text() if text is None else text) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    try:
        return cls(**{**raw, **overrides})
    except ValidationError as err:
        raise ValueError(f"{path}: invalid {cls.__name__}: {describe(err)}") from None


def describe(err: ValidationError) -> str:
    """One line per problem: ``field: message (got value)``."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']} (got {e.get('input')!r})"
        for e in err.errors()
    )
