"""Monitoring (``lifecycle monitor``, DESIGN section 13): is the world still the one the
champion models were trained on, and do their predictions come true?

- :mod:`~training.monitoring.drift`: per-feature and score drift (PSI and a two-sample test).
- :mod:`~training.monitoring.outcomes`: realised calibration of a cohort whose horizon has
  passed, realised offer performance against the control arm.
- :mod:`~training.monitoring.activity` and :mod:`~training.monitoring.amounts`: each role's
  event rate, and each money role's amount per event, last week against a reference week.
- :mod:`~training.monitoring.ledger_health`: the feedback ledger's decisions, feedback lag,
  exploration share and the offers decided without training support.
- :mod:`~training.monitoring.inputs`: the reference (training snapshot), the current vectors
  (online store), the calibration cohort and the exposures, from the data, registry and store.
- :mod:`~training.monitoring.checks`: every computation of one run and the thresholds.
- :mod:`~training.monitoring.outputs` and :mod:`~training.monitoring.page`: ``monitor.json``,
  ``monitor.prom`` (Prometheus text format) and ``monitor.html``.

The statistics are numpy/scipy: the monitoring libraries do not install with the project's
pins (see the README's monitoring section). Every module but ``inputs``, ``outputs`` and
``page`` is pure (no MLflow, no files).
"""
