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

    def structures_of(
        self,
        campaign: str,
        formulas: Sequence[str] | None = None,
        *,
        verdicts: Sequence[str] | None = None,
        judged_only: bool = False,
        with_cif: bool = False,
        by_e_hull: bool = False,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        """The structure trials of a campaign: of the given ``formulas``/``verdicts`` only if given, only
        judged ones (a verdict exists) or ones with a CIF if asked; ordered by formula and template id,
        or by E_hull (lowest first, then formula) with ``by_e_hull``; at most ``limit`` (0: all)."""
        query: dict[str, Any] = {"campaign": campaign}
        if formulas is not None:
            query["formula"] = {"$in": list(formulas)}
        if verdicts:
            query["verdict"] = {"$in": [str(v) for v in verdicts]}
        elif judged_only:
            query["verdict"] = {"$exists": True}
        if with_cif:
            query["cif"] = {"$ne": None}
        order = [("e_hull", 1), ("formula", 1)] if by_e_hull else [("formula", 1), ("template_id", 1)]
        return list(self.db.structures.find(query, {"_id": 0}).sort(order).limit(limit))

    def structure_verdicts(self, campaign: str) -> list[dict[str, Any]]:
        """The judged trials of a campaign, light: ``formula``, ``template_id``, ``verdict``,
        ``e_form`` and ``e_hull`` (eV/atom, None where absent) of every trial with a verdict, ordered by
        formula and template id (the training data of the learned P(E_hull), no structures or CIFs)."""
        fields = {"_id": 0, "formula": 1, "template_id": 1, "verdict": 1, "e_form": 1, "e_hull": 1}
        docs = self.db.structures.find({"campaign": campaign, "verdict": {"$exists": True}}, fields)
        return [
            {k: d.get(k) for k in ("formula", "template_id", "verdict", "e_form", "e_hull")}
            for d in docs.sort([("formula", 1), ("template_id", 1)])
        ]

    def structure_campaigns(self) -> list[str]:
        """The campaigns that have structure documents, sorted."""
        return sorted(self.db.structures.distinct("campaign"))
