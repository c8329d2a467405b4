"""The service's clock: the system's by default; a file's time for simulations and replays."""

import time

import pandas as pd
import pytest

from serving.clock import Clock, write_clock_file


def test_without_a_file_it_is_the_system_clock():
    before = time.time()
    assert before <= Clock().now() <= time.time()


def test_a_clock_file_sets_now_and_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "clock"
    write_clock_file(path, pd.Timestamp("2026-01-08T00:00:00Z"))
    clock = Clock(path)
    assert clock.timestamp() == pd.Timestamp("2026-01-08T00:00:00Z")
    write_clock_file(path, pd.Timestamp("2026-01-15T06:00:00+00:00"))
    assert clock.now() == pd.Timestamp("2026-01-15T06:00:00Z").timestamp()
    path.write_text("2026-02-01 00:00:00")  # naive = UTC
    assert clock.timestamp() == pd.Timestamp("2026-02-01", tz="UTC")


def test_a_missing_or_garbled_clock_file_is_named_at_start(tmp_path):
    with pytest.raises(ValueError, match="clock_file .*missing"):
        Clock(tmp_path / "missing")
    bad = tmp_path / "clock"
    bad.write_text("next tuesday")
    with pytest.raises(ValueError, match="expected an ISO-8601 time; got 'next tuesday'"):
        Clock(bad)
