"""The service's clock: the system's, or, for simulations and replays, a time read from a file.

With ``ServiceConfig.clock_file`` (``LIFECYCLE_CLOCK_FILE``) set, "now" is the ISO-8601 time
the file holds, re-read whenever the file changes: ``lifecycle simulate-loop`` moves it week by
week as its simulated world moves on. Everything that reads the time of a decision reads this
clock: the decisions' ``decided_at`` in the ledger, contact caps and cooldowns, the feedback
window and the cold-start features' default ``as_of``. Unset (the default and the only sane
production setting), it is the system clock.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pandas as pd


class Clock:
    """``now()``: seconds since the epoch, from the system or from ``path`` (module docstring)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._seen: tuple[int, float] | None = None  # (mtime_ns, seconds)
        self._lock = threading.Lock()
        if self.path is not None:
            self.now()  # a missing or unreadable file stops the start, not the first request

    def now(self) -> float:
        if self.path is None:
            return time.time()
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as err:
            raise ValueError(f"clock_file {self.path}: cannot read the time ({err})") from None
        with self._lock:
            if self._seen is None or self._seen[0] != mtime:
                self._seen = (mtime, read_clock_file(self.path))
            return self._seen[1]

    def timestamp(self) -> pd.Timestamp:
        """:meth:`now` as a UTC timestamp."""
        return pd.Timestamp(self.now(), unit="s", tz="UTC")


def read_clock_file(path: Path) -> float:
    """The time a clock file holds, in seconds since the epoch (naive = UTC)."""
    text = path.read_text().strip()
    try:
        when = pd.Timestamp(text)
    except ValueError:
        when = pd.NaT
    if pd.isna(when):
        raise ValueError(f"clock_file {path}: expected an ISO-8601 time; got {text[:40]!r}")
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    return when.timestamp()


def write_clock_file(path: str | Path, when: pd.Timestamp) -> None:
    """Set a clock file to ``when`` atomically (a reader sees the old time or the new one)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(pd.Timestamp(when).isoformat())
    tmp.replace(path)
