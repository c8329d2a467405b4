"""The closed loop: the simulator is the world, the running service decides, ``lifecycle
retrain`` learns from its ledger, week by week (issue 14, point 5).

Set-up: the simulator writes a log whose randomised campaigns ran only in its last
``pilot_weeks`` weeks (a pilot: little to learn offers from); ``lifecycle retrain`` trains and
promotes the first champions and materialises the store. Three services start on the
registry, with the clock of the simulated world (``LIFECYCLE_CLOCK_FILE``, serving/clock.py):

- ``live``: the champions, epsilon-greedy with ``exploration``; its ledger is what the loop
  learns from;
- ``frozen``: the week-0 champions (alias ``frozen``), greedy: what not learning gives;
- ``previous``: last week's champions (alias ``previous``), greedy: what a promotion replaced.

Every week: a random ``audience_share`` of the contactable customers is the campaign audience;
``live`` decides for it through ``POST /batch`` (and the other two, for comparison only); the
world realises each contacted customer's response from its true conversion probabilities and
the loop posts ``sent`` (and later ``converted``, with the purchase's amount) to ``/feedback``;
a week of events accrues; the data folder is rewritten and ``lifecycle retrain --ledger``
runs (offers every week, all models every ``full_retrain_every`` weeks); the services pick up
the new champions and store version by themselves. Each week's figures come from the
ground truth (:mod:`training.loop_values`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.simulator import SimConfig
from features.simulator.world import Sends, World
from serving.clock import write_clock_file
from serving.inputs import FeatureRows, InputPlan
from training import loop_values as lv

MODEL_NAMES = ("lifecycle-churn", "lifecycle-stage", "lifecycle-clv", "lifecycle-offers")


class LoopConfig(BaseModel):
    """The closed loop's one config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: int = Field(50_000, ge=500)
    seed: int = Field(0, ge=0)
    weeks: int = Field(12, ge=1, le=104)
    history_days: int = Field(365, ge=120, description="length of the log before week 0")
    pilot_weeks: int = Field(
        8, ge=1, description="the log's randomised campaigns ran in its last N weeks only"
    )
    audience_share: float = Field(0.1, gt=0, le=1, description="contactable customers per week")
    exploration: float = Field(0.1, ge=0, le=0.5, description="the live service's epsilon")
    full_retrain_every: int = Field(
        4, ge=1, description="weeks between retraining all models (offers: every week)"
    )
    bound_rows: int = Field(
        20_000, ge=500, description="customers the observable bound's regressions learn from"
    )
    reload_seconds: float = Field(1.0, gt=0, description="the services' registry poll")
    price_change: tuple[int, float] | None = Field(
        None, description="(week, factor): from that week on, prices are the log's x factor "
        "(a rise sends paying customers at risk: World.change_prices)",
    )  # fmt: skip
    new_offer: tuple[int, str] | None = Field(
        None, description="(week, offer id): an offer of the simulator's catalog held back "
        "from the log and added to the catalog that week (World.add_offer)",
    )  # fmt: skip
    monitor: bool = Field(True, description="run `lifecycle monitor` after every retrain")
    monitor_reference_days: int = Field(
        14, ge=7, description="the monitor compares the store with the vectors this many days "
        "earlier (--reference-as-of): a shift shows against the recent past",
    )  # fmt: skip
    project: dict = Field(
        default_factory=dict, description="project config for every `lifecycle retrain` "
        "(lifecycle.yaml's content), e.g. {'offers': {'min_arm_size': 50}} for a small world",
    )  # fmt: skip

    def sim_config(self) -> SimConfig:
        window = SimConfig().response_window_days
        first = self.history_days - window - 7 * self.pilot_weeks
        held = () if self.new_offer is None else (self.new_offer[1],)
        return SimConfig(customers=self.customers, seed=self.seed, days=self.history_days,
                         campaign_first_day=max(first, 0), future_days=0,
                         held_back_offers=held)  # fmt: skip


@dataclass(frozen=True)
class Paths:
    workdir: Path

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def store(self) -> Path:
        return self.workdir / "store" / "online.sqlite"

    @property
    def clock(self) -> Path:
        return self.workdir / "clock"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{(self.workdir / 'mlflow.db').resolve()}"

    @property
    def project_config(self) -> Path:
        return self.workdir / "lifecycle.yaml"

    def ledger(self, service: str) -> Path:
        return self.workdir / "store" / f"ledger-{service}.sqlite"


