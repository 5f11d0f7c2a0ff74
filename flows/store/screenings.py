"""Screenings of generated pools: one verdict per (pool, key, formula), the setup behind each key,
and per-batch verdict counts in ``summaries`` (whose presence also marks a batch as screened)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymongo import DESCENDING

from flows.store.base import HINT_SIZE, SUMMARIES, group_rows, partitioned_counts, utcnow

SCREENINGS = "screenings"


def _batch_summary_id(pool: str, key: str, batch: int) -> str:
    return "screen:" + json.dumps([pool, key, batch])


def _setup_id(pool: str, key: str) -> str:
    return "screen-setup:" + json.dumps([pool, key])


class ScreeningStore:
    """Screenings and their summaries (a part of :class:`flows.store.Store`)."""

    def record_screen_batch(self, pool: str, key: str, batch: int, counts: Counter | None = None) -> None:
        """Store the verdict counts of batch ``batch`` of screening ``key`` of ``pool`` in ``summaries``,
        which also marks the batch as screened. ``counts`` (a Counter by verdict) if the caller knows
        them, else one indexed grouping of the batch's ``screenings``. ``$set``: a repeat writes the same."""
        if counts is None:
            rows = group_rows(self.db[SCREENINGS], {"pool": pool, "key": key, "batch": batch}, ["verdict"])
        else:
            rows = sorted(({"k": [v], "n": int(n)} for v, n in counts.items() if n), key=lambda r: str(r["k"]))
        self.db[SUMMARIES].update_one(
            {"_id": _batch_summary_id(pool, key, batch)},
            {
                "$set": {
                    "kind": "screen",
                    "pool": pool,
                    "key": key,
                    "batch": batch,
                    "rows": rows,
                    "updated_at": utcnow(),
                }
            },
            upsert=True,
        )

    def screen_batch_done(self, pool: str, key: str, batch: int) -> bool:
        """Whether batch ``batch`` of screening ``key`` of ``pool`` has its counts stored (finished)."""
        return self.db[SUMMARIES].find_one({"_id": _batch_summary_id(pool, key, batch)}, {"_id": 1}) is not None

    def screened_formulas(self, pool: str, key: str, batch: int) -> set[str]:
        """The formulas of one pool batch that already have a verdict under ``key``."""
        cursor = self.db[SCREENINGS].find({"pool": pool, "key": key, "batch": batch}, {"_id": 0, "formula": 1})
        return {d["formula"] for d in cursor}

    def note_screen_top(
        self, pool: str, key: str, formulas: Sequence[str], passed: np.ndarray, mean: np.ndarray
    ) -> None:
        """Merge the predictions just stored for ``formulas`` ((N,) ``passed`` bool, ``mean`` float with
        NaN where not predicted) into the top-k hints of ``(pool, key, verdict)``."""
        for verdict, sel in (("pass", passed), ("fail", ~passed)):
            idx = np.flatnonzero(sel & np.isfinite(mean))
            best = idx[np.argsort(-mean[idx], kind="stable")][:HINT_SIZE]
            self.note_top(
                SCREENINGS,
                {"pool": pool, "key": key, "verdict": verdict},
                "pred_mean",
                [(float(mean[i]), formulas[i]) for i in best],
            )

    def screen_counts(self, pool: str, key: str | None = None) -> dict[str, int]:
        """Verdict counts ``{"pass": n, "fail": m}`` of screening ``key`` of ``pool`` (default: its latest).

        Equal to grouping every ``screenings`` document of the pool and key; reads the per-batch counts
        and counts live (indexed by ``(pool, key, batch)``) only the batches without them. Empty if the
        pool was never screened.
        """
        key = key or self.latest_screen_key(pool)
        if key is None:
            return {}
        snaps = {
            int(d["batch"]): d["rows"]
            for d in self.db[SUMMARIES].find({"kind": "screen", "pool": pool, "key": key})
            if isinstance(d.get("batch"), int)
        }
        totals = partitioned_counts(self.db[SCREENINGS], {"pool": pool, "key": key}, "batch", ["verdict"], snaps)
        return {verdict: n for (verdict,), n in sorted(totals.items())}

    def record_screen_setup(self, pool: str, key: str, setup: Mapping[str, Any]) -> None:
        """Store what screening ``key`` of ``pool`` means (``setup``: model, filters, predict_all) with
        the time it was started."""
        self.db[SUMMARIES].update_one(
            {"_id": _setup_id(pool, key)},
            {"$set": {"kind": "screen-setup", "pool": pool, "key": key, **setup, "screened_at": utcnow()}},
            upsert=True,
        )

    def screen_setup(self, pool: str, key: str) -> dict[str, Any] | None:
        """The setup behind screening ``key`` of ``pool``: ``{model, filters, predict_all, screened_at, ...}``
        as recorded by the ``screen-pool`` flow, or None if unknown."""
        return self.db[SUMMARIES].find_one({"_id": _setup_id(pool, key)}, {"_id": 0})

    def latest_screen_key(self, pool: str) -> str | None:
        """The key of the screening of ``pool`` started last, or None if it was never screened."""
        d = self.db[SUMMARIES].find_one(
            {"kind": "screen-setup", "pool": pool}, {"key": 1}, sort=[("screened_at", DESCENDING)]
        )
        return None if d is None else d["key"]

    def forget_screening(self, pool: str, key: str) -> None:
        """Delete the verdicts, counts and top-k hints of screening ``key`` of ``pool`` (a re-screen)."""
        self.db[SCREENINGS].delete_many({"pool": pool, "key": key})
        self.db[SUMMARIES].delete_many({"kind": "screen", "pool": pool, "key": key})
        self.forget_top(SCREENINGS, pool=pool, key=key)
