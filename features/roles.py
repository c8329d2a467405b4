"""Event roles: the lifecycle meaning of a data set's own event types (DESIGN.md section 3).

A :class:`RoleMap` maps event-type names (matched case-insensitively, whitespace stripped) to
one of :data:`ROLES`. Types without a mapping get the role ``"unmapped"``; they are kept and
reported, never dropped. Nothing is read at import time: :func:`default_role_map` reads the
packaged ``default_roles.yaml`` when called.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from os import PathLike
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

Role = Literal[
    "visit",
    "signup",
    "engagement",
    "intent",
    "purchase",
    "refund",
    "subscription_start",
    "subscription_cancel",
    "support",
    "feedback",
    "referral",
    "review",
]
ROLES: tuple[str, ...] = get_args(Role)
UNMAPPED = "unmapped"
ROLE_DTYPE = pd.CategoricalDtype([*ROLES, UNMAPPED])
DEFAULT_ROLES_FILE = "default_roles.yaml"


class RoleMapError(ValueError):
    """A role mapping (file or overrides) is invalid; the message names the source and key."""


def normalise_event_type(name: str) -> str:
    """Return the lookup form of an event-type name: whitespace stripped, lower case."""
    return name.strip().lower()


class RoleMap(BaseModel):
    """Mapping from event-type names to roles.

    Keys are stored normalised (see :func:`normalise_event_type`); two spellings of one name
    mapped to different roles are rejected.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mapping: dict[str, Role]

    @field_validator("mapping")
    @classmethod
    def _normalise_keys(cls, mapping: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, role in mapping.items():
            name = normalise_event_type(key)
            if not name:
                raise ValueError("event-type names must not be empty")
            if out.get(name, role) != role:
                raise ValueError(f"event type {key!r} is mapped to both {out[name]!r} and {role!r}")
            out[name] = role
        return out

    @classmethod
    def from_yaml(cls, path: str | PathLike[str]) -> RoleMap:
        """Read a YAML file of the form ``mapping: {event_type: role, ...}``.

        Raises
        ------
        RoleMapError
            Invalid YAML, unknown keys or unknown roles; the message names the file and the
            offending key and value.
        """
        with open(path, encoding="utf-8") as handle:
            return _parse_yaml(handle.read(), f"roles file {path}")

    def with_overrides(self, overrides: Mapping[str, str]) -> RoleMap:
        """Return a new map with ``overrides`` (event type -> role) added or replacing entries."""
        extra = _validate({"mapping": dict(overrides)}, "role overrides")
        return RoleMap(mapping={**self.mapping, **extra.mapping})

    def role_of(self, event_type: str) -> str:
        """Role of one event type, or ``"unmapped"``."""
        return self.mapping.get(normalise_event_type(event_type), UNMAPPED)

    def roles_for(self, event_types: pd.Series) -> pd.Categorical:
        """Vectorised roles for a column of event types.

        Parameters
        ----------
        event_types : pd.Series
            Event-type names; missing values give a missing role.

        Returns
        -------
        pd.Categorical
            Categories ``ROLES + ("unmapped",)``, same length and order as the input.
        """
        codes, uniques = pd.factorize(event_types, use_na_sentinel=True)
        categories = ROLE_DTYPE.categories
        # a loop over the distinct types only (a handful), not over rows
        lookup = [categories.get_loc(self.role_of(str(name))) for name in uniques]
        with_na = np.array([*lookup, -1], dtype=np.int16)  # code -1 picks the trailing -1
        return pd.Categorical.from_codes(with_na[codes], dtype=ROLE_DTYPE)


def default_role_map() -> RoleMap:
    """The packaged default mapping (``features/default_roles.yaml``), read on each call."""
    resource = importlib.resources.files("features").joinpath(DEFAULT_ROLES_FILE)
    return _parse_yaml(resource.read_text(encoding="utf-8"), f"roles file {DEFAULT_ROLES_FILE}")


def _parse_yaml(text: str, source: str) -> RoleMap:
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoleMapError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        kind = type(content).__name__
        raise RoleMapError(f"{source}: expected a mapping with key 'mapping', got {kind}")
    return _validate(content, source)


def _validate(content: dict[str, Any], source: str) -> RoleMap:
    try:
        return RoleMap.model_validate(content)
    except ValidationError as exc:
        lines = [_describe_error(err) for err in exc.errors()]
        raise RoleMapError(f"{source}: " + "; ".join(lines)) from None


def _describe_error(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "literal_error" and len(loc) == 2:
        expected = ", ".join(ROLES)
        return f"unknown role {err['input']!r} for type {loc[1]!r} (expected one of: {expected})"
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc[0]!r} (expected only 'mapping')"
    if err["type"] == "missing":
        return f"missing key {loc[0]!r}"
    where = ".".join(str(part) for part in loc)
    return f"{where}: {err['msg']} (got {err['input']!r})"