@dataclass
class Decisions:
    """One service's answer for an audience, as arrays in the audience's order."""

    arm: np.ndarray  # 0 = no offer, j + 1 = offer j
    propensity: np.ndarray
    decision_id: np.ndarray
    expected: np.ndarray  # (n, offers) expected value, NaN = unknown
    eligible: np.ndarray  # (n, offers)
    models: dict


@dataclass
class Week:
    """One week's figures (per audience member, true incremental value unless said)."""

    week: int
    as_of: str
    audience: int
    offers_sent: int
    served: float
    greedy: float
    frozen: float
    random: float
    oracle: float
    bound: float
    exploration_cost: float
    ope_greedy: float
    ope_greedy_lo: float
    ope_greedy_hi: float
    offers_version: str
    retrain_exit: int | None = None
    retrain_seconds: float | None = None
    promoted: bool | None = None  # this week's retrain promoted an offers model
    vs_previous: float | None = None  # greedy - previous champion's, when they differ
    vs_previous_lo: float | None = None
    vs_previous_hi: float | None = None
    challenger: float | None = None  # the offers challenger not promoted, valued greedy
    challenger_version: str = ""
    vs_challenger: float | None = None  # challenger - greedy, paired 95% interval
    vs_challenger_lo: float | None = None
    vs_challenger_hi: float | None = None
    drift: str = ""  # what changed in the world at this week's start
    monitor_exit: int | None = None  # lifecycle monitor after the retrain: 0 within, 4 crossed
    monitor_crossed: str = ""  # the checks over their threshold
    feature_psi: float | None = None  # the largest feature PSI against the reference
    score_psi: float | None = None
    activity_shift: float | None = None  # the largest event-rate change beyond noise
    activity_detail: str = ""  # the roles that moved
    amount_shift: float | None = None  # the largest amount-per-event change beyond noise
    amount_detail: str = ""  # the money roles whose amounts moved
    step_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each step


