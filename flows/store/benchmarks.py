"""Benchmark runs: the hold-out rediscovery benchmark (one document per (benchmark, split, stage) in
``rediscovery`` and one per ranked proposal list in ``rediscovery_lists``, keyed by string ids) and
the structure-recovery benchmark (one document per (run, formula) in ``structure_recovery``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flows.store.base import utcnow

BENCH_STAGES = "rediscovery"
BENCH_LISTS = "rediscovery_lists"
#: One document per (run, formula) of the structure-recovery benchmark; it marks the compound done.
RECOVERY = "structure_recovery"


class BenchmarkStore:
    """Benchmark stage results and ranked lists (a part of :class:`flows.store.Store`)."""

    def bench_stage_result(self, stage_id: str) -> dict[str, Any] | None:
        """The stored result of a finished benchmark stage, or None."""
        doc = self.bench_stage(stage_id)
        return doc["result"] if doc is not None and doc.get("status") == "done" else None

    def bench_stage(self, stage_id: str) -> dict[str, Any] | None:
        """The whole document of a benchmark stage (status, settings, result), or None."""
        return self.db[BENCH_STAGES].find_one({"_id": stage_id})

    def set_bench_stage(self, stage_id: str, fields: Mapping[str, Any]) -> None:
        """Write (replace) a benchmark stage document: its key fields, status and result."""
        self.db[BENCH_STAGES].replace_one({"_id": stage_id}, {**fields, "finished_at": utcnow()}, upsert=True)

    def bench_stages(self, **where: Any) -> list[dict[str, Any]]:
        """Benchmark stage documents matching ``where`` (e.g. ``split=KEY``), by stage id."""
        return list(self.db[BENCH_STAGES].find(dict(where)).sort("_id", 1))

    def save_bench_list(self, list_id: str, fields: Mapping[str, Any]) -> None:
        """Write (replace) one ranked proposal list of a benchmark."""
        self.db[BENCH_LISTS].replace_one({"_id": list_id}, {**fields, "updated_at": utcnow()}, upsert=True)

    def bench_list(self, list_id: str) -> dict[str, Any] | None:
        """One stored ranked list, or None."""
        return self.db[BENCH_LISTS].find_one({"_id": list_id})

    def bench_lists(self, bench: str) -> list[dict[str, Any]]:
        """Every ranked list of benchmark ``bench``, by seed and list name."""
        return list(self.db[BENCH_LISTS].find({"bench": bench}, {"_id": 0}).sort([("seed", 1), ("list", 1)]))

    def recovery_documents(self, run: str, formulas: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The structure-recovery compound documents of ``run`` (optionally only ``formulas``), by formula."""
        q: dict[str, Any] = {"run": run}
        if formulas is not None:
            q["formula"] = {"$in": list(formulas)}
        return list(self.db[RECOVERY].find(q, {"_id": 0}).sort("formula", 1))

    def upsert_recovery_document(self, run: str, doc: Mapping[str, Any]) -> None:
        """Write the compound document of one structure-recovery compound (it marks the compound done)."""
        self.db[RECOVERY].update_one({"run": run, "formula": doc["formula"]}, {"$set": dict(doc)}, upsert=True)
