"""What a service worker holds: the decision engine (swapped whole on reload), the online
store, the ledger, and the cached scores of every stored customer for ``/batch`` filters.

Reload: a daemon thread polls the registry's aliases every ``reload_seconds``; when a version
changed (or an offers champion appeared) it prepares the new engine *beside* the current one
(bundle loaded, trees compiled, the store's scores precomputed) and then installs the engine
and its scores in one step, so a request in flight finishes on the engine it started with and
the next one gets the new one, already fast (issue 15: no stall after a swap).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from features.store import NoVersionError, StoreUnavailableError, open_store
from serving import bundle as bundles
from serving.clock import Clock
from serving.compiled import DEFAULT_CACHE
from serving.config import ServiceConfig
from serving.consistency import agreeing_clv, missing_columns, models_config, store_problem
from serving.engine import DecisionEngine, Scores
from serving.inputs import FeatureRows
from serving.ledger import open_or_stand_in
from serving.ledger_common import LedgerUnavailable
from serving.preparation import (
    StoreScores,
    behind_requests,
    freeze_heap,
    lower_priority,
    score_in_chunks,
    scores_key,
    settle_heap,
)
from serving.scoring import limit_lightgbm_threads

logger = logging.getLogger("serving.state")


class ServiceState:
    def __init__(self, config: ServiceConfig) -> None:
        limit_lightgbm_threads(config.lightgbm_threads)  # DESIGN sections 8, 11
        self.config = config
        self.clock = Clock(config.clock_file)
        self.store = open_store(config.store)
        self.ledger = open_or_stand_in(config.ledger, checkpoint_seconds=1.0,
                                       durability=config.ledger_durability)  # fmt: skip
        self.engine: DecisionEngine | None = None
        self.error: str | None = None
        self._scored: StoreScores | None = None
        self._precomputing = threading.Lock()
        self._checked: tuple = (None, None)  # (engine id, store version), its problem
        self._scoring = threading.Lock()  # one whole-store scoring at a time; others wait
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.tracking_uri: str | None = None
        self.reloads = 0
        self.compile_error: str | None = None
        self.precompute_error: str | None = None
        self.monitor_error: str | None = None
        self._catalog_file: Path | None = None  # the loaded catalog, its (mtime, size)
        self._catalog_stamp: tuple | None = None

    # ---- loading ------------------------------------------------------------------

    def load(self) -> None:
        """Load the models (raising :class:`bundles.ModelsUnavailable` with a clear message)
        and the offer catalog, when there is one.

        The first load serves at once and compiles and precomputes in the background. A
        reload prepares the new engine completely while the current one serves
        (:meth:`_prepare`), then installs it with its scores in one step; a failure leaves
        the current engine serving (and the catalog stamp as it was: the next poll retries).
        """
        stamp = self._catalog_file, self._catalog_stamp
        try:
            if self.engine is None:
                engine = self._new_engine()
                self._install(engine, None)
                settle_heap()
                self._finish_in_background(engine)
                return
            with behind_requests():
                engine = self._new_engine()
                scored = self._prepare(engine)
                freeze_heap()  # the new engine's objects, before it serves
            self._install(engine, scored)
        except BaseException:
            self._catalog_file, self._catalog_stamp = stamp
            raise

    def _new_engine(self) -> DecisionEngine:
        """A :class:`DecisionEngine` on the configured models and catalog (not serving yet)."""
        if self.config.models == "registry":
            import mlflow

            from training.registry import tracking_uri

            self.tracking_uri = self.tracking_uri or tracking_uri()  # pinned for the poller
            mlflow.set_tracking_uri(self.tracking_uri)
            loaded = bundles.from_registry(self.config.alias)
        else:
            loaded = bundles.from_folder(self.config.models)
        c = self.config
        catalog, no_catalog = self.catalog()
        project, fingerprint = models_config(loaded)  # ConfigMismatch: not ready, with why
        loaded = agreeing_clv(loaded, fingerprint)
        engine = DecisionEngine(loaded, catalog, c.policy, c.lightgbm_threads, c.parallel_rows,
                                no_catalog)  # fmt: skip
        engine.project, engine.fingerprint = project, fingerprint
        return engine

    def _install(self, engine: DecisionEngine, scored: StoreScores | None) -> None:
        """Serve ``engine`` (with ``scored``, its scores of the store, or None) from the next
        request on: one step under the lock, so no request sees one without the other."""
        with self._lock:
            self.engine, self._scored, self.error = engine, scored, None

    def _finish_in_background(self, engine: DecisionEngine) -> None:
        """The first load: compile and precompute while ``engine`` already serves."""
        if self.config.compile_trees:
            threading.Thread(target=self._compile, args=(engine,), name="tree-compiler",
                             daemon=True).start()  # fmt: skip
        elif self.config.precompute_scores:
            self.precompute(engine)

    def _prepare(self, engine: DecisionEngine) -> StoreScores | None:
        """``engine`` made ready to serve beside the serving one: its trees compiled, the
        current store version scored with them (None: not configured, no version, or the
        scoring failed: kept in ``precompute_error``, requests then score live)."""
        if self.config.compile_trees:
            self._compile_trees(engine)
        if not self.config.precompute_scores:
            return None
        try:
            version = self.store.current()
            return None if version is None else self._score_store(engine, version.version)
        except Exception as err:  # noqa: BLE001 - an optimisation: requests score live
            self.precompute_error = f"precomputing the store's scores failed: {err!r}"
            return None

    def catalog(self) -> tuple[pd.DataFrame | None, str | None]:
        """The offer catalog (``offers``, else the one an export folder ships), or None and
        why there is none. A configured file that is missing or invalid raises."""
        path = self.config.offers
        if path is None and self.config.models != "registry":
            shipped = Path(self.config.models) / "offers.json"
            path = shipped if shipped.exists() else None
        self._catalog_file, self._catalog_stamp = path, file_stamp(path)
        if path is None:
            shipped = "" if self.config.models == "registry" else ", or export one with the models"
            return None, f"no offer catalog configured (set offers / LIFECYCLE_OFFERS{shipped})"
        catalog = bundles.load_catalog(path)
        if catalog.empty:
            return None, f"the offer catalog {path} lists no offers"
        return catalog, None

    def _compile(self, engine: DecisionEngine) -> None:
        """Compile ``engine``'s trees (serving/compiled.py); it answers meanwhile as it is."""
        self._compile_trees(engine)
        settle_heap()
        if self.config.precompute_scores:
            self.precompute(engine)  # with the compiled trees: ~2.5 s per 100k customers

    def _compile_trees(self, engine: DecisionEngine) -> None:
        try:
            engine.compile_trees(self.config.compile_cache or DEFAULT_CACHE)
        except Exception as err:  # noqa: BLE001 - compiled trees are an optimisation only
            self.compile_error = f"compiling the trees failed: {err!r}"

    def try_load(self) -> None:
        """:meth:`load`; a failure is kept in ``error`` (not ready, ``GET /models`` says why)
        and logged."""
        try:
            self.load()
        except (bundles.ModelsUnavailable, OSError, ValueError) as err:
            self.error = str(err)
            logger.warning("models not loaded: %s", self.error)

    def ready(self) -> bool:
        return self.not_ready() is None

    def not_ready(self) -> str | None:
        """Why the service cannot decide now (None: it can): the models are not loaded; the
        store's server is down, the store is empty or built for other models; the ledger's
        server is down. ``/readyz`` answers it with its 503."""
        engine = self.engine
        if engine is None:
            return f"models are not loaded: {self.error or 'still loading'}"
        try:
            version = self.store.current()
        except StoreUnavailableError as err:
            return str(err)
        if version is None:
            return (f"no version materialised yet in the online store {self.store.address}; "
                    "run `lifecycle features materialize`")  # fmt: skip
        return self._problem(engine, version) or self.ledger_problem()

    def ledger_problem(self) -> str | None:
        """Why the ledger cannot be written now (its server down; its file damaged, locked,
        replaced), or None."""
        try:
            self.ledger.ping()
        except LedgerUnavailable as err:
            return str(err)
        return None

    def store_problem(self) -> str | None:
        """Why the current store version cannot serve the loaded models (another config), or
        why the store cannot be read at all (its server is down)."""
        try:
            return self._problem(self.engine, self.store.current())
        except StoreUnavailableError as err:
            return str(err)

    def _problem(self, engine: DecisionEngine | None, version) -> str | None:
        """Why ``version`` cannot serve ``engine``'s models: another config, or columns the
        models read that it lacks (checked once per engine and version)."""
        if engine is None or version is None:
            return None
        key = (id(engine), version.version)
        if self._checked[0] != key:
            where = self.store.address
            found = store_problem(engine.fingerprint, version.feature_set, version.version, where)
            found = found or missing_columns(engine.input_columns(), version, where)
            self._checked = (key, found)
        return self._checked[1]

    def start_reloader(self) -> None:
        if self.config.models != "registry" or self.config.reload_seconds <= 0:
            return
        threading.Thread(target=self._poll_behind_requests, name="model-reloader",
                         daemon=True).start()  # fmt: skip

    def _poll_behind_requests(self) -> None:
        """:meth:`_poll` at a low CPU priority (nice 10): a reload's preparation (compiling the
        trees, scoring the store) takes the cores the requests leave."""
        lower_priority()
        self._poll()

    def start_monitor_metrics(self) -> None:
        """Publish the configured ``monitor.prom`` on ``/metrics`` now and whenever it
        changes (checked every ``monitor_refresh_seconds``); a missing or unreadable file is
        logged and retried, never fatal."""
        if self.config.monitor_metrics is None:
            return
        threading.Thread(target=self._watch_monitor, name="monitor-metrics",
                         daemon=True).start()  # fmt: skip

    def _watch_monitor(self) -> None:
        from serving.metrics import publish_monitor

        path, seen = Path(self.config.monitor_metrics), None
        while True:
            try:
                stamp = path.stat().st_mtime_ns
                if stamp != seen:
                    publish_monitor(path.read_text())
                    seen, self.monitor_error = stamp, None
            except (OSError, ValueError) as err:
                self.monitor_error = f"monitor metrics {path}: {err}"
            if self._stop.wait(self.config.monitor_refresh_seconds):
                return

    def stop(self) -> None:
        self._stop.set()
        self.ledger.close()

    def _poll(self) -> None:
        """Check for new champions until stopped. Nothing may end this thread: a load failing
        in any way (a registry busy under a retrain's writes, an artifact half-written) is
        logged and kept in ``error`` (``GET /models``), the current models keep serving, and
        the next poll tries again."""
        while not self._stop.wait(self.config.reload_seconds):
            try:
                self.reload_if_changed()
            except Exception as err:  # noqa: BLE001 - see the docstring
                self.error = f"reloading the models failed (retrying): {err!r}"
                logger.warning("%s", self.error)

    def reload_if_changed(self) -> bool:
        """Reload when the registry's alias points at other versions than the loaded ones, or
        the configured offer catalog file changed (an offer added: served without a restart;
        an offer the offers model has not seen is explored until a retrain learns it)."""
        try:
            latest = bundles.registry_versions(self.config.alias, self.tracking_uri)
        except Exception as err:  # noqa: BLE001 - a registry hiccup must not kill the poller
            self.error = f"registry poll failed: {err}"
            return False
        current = None if self.engine is None else self.engine.versions
        same_catalog = self._catalog_stamp == file_stamp(self._catalog_file)
        if latest is None or (latest == current and same_catalog):
            return False
        self.try_load()
        self.reloads += self.engine is not None and self.engine.versions == latest
        return True

    # ---- features -----------------------------------------------------------------

    def lookup(self, customer_ids: list[str]) -> FeatureRows:
        return FeatureRows.from_lookup(self.store.lookup(customer_ids))

    def all_scores(self, engine: DecisionEngine) -> tuple[FeatureRows, Scores]:
        """Scores of every customer in the current store version (cached per version)."""
        version = self.store.current()
        if version is None:
            raise NoVersionError(f"the online store {self.store.address} has no version yet")
        scored = self._store_scores(engine, version.version)
        return scored.rows, scored.scores

    def _store_scores(self, engine: DecisionEngine, version: int) -> StoreScores:
        key = scores_key(version, engine)
        cached = self._scored
        if cached is not None and cached.key == key:
            return cached
        with self._scoring:  # a request and the background precompute never both score it
            cached = self._scored
            if cached is None or cached.key != key:
                cached = self._score_store(engine, version)
                with self._lock:  # kept only while ``engine`` serves (not a replaced one's)
                    if self.engine is engine:
                        self._scored = cached
        return cached

    def _score_store(self, engine: DecisionEngine, version: int) -> StoreScores:
        """Every stored customer's rows and ``engine``'s scores of them (not kept)."""
        key = scores_key(version, engine)
        rows = self.lookup(self.store.customer_ids())
        if rows.layout != ("store", version):  # materialised meanwhile: score that
            key = (rows.layout[1], key[1])
        position = {c: i for i, c in enumerate(rows.customer_ids)}
        try:
            scores = score_in_chunks(engine, rows)
        except ValueError as err:  # a version materialised meanwhile lacks columns
            raise StoreUnavailableError(f"the online store {self.store.address}: "
                                        f"{err}") from None  # fmt: skip
        return StoreScores(key, rows, scores, position)

    def lookup_scored(
        self, customer_ids: list[str], engine: DecisionEngine
    ) -> tuple[FeatureRows, Scores | None]:
        """The rows of ``customer_ids`` and, when the store's scores are precomputed for
        the current version and ``engine``'s models, their scores (else None: score them).

        The store is a snapshot, so a stored customer's scores are those of the snapshot and
        the models, whichever request asks: computed once per version (in the background,
        :meth:`precompute`), they spare each request the look-up and the trees. An unknown
        id is a not-found row, as from the store."""
        cached = self._scored
        if not self.config.precompute_scores:
            return self.lookup(customer_ids), None
        version = self.store.current()
        if (
            cached is None or version is None or not cached.position
            or cached.key != scores_key(version.version, engine)
        ):  # fmt: skip
            if cached is not None:
                self.precompute(engine)  # a new store version or models: score it
            return self.lookup(customer_ids), None
        where = np.fromiter((cached.position.get(c, -1) for c in customer_ids), np.intp,
                            len(customer_ids))  # fmt: skip
        missing = where < 0
        at = np.where(missing, 0, where)  # unknown ids: any row, then marked not found
        rows = cached.rows.take(at, tuple(customer_ids))
        return rows.unknown(missing) if missing.any() else rows, cached.scores.take(at)

    def precompute(self, engine: DecisionEngine) -> None:
        """Score the current store version in a background thread (one at a time)."""
        if not self._precomputing.acquire(blocking=False):
            return

        def run() -> None:
            try:
                version = self.store.current()
                if version is not None and self.engine is engine:
                    self._store_scores(engine, version.version)
                    settle_heap()  # they live as long as the version: no full collections
            except Exception as err:  # noqa: BLE001 - requests score live meanwhile
                self.precompute_error = f"precomputing the store's scores failed: {err!r}"
            finally:
                self._precomputing.release()

        threading.Thread(target=run, name="store-scores", daemon=True).start()