@contextmanager
def timed(seconds: dict[str, float], step: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[step]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[step] = seconds.get(step, 0.0) + time.perf_counter() - start


def run_loop(
    config: LoopConfig, workdir: str | Path, progress: Callable[[str], None] = print
) -> list[Week]:
    """Run the loop in ``workdir`` (created; module docstring); returns the weekly figures,
    also written to ``workdir/weeks.json`` as each week ends."""
    from serving.client import LocalService

    paths = Paths(Path(workdir).resolve())
    paths.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if config.project:
        paths.project_config.write_text(yaml.safe_dump(config.project))
    world = World.start(config.sim_config())
    world.export(paths.data)
    write_clock_file(paths.clock, world.now)
    sent = len(world.history.exposures)
    progress(f"week 0: simulated {config.customers:,} customers over {config.history_days} "
             f"days ({sent:,} pilot sends) in {time.perf_counter() - t0:.0f}s")  # fmt: skip
    code, seconds = retrain(paths, ledger=False, models=None)
    if code not in (0, 3):
        raise RuntimeError(f"the first lifecycle retrain failed (exit {code}); see "
                           f"{paths.workdir / 'retrain.log'}")  # fmt: skip
    progress(f"week 0: first champions trained in {seconds:.0f}s")
    aliases = set_aliases(paths, {"frozen": "champion", "previous": "champion"})
    roles = {"live": "champion", "frozen": "frozen", "previous": "previous"}
    services = {
        name: LocalService(
            store=paths.store,
            ledger=paths.ledger(name),
            tracking_uri=paths.tracking_uri,
            offers=paths.data / "offers.parquet",
            reload_seconds=config.reload_seconds,
            workdir=paths.workdir / f"service-{name}",
            config={
                "alias": alias,
                "seed": config.seed + i,
                "clock_file": str(paths.clock),
                "compile_trees": False,
                # a tenth of the customers asked for once a week: scoring the whole store
                # on every new version (three services, every week) costs more than it spares
                "precompute_scores": False,
                "batch_max_ids": 10_000,
                "policy": {
                    "exploration": config.exploration if name == "live" else 0.0,
                    "retention_value": "catalog",
                },
            },
        )  # fmt: skip
        for i, (name, alias) in enumerate(roles.items())
    }
    weeks: list[Week] = []
    try:
        for service in services.values():
            service.start(wait=False)
        for service in services.values():
            service.wait_ready()
        pending, rows = pd.DataFrame(), []
        for w in range(1, config.weeks + 1):
            drift = apply_drift(world, config, w)
            if drift:
                world.export(paths.data)  # a new offer's catalog: the services reload it
                progress(f"week {w:2d}: {drift}")
            offers = world.offers
            offer_ids = list(offers["offer_id"].astype("str"))
            steps: dict[str, float] = {}
            with timed(steps, "services_ready"):
                wait_for(services, roles, paths, offer_ids)
            audience = pick_audience(world, config, w)
            with timed(steps, "decide"):
                answers = {name: decide(s.url, audience, offer_ids)
                           for name, s in services.items()}  # fmt: skip
            live = answers["live"]
            with timed(steps, "evaluate"):
                week, per_row = evaluate_week(w, world, audience, answers, offers, offer_ids,
                                              config, paths)  # fmt: skip
            rows.append(per_row.assign(week=w))
            with timed(steps, "send_and_feedback"):
                sends = world.send(audience, offer_of(live.arm, offer_ids))
                post_sends(services["live"].url, live, world.now)
                pending = pd.concat([pending, conversions(sends, live)], ignore_index=True)
            with timed(steps, "advance_and_export"):
                world.advance(7)
                world.export(paths.data)
                write_clock_file(paths.clock, world.now)
            with timed(steps, "send_and_feedback"):
                pending = post_conversions(services["live"].url, pending, world)
            full = w % config.full_retrain_every == 0
            aliases = set_aliases(paths, {"previous": "champion"})
            week.retrain_exit, week.retrain_seconds = retrain(
                paths, ledger=True, models=None if full else ["offers"]
            )
            steps["retrain"] = week.retrain_seconds
            week.promoted = offers_promoted(paths, aliases)
            week.drift = drift
            if config.monitor:
                with timed(steps, "monitor"):
                    monitor_week(week, paths, world, config)
            week.step_seconds = {k: round(v, 1) for k, v in steps.items()}
            weeks.append(week)
            write_weeks(paths.workdir / "weeks.json", weeks, config)
            pd.concat(rows, ignore_index=True).to_parquet(paths.workdir / "values.parquet")
            progress(week_line(week))
    finally:
        for service in services.values():
            service.stop()
    return weeks


# ---- the services -------------------------------------------------------------------


def retrain(paths: Paths, ledger: bool, models: list[str] | None) -> tuple[int, float]:
    """``lifecycle retrain`` on the data folder (and the live ledger), as a scheduler runs it;
    its output is appended to ``retrain.log``. Returns its exit code and wall time."""
    command = [str(Path(sys.executable).with_name("lifecycle")), "retrain", str(paths.data),
               "--store", str(paths.store)]  # fmt: skip
    if ledger:
        command += ["--ledger", str(paths.ledger("live"))]
    if paths.project_config.is_file():
        command += ["--config", str(paths.project_config)]
    for name in models or ():
        command += ["--models", name]
    start = time.perf_counter()
    code = _logged_run(command, paths, "retrain.log")
    return code, time.perf_counter() - start


def set_aliases(paths: Paths, moves: dict[str, str]) -> dict[str, dict[str, str]]:
    """Point alias ``target`` at the version alias ``source`` names, for every registered
    model (``moves``: target -> source); returns model -> alias -> version afterwards."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(paths.tracking_uri)
    client = MlflowClient()
    found: dict[str, dict[str, str]] = {}
    for name in MODEL_NAMES:
        try:
            model = client.get_registered_model(name)
        except mlflow.exceptions.MlflowException:
            continue  # not trained on this data (e.g. no CLV)
        versions = dict(model.aliases)
        for target, source in moves.items():
            if source in versions:
                client.set_registered_model_alias(name, target, versions[source])
                versions[target] = versions[source]
        found[name] = versions
    return found


def offers_promoted(paths: Paths, before: dict[str, dict[str, str]]) -> bool:
    """Whether the offers champion moved since ``before`` (:func:`set_aliases`' answer)."""
    now = set_aliases(paths, {})
    offers = "lifecycle-offers"
    return now.get(offers, {}).get("champion") != before.get(offers, {}).get("champion")


def wait_for(
    services: dict, roles: dict[str, str], paths: Paths, offer_ids: list[str],
    timeout: float = 300.0,
) -> None:  # fmt: skip
    """Block until every service serves the versions its alias (``roles``: service -> alias)
    names, the current store version and the catalog's ``offer_ids`` (each picks them up by
    itself, through its registry and catalog poll)."""
    from features.store import OnlineStore

    wanted_store = OnlineStore(paths.store).current().version
    current = set_aliases(paths, {})
    deadline = time.monotonic() + timeout
    for name, service in services.items():
        alias = roles[name]
        want = {m: v[alias] for m, v in current.items() if alias in v}
        while True:
            summary = httpx.get(f"{service.url}/models", timeout=30).json()
            have = {m: str(info.get("version")) for m, info in summary["models"].items()}
            store = (summary.get("store") or {}).get("version")
            catalog = (summary.get("offers") or {}).get("catalog") or []
            ready = httpx.get(f"{service.url}/readyz", timeout=30).status_code == 200
            if (
                ready
                and store == wanted_store
                and sorted(catalog) == sorted(offer_ids)
                and all(have.get(_short(m)) == str(v) for m, v in want.items())
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"service {name} did not pick up {want}, store version "
                                   f"{wanted_store} and offers {offer_ids} in {timeout:.0f}s: "
                                   f"it has {have}, store {store}, offers {catalog}")  # fmt: skip
            time.sleep(0.5)


def _short(model: str) -> str:
    return model.removeprefix("lifecycle-")


def decide(url: str, audience: np.ndarray, offer_ids: list[str], chunk: int = 10_000) -> Decisions:
    """``POST /batch`` for the audience (in chunks), every offer's score included."""
    results, models = [], {}
    for start in range(0, len(audience), chunk):
        ids = [str(i) for i in audience[start : start + chunk]]
        answer = httpx.post(f"{url}/batch", json={"customer_ids": ids, "max_offers": 20},
                            timeout=300).raise_for_status().json()  # fmt: skip
        results += answer["results"]
        models = answer["models"]
        if not answer["offers_status"]["available"]:
            raise RuntimeError(f"{url}/batch decides no offers: {answer['offers_status']}")
    col = {o: j for j, o in enumerate(offer_ids)}
    n, k = len(results), len(offer_ids)
    expected, eligible = np.full((n, k), np.nan), np.zeros((n, k), bool)
    arm, propensity = np.zeros(n, np.intp), np.ones(n)
    decision_id = np.empty(n, dtype=object)
    for i, r in enumerate(results):
        if r.get("error"):
            raise RuntimeError(f"{url}/batch: {r['customer_id']}: {r['error']['message']}")
        for o in r["offers"]:
            j = col[o["offer_id"]]
            eligible[i, j] = o["eligible"]
            expected[i, j] = np.nan if o["expected_value"] is None else o["expected_value"]
        d = r["decision"]
        arm[i] = 0 if d["offer_id"] is None else col[d["offer_id"]] + 1
        propensity[i], decision_id[i] = d["propensity"], d["decision_id"]
    return Decisions(arm, propensity, decision_id, expected, eligible, models)


def offer_of(arms: np.ndarray, offer_ids: list[str]) -> np.ndarray:
    return np.array([None, *offer_ids], dtype=object)[arms]


def post_sends(url: str, live: Decisions, now: pd.Timestamp) -> None:
    """Report every offer decision ``sent`` at ``now`` (the decision's day: the service
    refuses times ahead of its clock)."""
    at = now.isoformat()
    events = [{"event_id": f"sent-{d}", "event": "sent", "decision_id": d, "occurred_at": at}
              for d in live.decision_id[live.arm > 0]]  # fmt: skip
    post_feedback(url, events)


def conversions(sends: Sends, live: Decisions) -> pd.DataFrame:
    """The conversions of this week's sends, to report as they happen (decision, customer,
    offer, time)."""
    hit = sends.converted
    return pd.DataFrame({"decision_id": live.decision_id[live.arm > 0][hit],
                         "customer_id": sends.customer_id[hit], "offer_id": sends.offer_id[hit],
                         "at": sends.converted_at[hit]})  # fmt: skip


def post_conversions(url: str, pending: pd.DataFrame, world: World) -> pd.DataFrame:
    """Report the ``pending`` conversions that happened by now (``converted``, with the
    purchase's amount from the exported events); returns those still to come."""
    due = pending[pending["at"] < world.now] if len(pending) else pending
    if len(due):
        recent = pd.concat(world.events[-3:])
        bought = recent[recent["offer_id"].notna() & (recent["event_type"] == "purchase")]
        amount = (bought.assign(customer_id=bought["customer_id"].astype(str),
                                offer_id=bought["offer_id"].astype(str))
                  .groupby(["customer_id", "offer_id"])["amount"].last())  # fmt: skip
        keys = pd.MultiIndex.from_frame(due[["customer_id", "offer_id"]])
        revenue = amount.reindex(keys).fillna(0.0).to_numpy()
        post_feedback(url, [
            {"event_id": f"converted-{d}", "event": "converted", "decision_id": d,
             "revenue": float(r), "occurred_at": at.isoformat()}
            for d, r, at in zip(due["decision_id"], revenue, due["at"], strict=True)])  # fmt: skip
    return pending.drop(due.index) if len(due) else pending


def post_feedback(url: str, events: list[dict], chunk: int = 5000) -> None:
    for start in range(0, len(events), chunk):
        answer = httpx.post(f"{url}/feedback", json={"events": events[start : start + chunk]},
                            timeout=120).raise_for_status().json()  # fmt: skip
        if answer["rejected"]:
            raise RuntimeError(f"feedback rejected: {answer['rejected'][:3]}")


# ---- drift and monitoring -----------------------------------------------------------


def apply_drift(world: World, config: LoopConfig, week: int) -> str:
    """Change the world at the start of ``week`` as the config says; what changed ("" none)."""
    said = []
    if config.price_change is not None and config.price_change[0] == week:
        world.change_prices(config.price_change[1])
        said.append(f"prices x{config.price_change[1]:g}")
    if config.new_offer is not None and config.new_offer[0] == week:
        world.add_offer(config.new_offer[1])
        said.append(f"new offer {config.new_offer[1]}")
    return ", ".join(said)


def monitor_week(week: Week, paths: Paths, world: World, config: LoopConfig) -> None:
    """``lifecycle monitor`` on the week's data, store and ledger, against the vectors
    ``monitor_reference_days`` earlier, as a scheduler runs it; its verdict into ``week``."""
    out = paths.workdir / "monitor" / f"week-{week.week:02d}"
    reference = world.now - pd.Timedelta(days=config.monitor_reference_days)
    command = [str(Path(sys.executable).with_name("lifecycle")), "monitor", str(paths.data),
               "--store", str(paths.store), "--ledger", str(paths.ledger("live")), "-o", str(out),
               "--reference-as-of", reference.isoformat(),
               "--now", world.now.isoformat()]  # fmt: skip
    if paths.project_config.is_file():
        command += ["--config", str(paths.project_config)]
    week.monitor_exit = _logged_run(command, paths, "monitor.log")
    found = out / "monitor.json"
    if found.is_file():
        result = json.loads(found.read_text())
        value = {c["name"]: c["value"] for c in result["checks"]}
        week.monitor_crossed = ", ".join(result["crossed"])
        week.feature_psi, week.score_psi = value.get("feature_psi"), value.get("score_psi")
        week.activity_shift = value.get("activity_shift")
        week.amount_shift = value.get("amount_shift")
        detail = {c["name"]: c["detail"] for c in result["checks"]}
        week.activity_detail = detail.get("activity_shift", "")
        week.amount_detail = detail.get("amount_shift", "")


def _logged_run(command: list[str], paths: Paths, log_name: str) -> int:
    """Run a ``lifecycle`` command in the workdir with the loop's MLflow, its output appended
    to ``log_name``; its exit code."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": paths.tracking_uri}
    with (paths.workdir / log_name).open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        return subprocess.run(command, cwd=paths.workdir, env=env, stdout=log,
                              stderr=subprocess.STDOUT, check=False).returncode  # fmt: skip


# ---- the week's figures --------------------------------------------------------------


def pick_audience(world: World, config: LoopConfig, week: int) -> np.ndarray:
    """A random ``audience_share`` of the contactable customers (the week's campaign)."""
    rng = np.random.default_rng([config.seed, 7, week])
    candidates = world.contactable()
    return np.sort(candidates[rng.random(len(candidates)) < config.audience_share])


def evaluate_week(
    w: int,
    world: World,
    audience: np.ndarray,
    answers: dict[str, Decisions],
    offers: pd.DataFrame,
    offer_ids: list[str],
    config: LoopConfig,
    paths: Paths,
) -> tuple[Week, pd.DataFrame]:
    """The policies' true values on this week's audience (:mod:`training.loop_values`), the
    OPE estimate of the live greedy policy beside its truth, and the paired comparisons of the
    live champion with the one it replaced (when a promotion happened) and with the offers
    challenger the gate kept out (when there is one); and the values per audience member (one
    column per policy)."""
    live = answers["live"]
    truth = world.offer_truth(audience)
    iv = lv.true_increments(truth, offers, offer_ids)
    bound = bound_expected(world, audience, offers, offer_ids, config, paths)
    expected = {"greedy": live.expected, "frozen": answers["frozen"].expected,
                "previous": answers["previous"].expected, "bound": bound}  # fmt: skip
    challenger, version = challenger_expected(paths, audience, offers, offer_ids, world.now,
                                              str(live.models.get("offers", "")))  # fmt: skip
    if challenger is not None:
        expected["challenger"] = challenger
    values = lv.week_values(iv, live.eligible, live.arm, expected)
    converted = _draw_outcomes(truth, live.arm, config, w)
    target = np.eye(len(offer_ids) + 1)[lv.greedy_arms(live.expected, live.eligible)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the ESS warning: the interval says it
        ope = lv.ope_estimate(converted, live.arm, live.propensity, target, offers, offer_ids)
    week = Week(
        week=w, as_of=f"{world.now:%Y-%m-%d}", audience=len(audience),
        offers_sent=int((live.arm > 0).sum()),
        **{k: float(values[k].mean()) for k in ("served", "greedy", "frozen", "random",
                                                 "oracle", "bound")},
        exploration_cost=float(values["greedy"].mean() - values["served"].mean()),
        ope_greedy=ope["estimate"], ope_greedy_lo=ope["lo"], ope_greedy_hi=ope["hi"],
        offers_version=str(live.models.get("offers", "")),
    )  # fmt: skip
    from training.ope import paired_difference

    if answers["previous"].models.get("offers") != live.models.get("offers"):
        diff = paired_difference(values["greedy"], values["previous"], 1000, 0.05, w).loc["a - b"]
        week.vs_previous, week.vs_previous_lo, week.vs_previous_hi = (
            float(diff["estimate"]), float(diff["lo"]), float(diff["hi"]))  # fmt: skip
    if challenger is not None:
        diff = paired_difference(values["challenger"], values["greedy"], 1000, 0.05, w)
        week.challenger, week.challenger_version = float(values["challenger"].mean()), version
        week.vs_challenger, week.vs_challenger_lo, week.vs_challenger_hi = (
            float(v) for v in diff.loc["a - b", ["estimate", "lo", "hi"]])  # fmt: skip
    return week, pd.DataFrame({"customer_id": audience, **values})


def challenger_expected(
    paths: Paths, audience: np.ndarray, offers: pd.DataFrame, offer_ids: list[str],
    now: pd.Timestamp, champion: str,
) -> tuple[np.ndarray | None, str]:  # fmt: skip
    """The offers challenger's expected values for the audience and its version: the model
    behind ``lifecycle-offers@challenger`` on the store's vectors, valued as the services
    value an offer (``offer_expected``); (None, "") when there is none apart from the
    ``champion`` version (promoted, or not trained)."""
    import mlflow

    from features.store import OnlineStore
    from training.registry import load_alias

    mlflow.set_tracking_uri(paths.tracking_uri)
    model, version = load_alias("lifecycle-offers", "challenger")
    if model is None or str(version.version) == champion:
        return None, ""
    ids = [str(i) for i in audience]
    frame = OnlineStore(paths.store).lookup_frame(ids)
    found = frame.set_index(frame["customer_id"].astype("str")).reindex(ids)
    found["customer_id"] = ids
    rows = FeatureRows.from_frame(found.reset_index(drop=True), now)
    expected = offer_expected(model, rows, offers, offer_ids)
    expected[~pd.Index(ids).isin(frame["customer_id"].astype("str"))] = np.nan  # not stored
    return expected, str(version.version)


def offer_expected(model, rows: FeatureRows, offers: pd.DataFrame,
                   offer_ids: list[str]) -> np.ndarray:  # fmt: skip
    """``(n, len(offer_ids))`` an offers ``model``'s ``uplift x value - cost`` on ``rows``, as
    ``DecisionEngine`` computes it with ``retention_value: catalog`` (the loop's services);
    NaN for an offer the model does not know or where it has no support."""
    uplift, supported = model.uplift_and_support(InputPlan(model, rows).matrix(rows))
    uplift = np.where(supported, uplift, np.nan)
    known = {str(o): j for j, o in enumerate(model.offers_)}
    cols = np.array([known.get(o, -1) for o in offer_ids])
    catalog = offers.set_index(offers["offer_id"].astype("str")).loc[offer_ids]
    out = np.where(cols >= 0, uplift[:, np.maximum(cols, 0)], np.nan)
    return out * catalog["value"].to_numpy(float) - catalog["cost"].to_numpy(float)


def _draw_outcomes(truth: pd.DataFrame, arms: np.ndarray, config: LoopConfig,
                   week: int) -> np.ndarray:  # fmt: skip
    """Conversions of the live decisions for the OPE estimate, drawn from the truth (the
    control arm's too: an uncontacted customer may buy anyway), on a stream of their own."""
    p = truth[[c for c in truth.columns if c.startswith("p_")]].to_numpy()
    rng = np.random.default_rng([config.seed, 8, week])
    return rng.random(len(truth)) < p[np.arange(len(truth)), arms]


def bound_expected(
    world: World,
    audience: np.ndarray,
    offers: pd.DataFrame,
    offer_ids: list[str],
    config: LoopConfig,
    paths: Paths,
) -> np.ndarray:
    """The observable bound's predicted value of each offer for the audience: regressions of
    the true values on the store's features of up to ``bound_rows`` other customers."""
    from features.store import OnlineStore

    store = OnlineStore(paths.store)
    rng = np.random.default_rng([config.seed, 9])
    others = lv.values_not_in(world.contactable(), audience)
    others = rng.choice(others, size=min(config.bound_rows, len(others)), replace=False)
    ids = [str(i) for i in (*others, *audience)]  # customers not in the store yet: NaN rows
    frame = store.lookup_frame(ids)
    x = _features(frame.set_index(frame["customer_id"].astype(str)).reindex(ids))
    train_x, test_x = x.iloc[: len(others)], x.iloc[len(others) :]
    known = train_x.notna().any(axis=1).to_numpy()
    train_iv = lv.true_increments(world.offer_truth(others[known]), offers, offer_ids)
    return lv.bound_predictions(train_x[known], train_iv, test_x, config.seed)


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    x = frame.drop(columns=["customer_id"], errors="ignore")
    for c in x.columns:
        if not pd.api.types.is_numeric_dtype(x[c]) and not pd.api.types.is_bool_dtype(x[c]):
            x[c] = x[c].astype("category")
    return x


# ---- output ---------------------------------------------------------------------------


def week_line(week: Week) -> str:
    promoted = {None: "", True: ", offers promoted", False: ""}[week.promoted]
    if week.monitor_exit is not None:
        flagged = f"flagged {week.monitor_crossed}" if week.monitor_crossed else "no flag"
        promoted += f"; monitor exit {week.monitor_exit} ({flagged})"
    return (f"week {week.week:2d} ({week.as_of}): served {week.served:.3f}, greedy "
            f"{week.greedy:.3f}, frozen {week.frozen:.3f}, bound {week.bound:.3f}, oracle "
            f"{week.oracle:.3f}, random {week.random:.3f}; OPE of greedy {week.ope_greedy:.3f} "
            f"[{week.ope_greedy_lo:.3f}, {week.ope_greedy_hi:.3f}]; retrain exit "
            f"{week.retrain_exit} in {week.retrain_seconds:.0f}s{promoted}")  # fmt: skip


def write_weeks(path: Path, weeks: list[Week], config: LoopConfig) -> None:
    path.write_text(json.dumps({"config": config.model_dump(mode="json"),
                                "weeks": [asdict(w) for w in weeks]}, indent=2))  # fmt: skip
