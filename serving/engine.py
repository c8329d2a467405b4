"""Decisions from feature rows: stage, churn risk with reasons, offers and the chosen one.

Pure and fast: numpy arrays in, plain dicts out (the response models' shape), no pandas per
request except when reasons are asked for. The offer policy (DESIGN sections 6 and 8): an offer
is eligible when the customer's stage is in its ``eligible_stages``, the customer does not own
its product (``exclude_if_owned``), it fits the request's channel, its cooldown passed, the
customer's contact cap is not reached and the logged data support it (the uplift model knows
customers like this one got it); the greedy choice is the eligible offer with the highest
positive ``uplift x value - cost``, else no offer; with probability ``exploration`` the choice
is instead uniform over the eligible offers and no offer, and every decision carries the
probability of the action taken.
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.online_vectors import OWNED, parse_owned
from features.registry import REGISTRY
from features.stages import assign_stages
from serving.bundle import NAMES as MODELS
from serving.bundle import ModelBundle
from serving.config import PolicyConfig
from serving.inputs import FeatureRows, InputPlan
from serving.ledger import Decision
from serving.scoring import fast_model
from training.policy import CONTROL, epsilon_greedy


@dataclass(frozen=True)
class Scores:
    """Model outputs for n rows."""

    churn: np.ndarray  # (n,)
    stage_proba: np.ndarray  # (n, stages)
    stage: np.ndarray  # (n,) current stage, object
    uplift: np.ndarray  # (n, offers), NaN = unknown
    supported: np.ndarray  # (n, offers) bool

    def take(self, idx: np.ndarray) -> Scores:
        """The scores of rows ``idx`` (what ``FeatureRows.take(idx)`` would score)."""
        return Scores(*(np.asarray(v)[idx] for v in vars(self).values()))


@dataclass(frozen=True)
class Contacts:
    """From the ledger: sends in the cap window ``(n,)``, days since each offer ``(n, offers)``."""

    sends: np.ndarray
    days_since: np.ndarray


class Catalog:
    """The offers the policy may choose, as arrays (only those the uplift model scores)."""

    def __init__(self, offers: pd.DataFrame, scored: list[str]) -> None:
        known = offers[offers["offer_id"].astype("str").isin(scored)].reset_index(drop=True)
        self.ids = list(known["offer_id"].astype("str"))
        self.kind = list(known["kind"].astype("str"))
        self.value = known["value"].to_numpy(float)
        self.cost = known["cost"].to_numpy(float)
        self.cooldown = known["cooldown_days"].fillna(0).to_numpy(float)
        self.channel = [None if pd.isna(c) else str(c) for c in known["channel"]]
        self.stages = [_stage_set(s) for s in known["eligible_stages"]]
        self.exclusive = [
            None if pd.isna(f) or not f or pd.isna(p) else str(p)
            for f, p in zip(known["exclude_if_owned"], known["product"], strict=True)
        ]
        self.model_column = np.array([scored.index(i) for i in self.ids], dtype=np.intp)
        self._stage_masks: dict[str, np.ndarray] = {}

    def stage_fails(self, stage: np.ndarray) -> np.ndarray:
        """``(n, offers)``: the row's stage is not among the offer's eligible stages."""
        masks = self._stage_masks
        for s in set(stage.tolist()) - masks.keys():
            masks[s] = np.array([bool(e) and s not in e for e in self.stages], bool)
        return np.array([masks[s] for s in stage], bool).reshape(len(stage), len(self.ids))

    def owned_fails(self, owned: np.ndarray | None, n: int) -> np.ndarray:
        """``(n, offers)``: the customer already owns the offer's (exclusive) product."""
        out = np.zeros((n, len(self.ids)), bool)
        if owned is None or not any(self.exclusive):
            return out
        sets = [parse_owned(v) for v in owned]
        for j, product in enumerate(self.exclusive):
            if product is not None:
                out[:, j] = [product in s for s in sets]
        return out


