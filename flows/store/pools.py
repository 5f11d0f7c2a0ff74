"""Generated pools and their screenings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flows.store.base import SUMMARIES


class PoolStore:
    """Generated pools and their screenings. (a part of :class:`flows.store.Store`)."""

    def upsert_pool(self, pool: str, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert pool members ``{formula, generator, seed, ...}`` into pool ``pool``; returns the count.

        Drops the screening counts of the batches written to, under every screening key (all of the
        pool's if a document names no batch), so the next ``screen-pool`` run screens the new members
        and :func:`flows.pipelines.screening.screen_counts` counts those batches live until then.
        """
        docs = [{**d, "pool": pool} for d in docs]
        n = self.bulk_upsert("pools", docs)
        batches = {d.get("batch") for d in docs}
        where: dict[str, Any] = {"kind": "screen", "pool": pool}
        if None not in batches:
            where["batch"] = {"$in": sorted(batches)}
        if docs:
            self.db[SUMMARIES].delete_many(where)
        return n

    def pool_formulas(self, pool: str, max_atoms: int | None = None, max_elements: int | None = None) -> list[str]:
        """The distinct formulas of pool ``pool`` (sorted), optionally only those with at most
        ``max_atoms`` atoms / ``max_elements`` elements in the reduced formula (the members'
        ``n_atoms``/``n_elements``); empty if there is no such pool."""
        query: dict[str, Any] = {"pool": pool}
        if max_atoms is not None:
            query["n_atoms"] = {"$lte": max_atoms}
        if max_elements is not None:
            query["n_elements"] = {"$lte": max_elements}
        return sorted(self.db["pools"].distinct("formula", query))
