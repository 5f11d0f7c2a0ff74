"""Shared fixtures: a real wire-protocol MongoDB server (SecantusDB, in memory) per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from secantus import SecantusDBServer

from flows.store import Store
from flows.store.secantus_patch import apply as apply_secantus_patch


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """URI of an in-process SecantusDB server with in-memory storage, shared by the session.

    Patched like the embedded server (:mod:`flows.store.secantus_patch`: compound-index range queries)."""
    apply_secantus_patch()
    server = SecantusDBServer(storage_path=":memory:")
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def store(mongo_uri: str) -> Iterator[Store]:
    """A :class:`Store` on a fresh, uniquely named database (isolated per test)."""
    s = Store.from_uri(mongo_uri, database=f"t_{uuid.uuid4().hex[:10]}")
    try:
        yield s
    finally:
        s.client.drop_database(s.db.name)
        s.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API (fresh SQLite database) for tests that run real flows."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# campaign tests check state, not plots; tests/flows/reporting/test_ops.py exercises the reports
os.environ.setdefault("ALFLOW_REPORTS", "0")


#: A small formula universe whose 25 % chemical-system split at seed 18 hides Ca-O, Cl-K, Mg-O and F-Na.
SPLIT_UNIVERSE = [
    "NaCl",
    "KCl",
    "RbCl",
    "MgO",
    "CaO",
    "SrO",
    "NaF",
    "KF",
    "SrTiO3",
    "BaTiO3",
    "ZnS",
    "GaAs",
    "CsCl",
    "LiF",
]


@pytest.fixture(scope="module")
def small_split():
    """The hold-out split of :data:`SPLIT_UNIVERSE` (25 %, seed 18); its hidden set is asserted."""
    from alcore.holdout import split_by_chemical_system

    s = split_by_chemical_system(SPLIT_UNIVERSE, fraction=0.25, seed=18)
    assert s.hidden == {"CaO", "KCl", "MgO", "NaF"}
    return s


#: the small composition-conditioned crystal GAN (generators.cccgan.TrainConfig fields) that trains
#: in CPU-seconds: the generator tests' short training and the cccgan flow's tiny run
CCCGAN_SMALL_NET = {"g_channels": 16, "d_channels": 16, "q_channels": 8, "latent_dim": 16, "n_critic": 1, "lr_g": 1e-3}
