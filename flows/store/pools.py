"""Generated pools: members ``(pool, formula)`` and one generation marker per batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flows.store.base import SUMMARIES

#: Generation markers of pools: ``batch`` >= 0 per finished batch, ``batch`` -1 the pool's header.
BATCHES = "pool_batches"
HEADER = -1


class PoolStore:
    """Generated pools and their generation markers (a part of :class:`flows.store.Store`)."""

    def upsert_pool(self, pool: str, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert pool members ``{formula, generator, seed, ...}`` into pool ``pool``; returns the count.

        Drops the screening counts of the batches written to, under every screening key (all of the
        pool's if a document names no batch), so the next ``screen-pool`` run screens the new members
        and :meth:`~flows.store.Store.screen_counts` counts those batches live until then.
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

    def pool_size(self, pool: str) -> int:
        """The number of members of pool ``pool``."""
        return self.db["pools"].count_documents({"pool": pool})

    def pool_batch_members(self, pool: str, batch: int) -> list[dict[str, Any]]:
        """The members of one generation batch: ``{formula, n_atoms, n_elements}`` (sizes if stored)."""
        return list(
            self.db["pools"].find(
                {"pool": pool, "batch": batch}, {"_id": 0, "formula": 1, "n_atoms": 1, "n_elements": 1}
            )
        )

    def pool_names(self) -> list[str]:
        """The names of every stored pool, sorted."""
        return sorted(self.db["pools"].distinct("pool"))

    def pool_exists(self, pool: str) -> bool:
        """Whether ``pool`` has members: a generation marker that inserted some (cheap), else a lookup."""
        if self.db[BATCHES].find_one({"pool": pool, "inserted": {"$gt": 0}}, {"_id": 1}) is not None:
            return True
        return self.db["pools"].find_one({"pool": pool}, {"_id": 1}) is not None

    def mark_pool_batch(self, pool: str, batch: int, marker: Mapping[str, Any]) -> None:
        """Record that generation batch ``batch`` of ``pool`` is finished (``marker``: its statistics)."""
        self.db[BATCHES].replace_one(
            {"pool": pool, "batch": batch}, {**marker, "pool": pool, "batch": batch}, upsert=True
        )

    def generated_batches(self, pool: str) -> set[int]:
        """The generation batches of ``pool`` with a finished marker."""
        return {d["batch"] for d in self.db[BATCHES].find({"pool": pool, "batch": {"$gte": 0}}, {"batch": 1})}

    def pool_header(self, pool: str) -> dict[str, Any] | None:
        """The generation settings ``pool`` was started with (None for a new pool)."""
        return self.db[BATCHES].find_one({"pool": pool, "batch": HEADER}, {"_id": 0})

    def set_pool_header(self, pool: str, header: Mapping[str, Any]) -> None:
        """Record the generation settings of a new pool (compared on every resume)."""
        self.mark_pool_batch(pool, HEADER, header)

    def pool_batches(self, pool: str) -> list[int]:
        """The sorted ``batch`` values of the members of ``pool`` (members without one are not screened).

        Equal to ``distinct("batch", {"pool": pool})`` without ``None``, but cheap on a 1 M pool: the
        generation markers name the batches, and indexed range queries on ``(pool, batch)`` check that no
        member lies outside them (else the server's ``distinct`` is used).
        """
        coll = self.db["pools"]
        inserted = {
            int(d["batch"]): int(d.get("inserted") or 0)
            for d in self.db[BATCHES].find({"pool": pool, "batch": {"$gte": 0}}, {"batch": 1, "inserted": 1})
        }
        marked = sorted(inserted)
        if marked:
            outside = [{"$lt": marked[0]}, {"$gt": marked[-1]}]
            outside += [{"$gt": a, "$lt": b} for a, b in zip(marked, marked[1:], strict=False) if b > a + 1]
            if all(coll.find_one({"pool": pool, "batch": q}, {"_id": 1}) is None for q in outside):
                # a batch that inserted nothing may still hold documents (written by other means): look
                return [
                    b
                    for b in marked
                    if inserted[b] > 0 or coll.find_one({"pool": pool, "batch": b}, {"_id": 1}) is not None
                ]
        return sorted(b for b in coll.distinct("batch", {"pool": pool}) if b is not None)
