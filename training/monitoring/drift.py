"""Distribution drift between a reference sample (the training snapshot) and a current one.

**PSI** (population stability index) over bins ``i`` with reference shares ``e_i`` and current
shares ``a_i``::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

Numeric columns are binned at the reference's quantiles (``bins`` equal-frequency bins; tied
quantiles merge, so a column that is mostly 0 gets fewer bins); a numeric column with at most
``bins`` distinct reference values, and every categorical (``category``/``str``/``object``/
bool) column, is binned by value. Missing values are a bin of their own. A share of 0 is
replaced by ``EPSILON`` (the log would be infinite). Rules of thumb: < 0.1 stable, 0.1-0.25
moderate, > 0.25 a large shift.

**Two-sample test**: Kolmogorov-Smirnov (``scipy.stats.ks_2samp``) on the non-missing values
of a numeric column; a chi-square test of homogeneity (``scipy.stats.chi2_contingency``) on
the 2 x k table of counts by value (missing as a value) of a binned-by-value column. With
thousands of rows, tiny differences are significant: rank by PSI, read the p-value beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

EPSILON = 1e-4  # the share an empty bin counts as
BINS = 10
MISSING = "<missing>"


def by_value(reference: pd.Series, bins: int = BINS) -> bool:
    """Whether a column is binned by value: categorical, bool, or at most ``bins`` distinct
    numeric values in the reference."""
    dtype = reference.dtype
    if not (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
        return True
    return reference.dropna().nunique() <= bins


def bin_counts(reference: pd.Series, current: pd.Series, bins: int = BINS) -> pd.DataFrame:
    """Counts of both samples in the bins :func:`psi` uses (module docstring).

    Returns
    -------
    DataFrame indexed by bin label (the value, ``"<= edge"``/``"> edge"`` intervals, or
    ``"<missing>"``) with ``reference`` and ``current`` counts (int).
    """
    ref, cur = pd.Series(reference), pd.Series(current)
    if by_value(ref, bins):
        both = {"reference": _value_counts(ref), "current": _value_counts(cur)}
        return pd.DataFrame(both).fillna(0).astype(int)
    values = ref.dropna().to_numpy(dtype=float)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    labels = [f"<= {e:.6g}" for e in edges] + [f"> {edges[-1]:.6g}"]
    counts = {}
    for name, sample in (("reference", ref), ("current", cur)):
        x = pd.to_numeric(sample, errors="coerce").to_numpy(dtype=float)
        found = np.bincount(np.searchsorted(edges, x[~np.isnan(x)], side="left"),
                            minlength=len(labels))  # fmt: skip
        counts[name] = [*found, int(np.isnan(x).sum())]
    table = pd.DataFrame(counts, index=[*labels, MISSING])
    return table[(table.index != MISSING) | (table.sum(axis=1) > 0)]


def _is_number(column: pd.Series) -> bool:
    dtype = column.dtype
    return pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def _value_counts(column: pd.Series) -> pd.Series:
    """Counts by value, indexed by str labels (numbers and booleans as floats, so ``3``,
    ``3.0`` and ``True``/``1.0`` from a store that widened the dtype fall in one bin)."""
    if _is_number(column):
        counts = pd.to_numeric(column, errors="coerce").astype(float).value_counts(dropna=False)
        labels = [MISSING if np.isnan(v) else f"{v:.6g}" for v in counts.index.to_numpy(float)]
    else:
        counts = column.astype("object").value_counts(dropna=False)
        labels = [MISSING if pd.isna(v) else str(v) for v in counts.index]
    return pd.Series(counts.to_numpy(), index=labels).groupby(level=0).sum()


def psi_from_counts(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """PSI of two count vectors over the same bins (NaN when either sample is empty)."""
    e, a = np.asarray(expected, float), np.asarray(actual, float)
    if e.sum() == 0 or a.sum() == 0:
        return float("nan")
    e, a = np.maximum(e / e.sum(), epsilon), np.maximum(a / a.sum(), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(expected, actual, bins: int = BINS) -> float:
    """The PSI of ``actual`` against the reference ``expected`` (module docstring)."""
    counts = bin_counts(pd.Series(expected), pd.Series(actual), bins)
    return psi_from_counts(counts["reference"].to_numpy(), counts["current"].to_numpy())


def two_sample_test(reference, current, bins: int = BINS) -> tuple[str, float, float]:
    """(test name, statistic, p-value): KS for numeric columns, chi-square for columns binned
    by value (module docstring); NaN statistic and p-value when a sample is empty."""
    ref, cur = pd.Series(reference), pd.Series(current)
    if by_value(ref, bins):
        if len(ref) == 0 or len(cur) == 0:
            return "chi2", np.nan, np.nan
        table = bin_counts(ref, cur, bins).T.to_numpy()
        if table.shape[1] < 2:  # one value in both samples: nothing differs
            return "chi2", 0.0, 1.0
        found = stats.chi2_contingency(table, correction=False)
        return "chi2", float(found.statistic), float(found.pvalue)
    x = pd.to_numeric(ref, errors="coerce").dropna().to_numpy(dtype=float)
    y = pd.to_numeric(cur, errors="coerce").dropna().to_numpy(dtype=float)
    if len(x) == 0 or len(y) == 0:
        return "ks", np.nan, np.nan
    found = stats.ks_2samp(x, y)
    return "ks", float(found.statistic), float(found.pvalue)


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns=None, bins: int = BINS
) -> pd.DataFrame:
    """Per-feature drift of ``current`` against ``reference``.

    ``columns``: the features to compare (default: the columns both frames have, but
    ``customer_id``). Returns one row per feature, largest PSI first: ``feature``, ``psi``,
    ``test`` (``ks``/``chi2``), ``statistic``, ``p_value``, ``reference_missing`` and
    ``current_missing`` (shares), ``reference_mean`` and ``current_mean`` (numeric only).
    """
    if columns is None:
        columns = [c for c in reference.columns if c in current.columns and c != "customer_id"]
    rows = []
    for name in columns:
        ref, cur = reference[name], current[name]
        test, statistic, p_value = two_sample_test(ref, cur, bins)
        numeric = _is_number(ref)
        rows.append({"feature": str(name), "psi": psi(ref, cur, bins), "test": test,
                     "statistic": statistic, "p_value": p_value,
                     "reference_missing": float(ref.isna().mean()) if len(ref) else np.nan,
                     "current_missing": float(cur.isna().mean()) if len(cur) else np.nan,
                     "reference_mean": _mean(ref) if numeric else np.nan,
                     "current_mean": _mean(cur) if numeric else np.nan})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["feature", "psi", "test", "statistic", "p_value",
                                        "reference_missing", "current_missing",
                                        "reference_mean", "current_mean"])  # fmt: skip
    return frame.sort_values("psi", ascending=False, kind="stable", na_position="last",
                             ignore_index=True)  # fmt: skip


def _mean(column: pd.Series) -> float:
    values = pd.to_numeric(column, errors="coerce").astype(float)
    return float(values.mean()) if values.notna().any() else float("nan")


def score_drift(reference_scores, current_scores, bins: int = BINS) -> dict[str, float]:
    """Drift of a model's scores (e.g. churn probabilities): ``psi`` (quantile bins of the
    reference scores), ``ks_statistic``, ``p_value``, the means and sizes of both samples."""
    ref = pd.Series(np.asarray(reference_scores, dtype=float))
    cur = pd.Series(np.asarray(current_scores, dtype=float))
    _, statistic, p_value = two_sample_test(ref, cur, bins)
    return {"psi": psi(ref, cur, bins), "ks_statistic": statistic, "p_value": p_value,
            "reference_mean": _mean(ref), "current_mean": _mean(cur),
            "reference_n": int(ref.notna().sum()), "current_n": int(cur.notna().sum())}  # fmt: skip
