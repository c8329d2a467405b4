"""The cluster the project config names: ``dask: {scheduler: local | env | tcp://...}``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING

from features.project import DaskConfig, ProjectConfig

if TYPE_CHECKING:
    from distributed import Client

PARTITIONS_PER_WORKER = 4


def on_cluster(config: ProjectConfig) -> bool:
    """Whether the config names a scheduler (else everything runs in this process)."""
    return bool(config.dask.scheduler)


@contextmanager
def open_client(dask: DaskConfig) -> Iterator[Client | None]:
    """A Client of the cluster ``dask`` names (None without a scheduler), closed on exit.

    ``local``: a ``LocalCluster`` of ``dask.workers`` processes, one thread each, started
    here and closed on exit (``features.dask_builder.local_cluster``); ``env``: the scheduler
    at ``$DASK_SCHEDULER_ADDRESS``; anything else: that scheduler address.
    """
    from features.dask_builder import connect, local_cluster

    if not dask.scheduler:
        with nullcontext(None) as nothing:
            yield nothing
        return
    if dask.scheduler == "local":
        extra = {"memory_limit": dask.memory_limit} if dask.memory_limit else {}
        with local_cluster(n_workers=dask.workers, **extra) as client:
            yield client
        return
    with connect(None if dask.scheduler == "env" else dask.scheduler) as client:
        yield client


def partition_count(dask: DaskConfig, client: Client | None) -> int:
    """Customer partitions: ``dask.partitions``, else 4 per worker of ``client`` (1 without)."""
    if dask.partitions:
        return dask.partitions
    if client is None:
        return 1
    workers = len(client.scheduler_info(n_workers=-1)["workers"]) or dask.workers
    return PARTITIONS_PER_WORKER * workers


def each(client: Client, func, parts: list, **kwargs) -> list:
    """``func(part, **kwargs)`` on the worker holding each part: futures, one per part.

    The keywords travel inside a ``functools.partial`` (``Client.map``'s own keywords turn
    large values into graph keys of their own) and every call gets a fresh key."""
    from functools import partial

    return client.map(partial(func, **kwargs), parts, pure=False)