NOT_LOADED = {"available": False, "policy": None, "reason": "the models are not loaded (see error)",
              "catalog": []}  # fmt: skip


def file_stamp(path: str | Path | None) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, None when there is none: cheap enough to poll."""
    try:
        found = Path(path).stat() if path is not None else None
    except OSError:
        return None
    return None if found is None else (found.st_mtime_ns, found.st_size)


def models_summary(state: ServiceState) -> dict:
    """What ``GET /models`` answers."""
    from dataclasses import asdict

    try:
        engine, version, scored = state.engine, state.store.current(), state._scored
    except StoreUnavailableError:  # "error" below names it
        engine, version, scored = state.engine, None, state._scored
    store = None if version is None else {
        "version": version.version, "feature_set": version.feature_set,
        "as_of": version.as_of.isoformat(), "customers": version.n_customers,
    }  # fmt: skip
    offers = NOT_LOADED
    if engine is not None:
        offers = {**engine.offers_status, "catalog": engine.catalog.ids}
    return {
        "ready": state.ready(),
        "error": state.error or state.store_problem() or state.ledger_problem(),
        "source": None if engine is None else engine.bundle.source,
        "models": {} if engine is None else {n: asdict(i) for n, i in engine.bundle.info.items()},
        "offers": offers,
        "clv": None
        if engine is None
        else {k: v for k, v in engine.clv_status.items() if k != "column"},  # fmt: skip
        "store": store,
        "config_fingerprint": None if engine is None else engine.fingerprint,
        "policy": state.config.policy.model_dump(),
        "reloads": state.reloads,
        "compiled": {} if engine is None else engine.compiled,
        "compile_error": state.compile_error,
        "precomputed_scores": None
        if scored is None
        else {
            "store_version": scored.key[0],
            "customers": len(scored.position),
            "current": engine is not None
            and version is not None
            and scored.key == scores_key(version.version, engine),
        },
        "precompute_error": state.precompute_error,
        "monitor_metrics_error": state.monitor_error,
    }
