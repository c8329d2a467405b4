"""Decisions from feature rows: stage, churn risk with reasons, offers and the chosen one.

Pure and fast: numpy arrays in, plain dicts out (the response models' shape), no pandas per
request except when reasons are asked for. The offer policy (DESIGN sections 6 and 8): an offer
is eligible when the customer's stage is in its ``eligible_stages``, the customer does not own
its product (``exclude_if_owned``), it fits the request's channel, its cooldown passed, the
customer's contact cap is not reached and, with an offers model, the logged data support it
(the uplift model knows customers like this one got it). With an offers model the choice is
epsilon-greedy on ``uplift x value - cost``; without one, the cold-start policy chooses at
random with a control share; without a catalog there are no offers and no decision
(``serving/policies.py``). Every decision carries the probability of the action taken and the
policy that took it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd

from features.online_vectors import OWNED, parse_owned
from features.project import ProjectConfig
from features.registry import REGISTRY
from features.stages import assign_stages
from features.subscription_features import FEATURES as CONTRACT_FEATURES
from serving.bundle import ModelBundle
from serving.compiled import compile_model
from serving.config import PolicyConfig
from serving.inputs import FeatureRows, InputPlan
from serving.ledger import Decisions
from serving.policies import MODEL, cold_start_choice, greedy_choice, offers_status
from serving.scoring import fast_model
from training.policy import (
    CONTROL,
    cautious_values,
    conversion_worth,
    greedy_offer,
    keeping_offers,
)

MODELS = ("churn", "stage", "offers")  # the models run through the input plans
CLV_PREFIX = "btyd_clv_"  # the probabilistic CLV column of the vectors: btyd_clv_<H>d
OWNED_MASKS_KEPT = 50_000  # distinct owned-products values whose offer masks are kept
NO_CATALOG = pd.DataFrame({c: pd.Series(dtype=object) for c in (
    "offer_id", "kind", "product", "value", "cost", "eligible_stages", "exclude_if_owned",
    "cooldown_days", "channel")})  # fmt: skip


@dataclass(frozen=True)
class Scores:
    """Model outputs for n rows."""

    churn: np.ndarray  # (n,)
    stage_proba: np.ndarray  # (n, stages)
    stage: np.ndarray  # (n,) current stage, object
    uplift: np.ndarray  # (n, offers), NaN = unknown (all NaN without an offers model)
    supported: np.ndarray  # (n, offers) bool
    clv: np.ndarray  # (n,) customer lifetime value, NaN = unknown
    p_alive: np.ndarray  # (n,) BG/NBD P(alive), NaN = unknown or not a buyer

    def take(self, idx: np.ndarray) -> Scores:
        """The scores of rows ``idx`` (what ``FeatureRows.take(idx)`` would score)."""
        return Scores(*(np.asarray(v)[idx] for v in vars(self).values()))


@dataclass(frozen=True)
class Contacts:
    """From the ledger: sends in the cap window ``(n,)``, days since each offer ``(n, offers)``."""

    sends: np.ndarray
    days_since: np.ndarray


class Catalog:
    """The offers the policy may choose, as arrays: every offer of ``offers``, in its order.
    ``model_column``: each offer's column among the offers model's (``scored``), -1 for an
    offer the model has never seen (new to the catalog): no uplift estimate, so the policy
    only explores it (``serving/policies.py``) until a retrain learns it."""

    def __init__(self, offers: pd.DataFrame, scored: list[str]) -> None:
        known = offers.reset_index(drop=True)
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
        column = {o: j for j, o in enumerate(scored)}
        self.model_column = np.array([column.get(i, -1) for i in self.ids], dtype=np.intp)
        self._stage_masks: dict[str, np.ndarray] = {}
        self._owned_masks: dict[str | None, np.ndarray] = {}

    def stage_fails(self, stage: np.ndarray) -> np.ndarray:
        """``(n, offers)``: the row's stage is not among the offer's eligible stages."""
        return self._rows(self._stage_masks, stage.tolist(),
                          lambda s: [bool(e) and s not in e for e in self.stages])  # fmt: skip

    def owned_fails(self, owned: np.ndarray | None, n: int) -> np.ndarray:
        """``(n, offers)``: the customer already owns the offer's (exclusive) product.

        Each distinct owned value is parsed once and its mask kept (a store holds a few
        thousand product sets; parsing per row took ~2 ms per 1,000); the masks are dropped
        past ``OWNED_MASKS_KEPT`` values, as cold-start requests bring their own."""
        if owned is None or not any(self.exclusive):
            return np.zeros((n, len(self.ids)), bool)
        if len(self._owned_masks) > OWNED_MASKS_KEPT:
            self._owned_masks = {}  # a new dict: calls in other threads keep theirs

        def mask(value: str | None) -> list[bool]:
            products = parse_owned(value)
            return [p is not None and p in products for p in self.exclusive]

        return self._rows(self._owned_masks, owned.tolist(), mask)

    def _rows(self, masks: dict, values: list, mask: Callable[[object], list[bool]]) -> np.ndarray:
        """``(len(values), offers)``: ``mask(v)`` per value, computed once per distinct value
        and kept in ``masks`` (stages and owned-product sets repeat across customers)."""
        for v in {v for v in values if v not in masks}:  # (set - keys would copy the keys)
            masks[v] = np.array(mask(v), bool)
        return np.array([masks[v] for v in values], bool).reshape(len(values), len(self.ids))


class DecisionEngine:
    """Scores and decides for feature rows with one loaded :class:`ModelBundle`.

    ``offers``: the offer catalog, None when there is none (``no_catalog``: why). The offer
    policy follows from what there is (``offers_status``, :func:`serving.policies.offers_status`):
    ``"model"`` with an offers model and a catalog, ``"cold_start"`` with a catalog only, None
    (no offers, no decision) without a catalog."""

    def __init__(
        self, bundle: ModelBundle, offers: pd.DataFrame | None, policy: PolicyConfig,
        threads: int = 1, parallel_rows: int = 256, no_catalog: str | None = None,
    ) -> None:  # fmt: skip
        self.bundle, self.policy = bundle, policy
        self.reads_contracts = reads_contracts((bundle.churn, bundle.stage, bundle.offers))
        if offers is None:
            no_catalog = no_catalog or "no offer catalog configured (set offers / LIFECYCLE_OFFERS)"
        self.offers_status = offers_status(
            bundle.absent.get("offers", "no offers model") if bundle.offers is None else None,
            no_catalog if offers is None else None, policy.cold_start_control_share,
        )  # fmt: skip
        self.offer_policy: str | None = self.offers_status["policy"]
        self.models = MODELS if self.offer_policy == MODEL else MODELS[:2]  # the ones run
        self.clv_status = clv_status(bundle)
        by_clv = policy.retention_value == "clv" and self.clv_status["estimator"] is not None
        self.clv_status["retention_offers_valued_by"] = "clv" if by_clv else "catalog value"
        planned = [*self.models, *(["clv"] if self.clv_status["estimator"] == "learned" else [])]
        catalog = NO_CATALOG if self.offer_policy is None else offers
        scored = bundle.offers.offers_ if self.offer_policy == MODEL else catalog["offer_id"]
        self.catalog = Catalog(catalog, [str(k) for k in scored])
        self.arms = [CONTROL, *self.catalog.ids]
        self._keeps = keeping_offers(self.catalog.kind, *churn_learnt(bundle.churn),
                                     policy.keeping_offers)  # fmt: skip
        self.clv_status["offers_that_keep"] = [
            k for k, keeps in zip(self.catalog.ids, self._keeps, strict=True) if keeps
        ]
        self._uplift_se = uplift_se(bundle.offers, self.catalog.model_column)
        self.stages = [str(c) for c in bundle.stage.classes_]
        self.versions = bundle.versions
        self._versions_json = json.dumps(self.versions, sort_keys=True)
        self._arm_offer = np.array([None, *self.catalog.ids], object)  # arm 0: no offer
        self._plans: dict[tuple, InputPlan] = {}
        signatures = [_input_signature(getattr(bundle, n)) for n in planned]
        self._inputs = {n: signatures.index(s) for n, s in zip(planned, signatures,
                                                                   strict=True)}  # fmt: skip
        self._fast = {"threads": threads, "parallel_rows": parallel_rows}
        self._churn = fast_model(bundle.churn, ANSWERS["churn"], **self._fast)
        self._stage = fast_model(bundle.stage, ANSWERS["stage"], **self._fast)
        self._offers = None
        if self.offer_policy == MODEL:
            self._offers = fast_model(bundle.offers, ANSWERS["offers"], **self._fast)
        self.compiled: dict[str, bool] = {}  # model -> its trees run compiled code

    def input_columns(self) -> dict[str, list[str]]:
        """The columns each model the engine runs reads from the feature rows."""
        return {name: [str(c) for c in getattr(self.bundle, name).feature_names_in_]
                for name in self._inputs}  # fmt: skip

    def compile_trees(self, cache: Path) -> dict[str, bool]:
        """Swap in compiled copies of the models (:func:`compile_model`; answers unchanged,
        so requests in flight may mix both), model by model; which ones it could compile."""
        for name in self.models:
            answer = ANSWERS[name]
            compiled = compile_model(getattr(self.bundle, name), answer, cache, **self._fast)
            if compiled is not None:
                setattr(self, f"_{name}", compiled)
            self.compiled[name] = compiled is not None
        return self.compiled

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
        n = len(rows.customer_ids)
        shape = (n, len(self.catalog.ids))
        value = self._clv(rows, x)
        p_alive = _column(rows, "btyd_p_alive")
        if self._offers is None:  # no offers model: nothing known of the offers' uplift
            return Scores(churn, stage_proba, current_stage(rows), np.full(shape, np.nan),
                          np.ones(shape, bool), value, p_alive)  # fmt: skip
        uplift, supported = self._offers.uplift_and_support(x("offers"))
        cols = self.catalog.model_column
        uplift, supported = uplift[:, cols], supported[:, cols]
        if (cols < 0).any():  # offers new to the model: unknown uplift, explored only
            uplift[:, cols < 0], supported[:, cols < 0] = np.nan, True
        return Scores(churn, stage_proba, current_stage(rows), uplift, supported, value,
                      p_alive)  # fmt: skip

    def _clv(self, rows: FeatureRows, x: Callable[[str], np.ndarray]) -> np.ndarray:
        """The CLV per row: the learned model's, else the probabilistic column's (NaN where
        the customer never bought), else NaN."""
        estimator = self.clv_status["estimator"]
        if estimator == "learned":
            return self.bundle.clv.predict(x("clv"))
        if estimator == "probabilistic":
            return _column(rows, self.clv_status["column"])
        return np.full(len(rows.customer_ids), np.nan)

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
        each rule, in the order shown; the last only with an offers model. An offer without an
        uplift estimate (new to the model, or an arm too small to estimate) stays eligible:
        the policy never chooses it greedily, only by exploration, which is how the ledger
        gathers the sends a retrain learns it from."""
        c, p, days = self.catalog, self.policy, contacts.days_since
        wrong_channel = [channel is not None and ch not in (None, channel) for ch in c.channel]
        rules = [
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
        ]  # fmt: skip
        if self.offer_policy != MODEL:
            return rules
        return [
            *rules,
            (~scores.supported, lambda i, j: "outside what the campaign logs cover"),
        ]

    def choose(
        self, expected: np.ndarray, eligible: np.ndarray, draws: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Arm index (0 = no offer), its propensity and whether it was a random choice, by
        this engine's policy (``serving/policies.py``); ``draws``: one uniform per row."""
        if self.offer_policy == MODEL:
            return greedy_choice(expected, eligible, draws, self.policy.exploration)
        return cold_start_choice(eligible, draws, self.policy.cold_start_control_share)

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
    ) -> tuple[list[dict], Decisions | None]:
        """Decisions for the found rows of ``rows`` (unknown ids are the caller's business)
        and what to log (None without an offer policy: no decision, nothing logged);
        ``draws``: one uniform [0, 1) number per row, the offer policy's randomness;
        ``scores``: :meth:`score` of ``rows`` when already at hand (a filtered audience is
        picked from the cached scores of the whole store), else they are computed.

        Every column is computed for all rows at once and becomes Python values with one
        ``tolist``; only the response dicts are built per row (per-row rounding, ``uuid4``
        and objects took ~35 ms per 1,000 rows)."""
        scores = self.score(rows) if scores is None else scores
        n = len(rows.customer_ids)
        reasons = self.reasons(rows) if explain else [[] for _ in range(n)]
        as_of = None if rows.as_of is None else rows.as_of.isoformat()
        if self.offer_policy is None:  # no catalog: no offers, no decision
            return self._answers(rows, as_of, scores, [[] for _ in range(n)], reasons), None
        eligible, why = self.eligibility(rows, scores, channel, contacts)
        expected = self.expected_values(scores, eligible)
        chosen, propensity, explored = self.choose(expected, eligible, draws)
        value = None  # cold start: no expected values
        if self.offer_policy == MODEL:
            offered = expected[np.arange(n), np.maximum(chosen - 1, 0)] if expected.size else 0.0
            value = np.where(chosen > 0, offered, 0.0).tolist()  # arm 0 (no offer): 0
            if np.isnan(offered).any():  # an explored offer without an estimate: unknown
                value = [None if v != v else v for v in value]
        logged = Decisions(
            decision_ids(n), rows.customer_ids, self._arm_offer[chosen].tolist(),
            propensity.tolist(), explored.tolist(), value, channel, self._versions_json, as_of,
            self.offer_policy,
        )  # fmt: skip
        order = self.ranking(expected, eligible)[:, :max_offers]
        offers = self._shown(order, scores.uplift, expected, eligible, why)
        return self._answers(rows, as_of, scores, offers, reasons, logged), logged

    def offer_values(self, scores: Scores) -> np.ndarray:
        """``(n, offers)``: what a conversion is worth (:func:`training.policy.
        conversion_worth`): the offer's margin (the catalog's ``value``) and, for an offer whose
        conversion keeps the customer (``keeping_offers``) with ``retention_value: clv``, what
        keeping them saves (churn / (1 - churn) x CLV), where the service has a CLV."""
        by_clv = self.policy.retention_value == "clv" and self._keeps.any()
        worth = conversion_worth(self.catalog.value, self._keeps, scores.churn if by_clv else None,
                                 scores.clv)  # fmt: skip
        return np.broadcast_to(worth, scores.uplift.shape)

    def expected_values(
        self, scores: Scores, eligible: np.ndarray, uplift: np.ndarray | None = None
    ) -> np.ndarray:  # fmt: skip
        """``(n, offers)``: what the policy ranks and chooses by, ``uplift x worth - cost``
        (:meth:`offer_values`; ``uplift``: in place of the model's). With ``retention_value:
        clv`` and an offers model that recorded its uplift's standard errors (``uplift_se_``),
        cautiously (:func:`training.policy.cautious_values`): a retention saving makes the
        policy leave the offer chosen by margin alone (the ``catalog`` choice) only where the
        gain is larger than the uplift model's noise at one-sided 95 %; otherwise the plain
        expected values (``catalog``: exactly those)."""
        uplift = scores.uplift if uplift is None else uplift
        worth = self.offer_values(scores)
        expected = uplift * worth - self.catalog.cost
        if self._uplift_se is None or self.policy.retention_value != "clv":
            return expected
        margin = greedy_offer(uplift * self.catalog.value - self.catalog.cost, eligible)
        return cautious_values(expected, worth, self._uplift_se, margin)

    def _answers(
        self, rows: FeatureRows, as_of: str | None, scores: Scores, offers: list[list[dict]],
        reasons: list[list[dict]], d: Decisions | None = None,
    ) -> list[dict]:  # fmt: skip
        """The response entries (every field, in the schema's order) of ``rows`` (features
        as of ``as_of``), with decisions ``d`` (None: no decision)."""
        bands = np.array(("low", "medium", "high"), object)[
            np.digitize(scores.churn, self.policy.churn_bands)].tolist()  # fmt: skip
        stages = zip(map(str, scores.stage.tolist()), scores.stage_proba.round(6).tolist(),
                     strict=True)  # fmt: skip
        churn = zip(scores.churn.round(6).tolist(), bands, reasons, strict=True)
        values = zip(self._clv_answers(scores), _nums(scores.p_alive.round(6)), strict=True)
        return [
            {"customer_id": customer, "error": None,
             "stage": {"current": stage, "next": dict(zip(self.stages, after, strict=True))},
             "churn": {"probability": p, "risk_band": band, "reasons": top},
             "clv": clv, "p_alive": alive,
             "offers": shown, "decision": decision, "models": self.versions,
             "features_as_of": as_of}
            for customer, (stage, after), (p, band, top), (clv, alive), shown, decision
            in zip(rows.customer_ids, stages, churn, values, offers, _choices(d, len(bands)),
                   strict=True)
        ]  # fmt: skip

    def _clv_answers(self, scores: Scores) -> list[dict | None]:
        """Each row's ``clv`` entry: value, value at risk (churn probability x value), the
        horizon and the estimator; None where unknown (never bought, no estimator)."""
        status = self.clv_status
        value = scores.clv.round(4)
        at_risk = (scores.clv * scores.churn).round(4)
        return [
            None if np.isnan(v) else
            {"value": v, "value_at_risk": r, "horizon_days": status["horizon_days"],
             "estimator": status["estimator"]}
            for v, r in zip(value.tolist(), at_risk.tolist(), strict=True)
        ]  # fmt: skip

    @staticmethod
    def ranking(expected: np.ndarray, eligible: np.ndarray) -> np.ndarray:
        """Offer positions per row: eligible first, then by expected value (missing last)."""
        value = np.where(np.isfinite(expected), expected, -np.inf)
        return np.lexsort((-value, ~eligible), axis=-1)

    def _shown(
        self, order: np.ndarray, uplift: np.ndarray, expected: np.ndarray,
        eligible: np.ndarray, why: Callable[[int, int], str | None],
    ) -> list[list[dict]]:  # fmt: skip
        """The offers shown to each row: ``order`` ``(n, shown)``, their positions; values
        rounded for all rows at once, ``why`` worded only for the ineligible offers shown."""
        n, m = order.shape
        position = order.ravel().tolist()
        row = np.arange(n)[:, None]  # fancy indexing: take_along_axis costs ~15 us a call
        ok = eligible[row, order].ravel().tolist()
        reasons = [None if fine else why(f // m, position[f]) for f, fine in enumerate(ok)]
        c = self.catalog
        flat = [
            {"offer_id": c.ids[j], "kind": c.kind[j], "uplift": u, "expected_value": v,
             "eligible": fine, "ineligible_reason": reason}
            for j, u, v, fine, reason in zip(
                position, _nums(uplift[row, order]), _nums(expected[row, order]), ok, reasons,
                strict=True)
        ]  # fmt: skip
        return [flat[i * m : (i + 1) * m] for i in range(n)]

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


def _choices(d: Decisions | None, n: int) -> Iterable[dict | None]:
    """The response's ``decision`` of each of ``n`` rows: from ``d``, or None for all."""
    if d is None:
        return repeat(None, n)
    value = repeat(None) if d.expected_value is None else d.expected_value
    return (
        {"decision_id": i, "offer_id": o, "propensity": pr, "explored": ex, "expected_value": v,
         "policy": d.policy}
        for i, o, pr, ex, v in zip(d.decision_id, d.offer_id, d.propensity, d.explored, value,
                                   strict=False)
    )  # fmt: skip


def current_stage(rows: FeatureRows) -> np.ndarray:
    """The rule stage: materialised in the store, else computed from the numeric features."""
    stage = rows.text("stage")
    if stage is not None:
        return np.array(["awareness" if s is None else s for s in stage], dtype=object)
    frame = pd.DataFrame(rows.numeric, columns=list(rows.numeric_columns))
    return assign_stages(frame).astype("str").to_numpy(dtype=object)


def uplift_se(offers: object | None, model_column: np.ndarray) -> np.ndarray | None:
    """The standard error of each catalog offer's uplift (``model_column``: its column among
    the offers model's, -1 = new to the model: NaN), as the offers model recorded it
    (``uplift_se_``, by offer id); None for a model without them (trained before they were
    recorded: the value-aware policy then ranks by its plain expected values)."""
    recorded = getattr(offers, "uplift_se_", None)
    if recorded is None or not len(offers.offers_):
        return None
    se = np.array([recorded.get(str(k), np.nan) for k in offers.offers_], dtype=float)
    return np.where(model_column >= 0, se[np.maximum(model_column, 0)], np.nan)


def churn_learnt(model) -> tuple[str | None, tuple[str, ...]]:
    """The churn definition and qualifying roles the churn ``model`` was trained with (its
    recorded ``lifecycle_config_``); (None, ()) when it recorded none."""
    config = getattr(model, "lifecycle_config_", None)
    if not config:
        return None, ()
    dataset = ProjectConfig.model_validate_json(config).dataset
    return dataset.churn_definition, tuple(dataset.qualifying_roles)


def clv_status(bundle: ModelBundle) -> dict:
    """Where the served CLV comes from: ``estimator`` "learned" (the CLV model), or
    "probabilistic" (BG/NBD x Gamma-Gamma, the vectors' ``btyd_clv_<H>d`` column, also when
    there is no CLV model but the churn model was trained with that column), or None; its
    ``column``, ``horizon_days`` and, without a CLV model, ``reason``."""
    model = bundle.clv
    if model is not None and hasattr(model, "booster_"):
        config = getattr(model, "lifecycle_config_", None)
        horizon = ProjectConfig.model_validate_json(config).dataset.clv_horizon_days \
            if config else None  # fmt: skip
        return {"estimator": "learned", "column": None, "horizon_days": horizon, "reason": None}
    column = getattr(model, "column", None)
    if column is None:
        names = [str(c) for c in getattr(bundle.churn, "feature_names_in_", ())]
        column = next((c for c in names if c.startswith(CLV_PREFIX)), None)
    reason = None if model is not None else bundle.absent.get("clv", "no CLV model")
    if column is None:
        return {"estimator": None, "column": None, "horizon_days": None,
                "reason": f"{reason}; the vectors hold no buy-till-you-die CLV either "
                          "(btyd_features off, or no repeat buyers)"}  # fmt: skip
    horizon = int(column.removeprefix(CLV_PREFIX).removesuffix("d"))
    return {
        "estimator": "probabilistic",
        "column": column,
        "horizon_days": horizon,
        "reason": reason,
    }


def _column(rows: FeatureRows, name: str | None) -> np.ndarray:
    """A numeric column of ``rows`` as float64, all NaN when the rows do not hold it."""
    if name in rows.numeric_columns:
        return rows.numeric[:, rows.numeric_columns.index(name)].astype(np.float64)
    return np.full(len(rows.customer_ids), np.nan)


def reads_contracts(models) -> bool:
    """Whether any of ``models`` (None skipped) reads the contract features, i.e. was trained
    with a subscriptions table."""
    names = {str(c) for m in models if m is not None for c in getattr(m, "feature_names_in_", ())}
    return not names.isdisjoint(CONTRACT_FEATURES)


def _input_signature(model) -> tuple:
    """What a model's input matrix depends on: its columns and their training categories."""
    categories = getattr(model, "categories_", {})
    names = tuple(str(c) for c in model.feature_names_in_)
    return names, tuple((c, tuple(map(str, categories[c]))) for c in names if c in categories)


def _proba(model, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)


def _uplift_and_support(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return model.uplift_and_support(x)


ANSWERS = {"churn": _proba, "stage": _proba, "offers": _uplift_and_support}  # what serving asks


def _stage_set(value: object) -> frozenset[str]:
    if pd.isna(value) or not str(value).strip():
        return frozenset()
    return frozenset(s.strip() for s in str(value).split("|"))


def _nums(values: np.ndarray) -> list[float | None]:
    """``values`` rounded to 6 decimals, flattened, NaN (unknown) as None for JSON."""
    out = values.round(6).astype(object)
    out[~np.isfinite(values)] = None
    return out.ravel().tolist()


def decision_ids(n: int, now: float | None = None) -> list[str]:
    """``n`` time-ordered random ids: UUIDv7 (RFC 9562) as 32-digit hex, from one
    ``os.urandom`` call (``uuid.uuid4()`` per row took ~10 ms per 1,000).

    The first 48 bits are the Unix time in milliseconds (``now``, default the clock), then
    the version (7) and variant (10xx) bits, the rest random (74 bits). Time order is what
    keeps the ledger fast as it grows: the ``decisions`` table's unique index on the id
    takes a request's ids at its end instead of at random places (with random UUID4s a
    1,000-decision commit on a 300,000-row ledger rewrote pages all over it: 35 ms instead
    of 7 ms)."""
    ms = int((time.time() if now is None else now) * 1000)
    raw = np.frombuffer(bytearray(os.urandom(16 * n)), np.uint8).reshape(n, 16)
    raw[:, :6] = np.frombuffer(ms.to_bytes(6, "big"), np.uint8)
    raw[:, 6] = raw[:, 6] & 0x0F | 0x70
    raw[:, 8] = raw[:, 8] & 0x3F | 0x80
    text = raw.tobytes().hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


def _label(feature: str) -> str:
    spec = REGISTRY.get(feature)
    return spec.definition if spec is not None else feature.replace("_", " ")


def _value(rows: FeatureRows, i: int, feature: str, encoded: float) -> float | str | None:
    text = rows.text(feature)
    if text is not None:
        return text[i]
    return None if np.isnan(encoded) else round(float(encoded), 6)
