"""Labels: one value per (campaign, formula, property)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING

from alcore.errors import InvalidLabelError


class LabelStore:
    """Labels: one value per (campaign, formula, property). (a part of :class:`flows.store.Store`)."""

    # ------------------------------------------------------------------ labels
    def upsert_labels(self, campaign: str, records: Iterable[Mapping[str, Any]], prop: str = "band_gap") -> int:
        """Upsert labels ``{formula, value, source, iteration?, std?}``; returns how many were written.

        Refuses (:class:`InvalidLabelError`) NaN or infinite values before writing anything.
        """
        docs: list[dict[str, Any]] = []
        for r in records:
            value = float(r["value"])
            if not math.isfinite(value):
                raise InvalidLabelError(
                    f"label for {r['formula']!r} is {value}; labels must be finite numbers (nothing was written)"
                )
            docs.append({**r, "campaign": campaign, "property": prop, "value": value})
        n = self.bulk_upsert("labels", docs)
        self.note_top(
            "labels", {"campaign": campaign, "property": prop}, "value", ((d["value"], d["formula"]) for d in docs)
        )
        self._refresh_iteration_summaries(campaign, {d.get("iteration") for d in docs})
        return n

    def labels(self, campaign: str, prop: str = "band_gap") -> list[dict[str, Any]]:
        """All labels of a campaign for one property, sorted by formula (deterministic order)."""
        return list(
            self.db.labels.find({"campaign": campaign, "property": prop}, {"_id": 0}).sort("formula", ASCENDING)
        )

    def labels_of(self, campaign: str, formulas: Sequence[str], prop: str = "band_gap") -> dict[str, dict[str, Any]]:
        """The labels of the given formulas that exist, keyed by formula."""
        cursor = self.db.labels.find(
            {"campaign": campaign, "property": prop, "formula": {"$in": list(formulas)}}, {"_id": 0}
        )
        return {d["formula"]: d for d in cursor}

    def delete_acquired_labels(self, campaign: str, iteration: int) -> int:
        """Delete the labels the campaign's own labelling wrote in one iteration (the label stage's
        reset; seed labels are kept); returns the count."""
        query = {"campaign": campaign, "iteration": iteration, "source": {"$ne": "seed"}}
        n = self.db.labels.delete_many(query).deleted_count  # top-k hints stay valid (top_k re-checks them)
        self._refresh_iteration_summaries(campaign, {iteration})
        return n

    def top_labels(self, campaign: str, k: int = 10, prop: str = "band_gap") -> list[dict[str, Any]]:
        """The ``k`` highest labels of a campaign, ties by formula (:meth:`top_k` on the
        (campaign, property, value) index; exact, and fast at any number of labels)."""
        return self.top_k("labels", {"campaign": campaign, "property": prop}, "value", k)

    def top_acquired(self, campaign: str, k: int, prop: str = "band_gap") -> list[str]:
        """The ``k`` formulas with the highest labels that the campaign acquired itself (seed labels
        excluded), highest first, ties by formula: the campaign's leading discoveries."""
        cursor = self.db.labels.find(
            {"campaign": campaign, "property": prop, "source": {"$ne": "seed"}}, {"formula": 1, "_id": 0}
        ).sort([("value", DESCENDING), ("formula", ASCENDING)])
        return [d["formula"] for d in cursor.limit(k)] if k > 0 else []