class DecisionEngine:
    """Scores and decides for feature rows with one loaded :class:`ModelBundle`."""

    def __init__(
        self, bundle: ModelBundle, offers: pd.DataFrame, policy: PolicyConfig, threads: int = 1,
        parallel_rows: int = 256,
    ) -> None:  # fmt: skip
        self.bundle, self.policy = bundle, policy
        self.catalog = Catalog(offers, [str(k) for k in bundle.offers.offers_])
        self.arms = [CONTROL, *self.catalog.ids]
        self.stages = [str(c) for c in bundle.stage.classes_]
        self.versions = bundle.versions
        self._versions_json = json.dumps(self.versions, sort_keys=True)
        self._plans: dict[tuple, InputPlan] = {}
        signatures = [_input_signature(getattr(bundle, n)) for n in MODELS]
        self._inputs = {n: signatures.index(s) for n, s in zip(MODELS, signatures, strict=True)}
        fast = {"threads": threads, "parallel_rows": parallel_rows}
        self._churn = fast_model(bundle.churn, _proba, **fast)
        self._stage = fast_model(bundle.stage, _proba, **fast)
        self._offers = fast_model(bundle.offers, _uplift_and_support, **fast)

    # ---- scoring ------------------------------------------------------------------

    def inputs(self, name: str, rows: FeatureRows) -> np.ndarray:
        """The input matrix of model ``name`` ("churn", "stage", "offers") for ``rows``."""
        return self._plan(name, rows).matrix(rows)

    def _plan(self, name: str, rows: FeatureRows) -> InputPlan:
        key = (self._inputs[name], rows.layout)  # models with equal inputs share a plan
        if key not in self._plans:
            self._plans[key] = InputPlan(getattr(self.bundle, name), rows)
        return self._plans[key]

    def score(self, rows: FeatureRows) -> Scores:
        """Churn probability, stage probabilities, current stage and offer uplift per row."""
        built: dict[int, np.ndarray] = {}  # each distinct input matrix once

        def x(name: str) -> np.ndarray:
            plan = self._plan(name, rows)
            if id(plan) not in built:
                built[id(plan)] = plan.matrix(rows)
            return built[id(plan)]

        churn = self._churn.predict_proba(x("churn"))[:, 1]
        stage_proba = self._stage.predict_proba(x("stage"))
        uplift, supported = self._offers.uplift_and_support(x("offers"))
        cols = self.catalog.model_column
        return Scores(churn, stage_proba, current_stage(rows), uplift[:, cols], supported[:, cols])

    # ---- policy -------------------------------------------------------------------

    def eligibility(
        self, rows: FeatureRows, scores: Scores, channel: str | None, contacts: Contacts
    ) -> tuple[np.ndarray, Callable[[int, int], str | None]]:
        """``(n, offers)`` booleans and ``why(i, j)``: why offer ``j`` is not eligible for row
        ``i`` (the first rule it fails; None when eligible), worded only for offers shown."""
        n, k = len(rows.customer_ids), len(self.catalog.ids)
        rules = self._rules(rows, scores, channel, contacts)
        failed = np.empty((len(rules), n, k), bool)
        for r, (mask, _) in enumerate(rules):
            failed[r] = mask  # broadcast
        first = np.where(failed.any(axis=0), failed.argmax(axis=0), -1)

        def why(i: int, j: int) -> str | None:
            return None if first[i, j] < 0 else rules[first[i, j]][1](i, j)

        return first < 0, why

    def _rules(self, rows: FeatureRows, scores: Scores, channel, contacts) -> list:
        """(failed mask, broadcastable to ``(n, offers)``; reason for row i and offer j) of
        each rule, in the order shown."""
        c, p, days = self.catalog, self.policy, contacts.days_since
        wrong_channel = [channel is not None and ch not in (None, channel) for ch in c.channel]
        return [
            (c.stage_fails(scores.stage),
             lambda i, j: f"stage {scores.stage[i]} not in {'|'.join(sorted(c.stages[j]))}"),
            (c.owned_fails(rows.text(OWNED), len(rows.customer_ids)),
             lambda i, j: f"already owns {c.exclusive[j]}"),
            (np.array(wrong_channel, bool)[None, :],
             lambda i, j: f"offer goes by {c.channel[j]}, not {channel}"),
            (days < c.cooldown,
             lambda i, j: f"sent {days[i, j]:.1f} days ago (cooldown {c.cooldown[j]:.0f})"),
            ((contacts.sends >= p.contact_cap)[:, None],
             lambda i, j: f"contact cap {p.contact_cap} per {p.contact_window_days} days reached"),
            (~scores.supported, lambda i, j: "outside what the campaign logs cover"),
            (np.isnan(scores.uplift), lambda i, j: "no uplift model for this offer"),
        ]  # fmt: skip

    def choose(
        self, expected: np.ndarray, eligible: np.ndarray, draws: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arm index (0 = no offer), its propensity and whether exploration chose it; arm
        ``a`` when the row's uniform draw falls in its slice of the probabilities."""
        value = np.where(eligible, expected, -np.inf)
        best = value.argmax(axis=1) if value.shape[1] else np.zeros(len(value), np.intp)
        greedy = np.where(value.max(axis=1, initial=-np.inf) > 0, best + 1, 0)
        ok = np.ones((len(value), len(self.arms)), bool)  # no offer (column 0): always
        ok[:, 1:] = eligible
        proba = epsilon_greedy(greedy, ok, self.policy.exploration)
        below = (draws[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)
        chosen = np.minimum(below, len(self.arms) - 1)
        return chosen, proba[np.arange(len(chosen)), chosen], chosen != greedy

    # ---- decisions ----------------------------------------------------------------

    def decide(
        self,
        rows: FeatureRows,
        contacts: Contacts,
        draws: np.ndarray,
        channel: str | None = None,
        max_offers: int = 3,
        explain: bool = False,
        scores: Scores | None = None,
    ) -> tuple[list[dict], list[Decision]]:
        """Decisions for the found rows of ``rows`` (unknown ids are the caller's business);
        ``draws``: one uniform [0, 1) number per row, the exploration's randomness;
        ``scores``: :meth:`score` of ``rows`` when already at hand (a filtered audience is
        picked from the cached scores of the whole store), else they are computed."""
        scores = self.score(rows) if scores is None else scores
        eligible, why = self.eligibility(rows, scores, channel, contacts)
        c = self.catalog
        expected = scores.uplift * c.value - c.cost
        chosen, propensity, explored = self.choose(expected, eligible, draws)
        reasons = self.reasons(rows) if explain else None
        bands = np.digitize(scores.churn, self.policy.churn_bands).tolist()
        as_of = None if rows.as_of is None else rows.as_of.isoformat()
        order = self.ranking(expected, eligible)[:, :max_offers].tolist()
        # whole arrays to Python values at once, not numpy scalars per row
        stage_next, churn = scores.stage_proba.round(6).tolist(), scores.churn.tolist()
        uplift, values, ok = scores.uplift.tolist(), expected.tolist(), eligible.tolist()
        propensities, explored = propensity.tolist(), explored.tolist()
        out, logged = [], []
        for i, (customer, arm) in enumerate(zip(rows.customer_ids, chosen.tolist(), strict=True)):
            offer = None if arm == 0 else c.ids[arm - 1]
            value = 0.0 if arm == 0 else values[i][arm - 1]
            decision_id = uuid.uuid4().hex
            shown = [(j, uplift[i][j], values[i][j], ok[i][j]) for j in order[i]]
            out.append({
                "customer_id": customer, "error": None,  # every field, in the schema's order
                "stage": {"current": str(scores.stage[i]),
                          "next": dict(zip(self.stages, stage_next[i], strict=True))},
                "churn": {"probability": round(churn[i], 6),
                          "risk_band": ("low", "medium", "high")[bands[i]],
                          "reasons": [] if reasons is None else reasons[i]},
                "offers": self._ranked(shown, functools.partial(why, i)),
                "decision": {"decision_id": decision_id, "offer_id": offer,
                             "propensity": propensities[i], "explored": explored[i],
                             "expected_value": value},
                "models": self.versions,
                "features_as_of": as_of,
            })  # fmt: skip
            logged.append(Decision(decision_id, customer, offer, propensities[i], explored[i],
                                   channel, value, self._versions_json, as_of))  # fmt: skip
        return out, logged

    @staticmethod
    def ranking(expected: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """Offer positions per row: eligible first, then by expected value (missing last)."""
        value = np.where(np.isfinite(expected), expected, -np.inf)
        return np.lexsort((-value, ~eligible), axis=-1)

    def _ranked(self, shown: list[tuple], why: Callable[[int], str | None]) -> list[dict]:
        """The offers shown to one customer: (offer position, uplift, expected value,
        eligible) each, and ``why(j)`` offer ``j`` is not eligible."""
        c = self.catalog
        return [
            {"offer_id": c.ids[j], "kind": c.kind[j], "uplift": _num(uplift),
             "expected_value": _num(value), "eligible": eligible,
             "ineligible_reason": why(j)}
            for j, uplift, value, eligible in shown
        ]  # fmt: skip

    def reasons(self, rows: FeatureRows, top: int = 3) -> list[list[dict]]:
        """The churn model's top positive feature contributions per row, readable."""
        x = self.inputs("churn", rows)
        names = [str(c) for c in self.bundle.churn.feature_names_in_]
        found = self.bundle.churn.reasons(pd.DataFrame(x, columns=names), top=top)
        col = {n: j for j, n in enumerate(names)}
        return [
            [{"feature": f, "label": _label(f), "value": _value(rows, i, f, x[i, col[f]]),
              "contribution": round(v, 6)} for f, v in row]
            for i, row in enumerate(found)
        ]  # fmt: skip


def current_stage(rows: FeatureRows) -> np.ndarray:
    """The rule stage: materialised in the store, else computed from the numeric features."""
    stage = rows.text("stage")
    if stage is not None:
        return np.array(["awareness" if s is None else s for s in stage], dtype=object)
    frame = pd.DataFrame(rows.numeric, columns=list(rows.numeric_columns))
    return assign_stages(frame).astype("str").to_numpy(dtype=object)


def _input_signature(model) -> tuple:
    """What a model's input matrix depends on: its columns and their training categories."""
    categories = getattr(model, "categories_", {})
    names = tuple(str(c) for c in model.feature_names_in_)
    return names, tuple((c, tuple(map(str, categories[c]))) for c in names if c in categories)


def _proba(model, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)


def _uplift_and_support(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return model.uplift_and_support(x)


def _stage_set(value: object) -> frozenset[str]:
    if pd.isna(value) or not str(value).strip():
        return frozenset()
    return frozenset(s.strip() for s in str(value).split("|"))


def _num(v: float) -> float | None:
    return round(v, 6) if math.isfinite(v) else None


def _label(feature: str) -> str:
    spec = REGISTRY.get(feature)
    return spec.definition if spec is not None else feature.replace("_", " ")


def _value(rows: FeatureRows, i: int, feature: str, encoded: float) -> float | str | None:
    text = rows.text(feature)
    if text is not None:
        return text[i]
    return None if np.isnan(encoded) else round(float(encoded), 6)
