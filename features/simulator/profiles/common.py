"""Helpers shared by the profiles: the calendar, ids, month arithmetic and daily logs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

# Share of a day's activity per hour (0-23): quiet nights, a lunch bump, an evening peak.
HOUR_WEIGHTS = np.array([
    1.2, 0.7, 0.4, 0.3, 0.3, 0.5, 1.2, 2.4, 3.4, 3.6, 3.8, 4.2,
    4.8, 4.6, 4.2, 4.2, 4.4, 5.0, 6.0, 6.8, 7.2, 6.8, 5.0, 2.8,
])  # fmt: skip
HOUR_WEIGHTS = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()


@dataclass(frozen=True)
class Calendar:
    """Days ``first .. first + len - 1`` relative to ``start`` (day 0), as arrays by position."""

    start: np.datetime64
    first: int
    dates: np.ndarray  # datetime64[D]
    month: np.ndarray  # 1..12
    weekday: np.ndarray  # Monday = 0
    yyyymmdd: np.ndarray  # int64, e.g. 20250314

    @classmethod
    def make(cls, start: date, first: int, last: int) -> Calendar:
        """Calendar of days ``first .. last - 1``."""
        day0 = np.datetime64(start, "D")
        dates = day0 + np.arange(first, last)
        years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
        months = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
        dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
        weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        return cls(day0, first, dates, months, weekday, years * 10_000 + months * 100 + dom)

    def at(self, day: np.ndarray | int) -> np.ndarray | int:
        """Position in the calendar arrays of ``day`` (relative to ``start``)."""
        return day - self.first


def add_months(dates: np.ndarray, months: np.ndarray | int) -> np.ndarray:
    """``dates`` (datetime64[D]) plus whole calendar months, the day clipped to the month's end
    (Jan 31 + 1 month = Feb 28), as billing systems do."""
    month0 = dates.astype("datetime64[M]")
    dom = (dates - month0.astype("datetime64[D]")).astype(np.int64)
    target = month0 + months
    last_dom = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(
        np.int64
    )
    return target.astype("datetime64[D]") + np.minimum(dom, last_dom - 1)


def hour_seconds(
    rng: np.random.Generator, n: int, weights: np.ndarray = HOUR_WEIGHTS
) -> np.ndarray:
    """``n`` seconds of the day following the hourly ``weights``."""
    hours = rng.choice(len(weights), size=n, p=weights)
    return hours * 3600 + rng.integers(0, 3600, size=n)


def timestamps(start: np.datetime64, day: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Naive ``datetime64[s]`` of ``start`` + ``day`` days + ``seconds``."""
    return start.astype("datetime64[s]") + (np.asarray(day, np.int64) * 86_400 + seconds)


def day_dates(start: np.datetime64, day: np.ndarray) -> np.ndarray:
    """Calendar dates as ``datetime64[s]`` at midnight (NaN day -> NaT)."""
    day = np.asarray(day, dtype=float)
    out = np.full(len(day), np.datetime64("NaT"), dtype="datetime64[s]")
    ok = ~np.isnan(day)
    out[ok] = start.astype("datetime64[s]") + day[ok].astype(np.int64) * 86_400
    return out


def sequential_ids(prefix: str, n: int, width: int = 6) -> pd.array:
    """``prefix`` + zero-padded 1..n, in order (``C000001``...)."""
    width = max(width, len(str(n)))
    return pd.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype="str")


def choice_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``probs`` (rows sum to 1 or are scaled to), vectorised."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), probs.shape[1] - 1)


def expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Columns:
    """Arrays appended to per day, concatenated once at the end."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))

    def add(self, **cols: np.ndarray | float | int) -> None:
        n = max(len(v) for v in cols.values() if isinstance(v, np.ndarray))
        if n == 0:
            return
        for name, v in cols.items():
            self.parts[name].append(v if isinstance(v, np.ndarray) else np.full(n, v))

    def get(self, name: str, dtype: type | str = float) -> np.ndarray:
        parts = self.parts.get(name)
        return np.concatenate(parts) if parts else np.zeros(0, dtype)
