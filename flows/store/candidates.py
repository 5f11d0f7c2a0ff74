"""Candidates: one document per (campaign, iteration, formula)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flows.store.base import utcnow


class CandidateStore:
    """Candidates: one document per (campaign, iteration, formula). (a part of :class:`flows.store.Store`)."""

    def upsert_candidates(self, campaign: str, iteration: int, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert candidate documents of one iteration (keyed by formula); returns the count."""
        n = self.bulk_upsert("candidates", ({**d, "campaign": campaign, "iteration": iteration} for d in docs))
        self._refresh_iteration_summaries(campaign, {iteration})
        return n

    def candidates(
        self,
        campaign: str,
        iteration: int | None = None,
        status: str | Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Candidates of a campaign, optionally of one iteration and/or status (one or several), in a
        stable order (iteration, rank, formula)."""
        query: dict[str, Any] = {"campaign": campaign}
        if iteration is not None:
            query["iteration"] = iteration
        if isinstance(status, str):
            query["status"] = str(status)
        elif status is not None:
            query["status"] = {"$in": sorted(str(s) for s in status)}
        return list(self.db.candidates.find(query, {"_id": 0}).sort([("iteration", 1), ("rank", 1), ("formula", 1)]))

    def set_candidate_status(
        self, campaign: str, iteration: int, formulas: Sequence[str], status: str, **fields: Any
    ) -> int:
        """Set ``status`` (and any extra ``fields``) on the named candidates of one iteration; returns
        how many documents matched."""
        if not formulas:
            return 0
        result = self.db.candidates.update_many(
            {"campaign": campaign, "iteration": iteration, "formula": {"$in": list(formulas)}},
            {"$set": {"status": str(status), **fields, "updated_at": utcnow()}},
        )
        self._refresh_iteration_summaries(campaign, {iteration})
        return result.matched_count

    def delete_candidates(self, campaign: str, iteration: int) -> int:
        """Delete every candidate of one iteration (the acquire stage's reset); returns the count."""
        n = self.db.candidates.delete_many({"campaign": campaign, "iteration": iteration}).deleted_count
        self._refresh_iteration_summaries(campaign, {iteration})
        return n
