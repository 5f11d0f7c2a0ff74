"""What the resumable training flows ("train-matgan", "train-complm") share: where they write
(:class:`TrainingTarget`) and the storing of the trained models in MongoDB GridFS (:func:`store_trained`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingTarget:
    """Where a training flow writes and on how many torch ``threads`` it trains.

    ``out``: the weights (a folder or a stem, as the flow says; None: its default under
    ``data/weights``); ``checkpoint``: the resumable checkpoint (None: the flow's default beside
    ``out``). With ``store_weights`` the trained models also go to MongoDB GridFS, in the store of
    ``mongodb_uri``/``database`` (None: the configured store).
    """

    out: str | None = None
    checkpoint: str | None = None
    threads: int = 1
    store_weights: bool = True
    mongodb_uri: str | None = None
    database: str | None = None


def store_trained(target: TrainingTarget, models: Mapping[str, tuple[Any, dict[str, Any]]]) -> dict[str, str]:
    """Save each ``{kind: (torch module, metadata)}`` in the target's store (:meth:`flows.store.Store.save_model`);
    returns ``{kind: GridFS sha256}``."""
    from flows.pipelines.pool import open_store

    store = open_store(target.mongodb_uri, target.database)
    return {kind: store.save_model(kind, module.state_dict(), meta) for kind, (module, meta) in models.items()}
