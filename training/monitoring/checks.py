"""One monitoring run: every computation over the gathered inputs, and the thresholds.

A check is *crossed* when its value is above its threshold (a NaN value, e.g. no cohort yet,
crosses nothing):

- ``feature_psi``: the largest PSI among the churn model's features;
- ``score_psi``: the PSI of the churn scores (current vs reference);
- ``churn_ece``: the realised calibration error of the latest cohort whose horizon passed;
- ``activity_shift``: the largest change in a role's events per active customer (purchases,
  cancellations, visits, ...), the last week vs the week before the reference date, that
  the role's (Bonferroni-adjusted 95 %) interval still allows
  (:mod:`training.monitoring.activity`): a change of behaviour shows here within days;
- ``amount_shift``: the largest change in what customers pay per event of a money role
  (purchases and renewals, refunds, subscription starts: a geometric mean), the same two
  windows, that the role's (Bonferroni-adjusted 95 %) interval still allows
  (:mod:`training.monitoring.amounts`): a price change shows here within the first week.

``lifecycle monitor`` exits 4 when any check is crossed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.monitoring.activity import Activity, RoleChanges
from training.monitoring.amounts import Amounts
from training.monitoring.drift import feature_drift, score_drift
from training.monitoring.inputs import Vectors, churn_scores, model_features
from training.monitoring.ledger_health import LedgerHealth
from training.monitoring.outcomes import offer_performance, realised_calibration


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.25  # feature and score PSI
    ece: float = 0.1
    activity: float = 0.1  # a 10 % change in a role's event rate, beyond noise
    amount: float = 0.1  # a 10 % change in a money role's amount per event, beyond noise


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    detail: str = ""

    @property
    def crossed(self) -> bool:
        return bool(np.isfinite(self.value) and self.value > self.threshold)


@dataclass
class Calibration:
    """The realised calibration of one cohort: as-of date, horizon, deciles and ECE."""

    as_of: pd.Timestamp
    horizon_days: int
    table: pd.DataFrame
    ece: float
    customers: int
    churn_rate: float
    mean_predicted: float


@dataclass
class MonitorResult:
    """Everything one run found; ``checks`` against ``thresholds``; ``notes``: what could not
    be computed and why, and warnings (e.g. the store built with another config)."""

    model: str
    reference: Vectors
    current: Vectors
    features: pd.DataFrame  # training.monitoring.drift.feature_drift
    scores: dict[str, float]
    score_samples: tuple[np.ndarray, np.ndarray]  # reference, current churn probabilities
    calibration: Calibration | None
    offers: pd.DataFrame | None
    ledger: LedgerHealth | None
    thresholds: Thresholds
    activity: Activity | None = None
    amounts: Amounts | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def crossed(self) -> list[Check]:
        return [c for c in self.checks if c.crossed]


def calibration_of(cohort: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int) -> Calibration:
    """:func:`realised_calibration` of a cohort (``predicted``, ``churned``)."""
    table, ece = realised_calibration(cohort["predicted"], cohort["churned"])
    return Calibration(as_of, horizon_days, table, ece, len(cohort),
                       float(cohort["churned"].mean()) if len(cohort) else np.nan,
                       float(cohort["predicted"].mean()) if len(cohort) else np.nan)  # fmt: skip


def evaluate(
    champion,
    reference: Vectors,
    current: Vectors,
    calibration: Calibration | None,
    exposures: pd.DataFrame | None,
    ledger: LedgerHealth | None,
    thresholds: Thresholds = Thresholds(),
    notes: list[str] | None = None,
    activity: Activity | None = None,
    amounts: Amounts | None = None,
) -> MonitorResult:
    """Drift of the champion's features and scores, with the outcomes and ledger health
    already gathered; the checks filled in."""
    features = model_features(champion.estimator, reference.frame)
    features = [c for c in features if c in current.frame.columns]
    drift = feature_drift(reference.frame, current.frame, features)
    population = champion.config.dataset.population
    ref = churn_scores(champion.estimator, reference.frame, population)
    cur = churn_scores(champion.estimator, current.frame, population)
    offers = offer_performance(exposures) if exposures is not None and len(exposures) else None
    result = MonitorResult(f"lifecycle-churn v{champion.version}", reference, current, drift,
                           score_drift(ref, cur), (ref, cur), calibration, offers, ledger,
                           thresholds, activity, amounts, notes=list(notes or []))  # fmt: skip
    result.checks = checks(result)
    return result


def checks(result: MonitorResult) -> list[Check]:
    """The checks of the module docstring for ``result``."""
    t, drift = result.thresholds, result.features
    top = drift["psi"].max() if len(drift) else np.nan
    over = drift.loc[drift["psi"] > t.psi, "feature"].tolist()
    detail = f"over {t.psi}: {', '.join(over)}" if over else ""
    ece = result.calibration.ece if result.calibration is not None else np.nan
    return [Check("feature_psi", float(top), t.psi, detail),
            Check("score_psi", float(result.scores["psi"]), t.psi),
            Check("churn_ece", float(ece), t.ece),
            _shift_check("activity_shift", result.activity, t.activity),
            _shift_check("amount_shift", result.amounts, t.amount)]  # fmt: skip


def _shift_check(name: str, found: RoleChanges | None, threshold: float) -> Check:
    """The activity or amounts check: the largest shift (NaN when not computed), detailed
    by the roles that moved, with their change and interval."""
    if found is None:
        return Check(name, np.nan, threshold)
    moved = ", ".join(f"{r.role} {r.change:+.0%} [{r.low:+.0%}, {r.high:+.0%}]"
                      for r in found.moved.itertuples())  # fmt: skip
    return Check(name, float(found.shift), threshold, moved)
