"""Buy-till-you-die features: the BG/NBD model fitted without labels on every build.

At each as-of date the model is fitted on the customers' own purchase histories up to then
(frequency, recency, age; no labels, so no leakage) and gives per customer:

| feature | definition |
|---|---|
| ``btyd_p_alive`` | P(the customer is still "alive", i.e. will buy again at some point) |
| ``btyd_expected_purchases_<h>d`` | expected purchases in the next h days |
| ``btyd_p_purchase_<h>d`` | P(at least one purchase in the next h days) |
| ``btyd_frequency`` | repeat purchase days so far |

``h`` is the churn horizon. Customers who never bought get NaN. When the plain maximum
likelihood fit runs away (e.g. purchases with no heterogeneity to speak of), it is refitted
with a small L2 penalty on the log-parameters (0.001, then 0.01). With fewer than
``min_customers`` buyers (a cold-start request of a few customers) the parameters recorded at
training (``params``) are used instead of a fit; without them the features are NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

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
    fitted: dict | None = field(default=None, init=False)

    def names(self) -> tuple[str, ...]:
        h = self.horizon_days
        return ("btyd_p_alive", f"btyd_expected_purchases_{h}d", f"btyd_p_purchase_{h}d",
                "btyd_frequency")  # fmt: skip

    def features(self, ev: EventArrays) -> dict[str, np.ndarray]:
        """The features of every customer code of ``ev`` (float32)."""
        from features.btyd import BGNBD, purchase_summary

        buys = ev.role == R["purchase"]
        x, t_x, age = purchase_summary(ev.code[buys], ev.ts[buys], ev.as_of, ev.n)
        known = ~np.isnan(x)
        model = self._model(BGNBD, x[known], t_x[known], age[known]) if known.any() else None
        out = {name: np.full(ev.n, np.nan, dtype=np.float32) for name in self.names()}
        out["btyd_frequency"][known] = x[known]
        if model is None or not known.any():
            return out
        args = (x[known], t_x[known], age[known])
        p_alive, expected, p_buy, _ = self.names()
        out[p_alive][known] = model.p_alive(*args)
        out[expected][known] = model.expected_purchases(self.horizon_days, *args)
        out[p_buy][known] = model.prob_purchase_within(self.horizon_days, *args)
        return out

    def _model(self, cls, x: np.ndarray, t_x: np.ndarray, age: np.ndarray):
        """A model fitted on these customers, else one with the recorded ``params``, else
        None (the features stay NaN; a failed fit is warned about)."""
        fit = self.refit or not self.params
        if fit and len(x) >= self.min_customers and (x > 0).sum() >= 2:
            for penalizer in PENALIZERS:  # plain MLE first; shrink only when it runs away
                try:
                    model = cls(penalizer=penalizer).fit(x, t_x, age)
                    self.fitted = dict(model.params_)
                    return model
                except ValueError as err:
                    failure = err
            warnings.warn(f"buy-till-you-die features: {failure}", RuntimeWarning, stacklevel=3)
        if not self.params:
            return None
        model = cls()
        model.params_ = dict(self.params)
        return model
