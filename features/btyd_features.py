"""Buy-till-you-die features: BG/NBD and Gamma-Gamma fitted without labels on every build.

At each as-of date the models are fitted on the customers' own purchase histories up to then
(frequency, recency, age, mean repeat spend; no labels, so no leakage) and give per customer:

| feature | definition |
|---|---|
| ``btyd_p_alive`` | P(the customer is still "alive", i.e. will buy again at some point) |
| ``btyd_expected_purchases_<h>d`` | expected purchases in the next h days |
| ``btyd_p_purchase_<h>d`` | P(at least one purchase in the next h days) |
| ``btyd_frequency`` | repeat purchase days so far |
| ``btyd_expected_spend`` | expected value of a future purchase day (Gamma-Gamma) |
| ``btyd_clv_<H>d`` | customer lifetime value: discounted expected margin over H days |

``h`` is the churn horizon, ``H`` the CLV horizon (``features.clv``). Customers who never
bought get NaN. When a plain maximum likelihood fit runs away (e.g. purchases with no
heterogeneity to speak of), it is refitted with a small L2 penalty on the log-parameters
(0.001, then 0.01). With fewer than ``min_customers`` buyers (a cold-start request of a few
customers), or ``refit=False`` (serving), the parameters recorded at training (``params``)
are used instead of a fit; without them the features are NaN. Without purchase amounts to
speak of, the spend and CLV columns are NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from features.clv import expected_clv
from features.families import EventArrays, R

MIN_CUSTOMERS = 50
PENALIZERS = (0.0, 0.001, 0.01)


@dataclass
class BTYDFeatures:
    """The BG/NBD features of every customer at a build's as-of.

    ``refit=True`` (training: point-in-time at each snapshot) fits the model on the build's
    customers, falling back to ``params`` (r, alpha, a, b) when they are too few or the fit
    fails. ``refit=False`` with ``params`` (serving) scores with them as recorded at training,
    so a customer gets the same numbers from the online store and from ``/score``.
    """

    horizon_days: int = 90
    params: dict | None = None
    refit: bool = True
    min_customers: int = MIN_CUSTOMERS
    clv_horizon_days: int = 365
    clv_annual_discount_rate: float = 0.1
    clv_margin_share: float = 1.0
    fitted: dict | None = field(default=None, init=False)

    def names(self) -> tuple[str, ...]:
        h = self.horizon_days
        return ("btyd_p_alive", f"btyd_expected_purchases_{h}d", f"btyd_p_purchase_{h}d",
                "btyd_frequency", "btyd_expected_spend", self.clv_column)  # fmt: skip

    @classmethod
    def for_config(cls, dataset, serving: bool = False) -> BTYDFeatures:
        """The features a resolved ``DatasetConfig`` asks for; ``serving``: score with the
        recorded parameters (the store, reports, ``/score``) instead of refitting."""
        return cls(dataset.churn_horizon_days, dataset.btyd_params, refit=not serving,
                   clv_horizon_days=dataset.clv_horizon_days,
                   clv_annual_discount_rate=dataset.clv_annual_discount_rate,
                   clv_margin_share=dataset.clv_margin_share)  # fmt: skip

    @property
    def clv_column(self) -> str:
        return f"btyd_clv_{self.clv_horizon_days}d"

    def features(self, ev: EventArrays) -> dict[str, np.ndarray]:
        """The features of every customer code of ``ev`` (float32)."""
        from features.btyd import BGNBD, purchase_summary
        from features.spend import GammaGamma, spend_summary

        buys = ev.role == R["purchase"]
        x, t_x, age = purchase_summary(ev.code[buys], ev.ts[buys], ev.as_of, ev.n)
        known = ~np.isnan(x)
        self.fitted = None
        model = self._model(BGNBD, x[known], t_x[known], age[known]) if known.any() else None
        out = {name: np.full(ev.n, np.nan, dtype=np.float32) for name in self.names()}
        out["btyd_frequency"][known] = x[known]
        if model is None or not known.any():
            return out
        args = (x[known], t_x[known], age[known])
        p_alive, expected, p_buy, _, spend_name, clv_name = self.names()
        out[p_alive][known] = model.p_alive(*args)
        out[expected][known] = model.expected_purchases(self.horizon_days, *args)
        out[p_buy][known] = model.prob_purchase_within(self.horizon_days, *args)
        amount = np.nan_to_num(ev.amount[buys])
        _, m = spend_summary(ev.code[buys], ev.ts[buys], amount, ev.as_of, ev.n)
        m = m[known]
        priced_x = np.where(np.nan_to_num(m) > 0, x[known], 0.0)  # repeat buyers who paid
        spend = self._model(GammaGamma, priced_x, m)
        if spend is not None:
            per_purchase = spend.conditional_expected_average_profit(priced_x, m)
            out[spend_name][known] = per_purchase
            out[clv_name][known] = expected_clv(
                model, spend, *args, m, self.clv_horizon_days,
                self.clv_annual_discount_rate, self.clv_margin_share,
            )  # fmt: skip
        return out

    def _model(self, cls, *summary: np.ndarray):
        """A ``cls`` (BGNBD or GammaGamma) fitted on these customers, else one with its
        recorded ``params``, else None (its features stay NaN; a failed fit is warned about).
        What was fitted is added to ``fitted``."""
        names = cls_param_names(cls)
        recorded = {k: self.params[k] for k in names if k in (self.params or {})}
        x = summary[0]
        if (self.refit or len(recorded) < len(names)) and len(x) >= self.min_customers \
                and (x > 0).sum() >= 2:  # fmt: skip
            failure = None
            for penalizer in PENALIZERS:  # plain MLE first; shrink only when it runs away
                try:
                    model = cls(penalizer=penalizer).fit(*summary)
                    self.fitted = {**(self.fitted or {}), **model.params_}
                    return model
                except ValueError as err:
                    failure = err
            warnings.warn(f"buy-till-you-die features: {failure}", RuntimeWarning, stacklevel=3)
        if len(recorded) < len(names):
            return None
        model = cls()
        model.params_ = recorded
        return model


def cls_param_names(cls) -> tuple[str, ...]:
    """The parameter names of a BGNBD (r, alpha, a, b) or GammaGamma (p, q, v) model."""
    from features import btyd, spend

    return btyd.PARAM_NAMES if cls is btyd.BGNBD else spend.PARAM_NAMES
