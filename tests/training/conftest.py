"""Fixtures shared by the training tests."""

import pytest


@pytest.fixture(scope="module")
def client():
    """A real ``distributed`` LocalCluster of 2 worker processes (1 thread, 1 GiB each) and
    its client, per test module."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           memory_limit="1GiB", dashboard_address=None)  # fmt: skip
    with cluster, Client(cluster) as c:
        yield c
