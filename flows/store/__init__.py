"""The MongoDB store: the one gateway between alflow and the database.

Every query of the product goes through :class:`Store` (a test fails if code outside this package
touches a collection directly). The class is assembled from one part per collection family:

=====================  ==============================================================
``base.StoreBase``      connection, indexes, bulk upserts, exact fast top-k queries
``campaigns``           campaigns, the runner's lease, iterations, stage states, counts
``labels``              labels (campaign, formula, property)
``candidates``          candidates (campaign, iteration, formula)
``pools``               generated pools and their generation batch markers
``screenings``          pool screenings: verdicts, setups, per-batch counts
``structures``          structure trials (campaign, formula, template_id)
``models``              model weights in GridFS (safetensors, sha256-verified)
``benchmarks``          benchmark stage results and ranked proposal lists
=====================  ==============================================================

``schemas`` holds the status vocabularies; ``embedded`` the embedded SecantusDB server.
"""

from __future__ import annotations

from flows.store.base import (
    BULK_BATCH,
    HINT_SIZE,
    SECONDARY_INDEXES,
    SUMMARIES,
    UNIQUE_KEYS,
    StoreBase,
    connect_client,
    default_owner,
    group_rows,
    owner_is_dead_local_process,
    partitioned_counts,
    utcnow,
)
from flows.store.benchmarks import BenchmarkStore
from flows.store.campaigns import CampaignStore
from flows.store.candidates import CandidateStore
from flows.store.labels import LabelStore
from flows.store.models import ModelStore
from flows.store.pools import BATCHES, PoolStore
from flows.store.screenings import SCREENINGS, ScreeningStore
from flows.store.structures import StructureStore


class Store(
    CampaignStore,
    LabelStore,
    CandidateStore,
    PoolStore,
    ScreeningStore,
    StructureStore,
    ModelStore,
    BenchmarkStore,
    StoreBase,
):
    """Repository over one MongoDB database: campaigns, iterations, labels, candidates, pools,
    screenings, structures and GridFS model weights. Create with :meth:`connect`, :meth:`from_uri`
    or :meth:`open`."""


__all__ = [
    "BATCHES",
    "BULK_BATCH",
    "SCREENINGS",
    "HINT_SIZE",
    "SECONDARY_INDEXES",
    "SUMMARIES",
    "UNIQUE_KEYS",
    "Store",
    "connect_client",
    "default_owner",
    "group_rows",
    "owner_is_dead_local_process",
    "partitioned_counts",
    "utcnow",
]
