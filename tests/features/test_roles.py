"""Event-type -> role mapping."""

from __future__ import annotations

import pandas as pd
import pytest

from features.roles import ROLES, RoleMap, RoleMapError, default_role_map

SIMULATOR_TYPES = {
    "page_view": "visit",
    "signup": "signup",
    "email_click": "engagement",
    "app_open": "engagement",
    "login": "engagement",
    "pricing_view": "intent",
    "add_to_cart": "intent",
    "trial_start": "intent",
    "purchase": "purchase",
    "refund": "refund",
    "subscription_start": "subscription_start",
    "subscription_cancel": "subscription_cancel",
    "support_ticket": "support",
    "nps_response": "feedback",
    "referral": "referral",
    "review": "review",
}


def test_default_map_covers_the_simulator_types_and_every_role():
    roles = default_role_map()
    assert {name: roles.role_of(name) for name in SIMULATOR_TYPES} == SIMULATOR_TYPES
    assert set(roles.mapping.values()) == set(ROLES)
    assert roles.role_of("unsubscribe") == "unmapped"  # deliberate, see default_roles.yaml


def test_roles_for_is_case_and_space_insensitive_and_keeps_missing():
    types = pd.Series(["Purchase ", "ORDER", "gizmo", None, "purchase"])
    roles = default_role_map().roles_for(types)
    expected = ["purchase", "purchase", "unmapped", "unmapped", "purchase"]
    assert list(roles.fillna("unmapped")) == expected
    assert roles.isna().tolist() == [False, False, False, True, False]
    assert list(roles.categories) == [*ROLES, "unmapped"]


def test_overrides_add_and_replace():
    roles = default_role_map().with_overrides({"Gizmo": "purchase", "login": "visit"})
    assert roles.role_of("gizmo") == "purchase" and roles.role_of("login") == "visit"
    assert default_role_map().role_of("login") == "engagement"  # the default is untouched
    with pytest.raises(RoleMapError, match="unknown role 'buy' for type 'x'"):
        roles.with_overrides({"x": "buy"})


def test_from_yaml_names_file_key_and_value(tmp_path):
    good = tmp_path / "roles.yaml"
    good.write_text("mapping:\n  order: purchase\n")
    assert RoleMap.from_yaml(good).mapping == {"order": "purchase"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("mapping:\n  order: purchse\n")
    with pytest.raises(RoleMapError, match=r"bad\.yaml: unknown role 'purchse' for type 'order'"):
        RoleMap.from_yaml(bad)
    extra = tmp_path / "extra.yaml"
    extra.write_text("mapping: {}\nroles: {}\n")
    with pytest.raises(RoleMapError, match=r"extra\.yaml: unknown key 'roles'"):
        RoleMap.from_yaml(extra)


def test_conflicting_spellings_are_rejected():
    with pytest.raises(ValueError, match="mapped to both"):
        RoleMap.model_validate({"mapping": {"Order": "purchase", "order ": "refund"}})
