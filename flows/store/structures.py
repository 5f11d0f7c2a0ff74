"""Structures: one document per (campaign, formula, template_id) trial."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class StructureStore:
    """Structures: one document per (campaign, formula, template_id) trial. (a part of :class:`flows.store.Store`)."""

    def upsert_structures(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert structure documents keyed by ``(campaign, formula, template_id)``; returns the count.

        Generators that are not part of a campaign use a descriptive ``campaign`` such as
        ``"crystalgan:PdNiH"``.
        """
        return self.bulk_upsert("structures", docs)

    def structures_of(self, campaign: str, formulas: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The structure trials of a campaign (of the given formulas only, if any), by formula and
        template id."""
        query: dict[str, Any] = {"campaign": campaign}
        if formulas is not None:
            query["formula"] = {"$in": list(formulas)}
        return list(self.db.structures.find(query, {"_id": 0}).sort([("formula", 1), ("template_id", 1)]))
