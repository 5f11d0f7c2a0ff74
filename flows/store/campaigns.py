"""Campaigns, their lease, iterations, stage states and status counts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from alcore.errors import CampaignLockedError, CampaignNotFoundError, ConfigError
from flows.store.base import group_rows, owner_is_dead_local_process, partitioned_counts, utcnow
from flows.store.schemas import CampaignStatus

log = logging.getLogger(__name__)

#: Per-iteration status counts: collection -> the field counted.
COUNTED: dict[str, str] = {"candidates": "status", "labels": "source"}


class CampaignStore:
    """Campaigns, their lease, iterations, stage states and status counts. (a part of :class:`flows.store.Store`)."""

    # ------------------------------------------------------------------ campaigns
    def create_campaign(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Create campaign ``name`` with its resolved ``config``; return the stored document.

        Creating it again with the same config returns the existing one; with a different config
        raises :class:`ConfigError` (start a new campaign name instead of silently mixing runs).
        """
        existing = self.db.campaigns.find_one({"name": name})
        if existing is not None:
            if _comparable(existing["config"]) != _comparable(config):
                diff = sorted(
                    k for k in set(existing["config"]) | set(config) if existing["config"].get(k) != config.get(k)
                )
                raise ConfigError(
                    f"campaign {name!r} exists with a different config (differs in {diff}); "
                    "use a new campaign name or the stored config"
                )
            return existing
        doc = {
            "name": name,
            "config": dict(config),
            "status": "created",
            "iteration": 0,
            "created_at": utcnow(),
            "lease": None,
        }
        try:
            self.db.campaigns.insert_one(doc)
        except DuplicateKeyError:  # a concurrent creator won; compare with theirs
            return self.create_campaign(name, config)
        return self.db.campaigns.find_one({"name": name})

    def get_campaign(self, name: str) -> dict[str, Any]:
        """The campaign document; raises :class:`CampaignNotFoundError` naming the known campaigns."""
        doc = self.db.campaigns.find_one({"name": name})
        if doc is None:
            known = [d["name"] for d in self.db.campaigns.find({}, {"name": 1}).limit(20)]
            raise CampaignNotFoundError(f"no campaign named {name!r}; known: {known or 'none'}")
        return doc

    def list_campaigns(self) -> list[dict[str, Any]]:
        """All campaign documents (without their config), oldest first."""
        return list(self.db.campaigns.find({}, {"config": 0}).sort("created_at", ASCENDING))

    def update_campaign(self, name: str, **fields: Any) -> None:
        """``$set`` fields on a campaign document."""
        self.db.campaigns.update_one({"name": name}, {"$set": fields})

    # ------------------------------------------------------------------ lease
    def acquire_lease(self, campaign: str, owner: str, ttl_s: float = 120.0) -> dict[str, Any]:
        """Take the campaign lease for ``owner`` for ``ttl_s`` seconds (atomic ``find_one_and_update``).

        Succeeds if the lease is free, expired, or already ours. Raises
        :class:`CampaignLockedError` naming the holder and its expiry otherwise.
        """
        now = utcnow()
        doc = self.db.campaigns.find_one_and_update(
            {"name": campaign, "$or": [{"lease": None}, {"lease.expires_at": {"$lt": now}}, {"lease.owner": owner}]},
            {"$set": {"lease": {"owner": owner, "acquired_at": now, "expires_at": now + timedelta(seconds=ttl_s)}}},
            return_document=True,
        )
        if doc is None:
            current = self.get_campaign(campaign).get("lease") or {}
            if owner_is_dead_local_process(str(current.get("owner"))):
                doc = self.db.campaigns.find_one_and_update(  # only if nobody changed it meanwhile
                    {"name": campaign, "lease.owner": current["owner"], "lease.acquired_at": current["acquired_at"]},
                    {
                        "$set": {
                            "lease": {"owner": owner, "acquired_at": now, "expires_at": now + timedelta(seconds=ttl_s)}
                        }
                    },
                    return_document=True,
                )
                if doc is not None:
                    log.warning(
                        "campaign %s: took over the lease of %s, a process on this host that no longer exists",
                        campaign,
                        current["owner"],
                    )
                    return doc["lease"]
                current = self.get_campaign(campaign).get("lease") or {}
            raise CampaignLockedError(
                f"campaign {campaign!r} is being run by {current.get('owner')!r} (lease until "
                f"{current.get('expires_at')}); wait for it to finish, or for the lease to expire if that "
                "runner crashed"
            )
        return doc["lease"]

    def renew_lease(self, campaign: str, owner: str, ttl_s: float = 120.0) -> None:
        """Extend our lease; raises :class:`CampaignLockedError` if another runner took it over."""
        now = utcnow()
        res = self.db.campaigns.update_one(
            {"name": campaign, "lease.owner": owner},
            {"$set": {"lease.expires_at": now + timedelta(seconds=ttl_s)}},
        )
        if res.matched_count == 0:
            raise CampaignLockedError(
                f"lost the lease on campaign {campaign!r} (another runner took it after expiry); stopping"
            )

    def release_lease(self, campaign: str, owner: str) -> None:
        """Give the lease back if we hold it (no-op otherwise)."""
        self.db.campaigns.update_one({"name": campaign, "lease.owner": owner}, {"$set": {"lease": None}})

    # ------------------------------------------------------------------ iterations and stages
    def get_iteration(self, campaign: str, iteration: int) -> dict[str, Any] | None:
        """The iteration document or None."""
        return self.db.iterations.find_one({"campaign": campaign, "iteration": iteration})

    def stage_result(self, campaign: str, iteration: int, stage: str) -> dict[str, Any] | None:
        """The stored result of a finished stage, or None if it has not finished."""
        doc = self.db.iterations.find_one({"campaign": campaign, "iteration": iteration}, {f"stages.{stage}": 1})
        state = (doc or {}).get("stages", {}).get(stage)
        if state and state.get("status") == "done":
            return state.get("result", {})
        return None

    def mark_stage(
        self,
        campaign: str,
        iteration: int,
        stage: str,
        status: str,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Record a stage's status (``running``/``done``/``failed``) and, when done, its result."""
        now = utcnow()
        sets: dict[str, Any] = {f"stages.{stage}.status": status, "updated_at": now}
        if status == "running":
            sets[f"stages.{stage}.started_at"] = now
        else:
            sets[f"stages.{stage}.finished_at"] = now
        if result is not None:
            sets[f"stages.{stage}.result"] = dict(result)
        if error is not None:
            sets[f"stages.{stage}.error"] = error
        update: dict[str, Any] = {"$set": sets, "$setOnInsert": {"created_at": now}}
        if status == "running":
            update["$inc"] = {f"stages.{stage}.attempt": 1}
        self.db.iterations.update_one({"campaign": campaign, "iteration": iteration}, update, upsert=True)

    def set_iteration_fields(self, campaign: str, iteration: int, **fields: Any) -> None:
        """``$set`` fields (metrics, timings, model refs) on an iteration document (upsert)."""
        self.db.iterations.update_one(
            {"campaign": campaign, "iteration": iteration},
            {"$set": {**fields, "updated_at": utcnow()}, "$setOnInsert": {"created_at": utcnow()}},
            upsert=True,
        )

    def iterations(self, campaign: str) -> list[dict[str, Any]]:
        """All iteration documents of a campaign, in order."""
        return list(self.db.iterations.find({"campaign": campaign}).sort("iteration", ASCENDING))

    # ------------------------------------------------------------------ status counts
    def iteration_counts(self, campaign: str, iteration: int) -> dict[str, list[dict[str, Any]]]:
        """Live counts of one iteration's documents: candidates by status, labels by source.

        Two indexed aggregations over that iteration only. Returned as stored in a snapshot:
        ``{"candidates": [{"k": [status], "n": n}, ...], "labels": [{"k": [source], "n": n}, ...]}``.
        """
        return {
            coll: group_rows(self.db[coll], {"campaign": campaign, "iteration": iteration}, [field])
            for coll, field in COUNTED.items()
        }

    def record_iteration_summary(self, campaign: str, iteration: int) -> dict[str, Any]:
        """Snapshot the counts of ``iteration`` into its iteration document (field ``counts``).

        Call it once the iteration's candidates and labels are final (the ``metrics`` stage: they are
        only written by its own ``acquire`` and ``label`` stages). The snapshot is ``$set``, so
        re-running it (a resumed stage) rewrites the same numbers instead of adding them twice.
        :meth:`upsert_labels` refreshes the snapshot of an iteration it writes into (a late import).
        Returns the snapshot.
        """
        counts = self.iteration_counts(campaign, iteration)
        self.db.iterations.update_one(
            {"campaign": campaign, "iteration": iteration},
            {"$set": {"counts": counts, "updated_at": utcnow()}, "$setOnInsert": {"created_at": utcnow()}},
            upsert=True,
        )
        return counts

    def campaign_counts(
        self,
        campaign: str,
        iterations: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, dict[Any, int]]:
        """Candidates by status and labels by source of a whole campaign: ``{"candidates": {...}, "labels": {...}}``.

        Equal to grouping every document of the campaign, but reads the per-iteration snapshots of
        :meth:`record_iteration_summary` and counts live (indexed) only what no snapshot covers: the
        iterations after the last snapshot, before the first (seed labels, iteration 0), the gaps, and
        documents without an iteration (labels imported with ``--allow-new``). ``iterations`` are the
        campaign's iteration documents if the caller has them already.
        """
        if iterations is None:
            iterations = list(self.db.iterations.find({"campaign": campaign}, {"iteration": 1, "counts": 1}))
        docs = iterations
        out: dict[str, dict[Any, int]] = {}
        for coll, field in COUNTED.items():
            snaps = {int(d["iteration"]): d["counts"][coll] for d in docs if coll in (d.get("counts") or {})}
            totals = partitioned_counts(self.db[coll], {"campaign": campaign}, "iteration", [field], snaps)
            out[coll] = {k[0]: n for k, n in sorted(totals.items(), key=lambda kv: str(kv[0]))}
        return out

    def _refresh_iteration_summaries(self, campaign: str, iterations: set[Any]) -> None:
        """Recompute the snapshots of ``iterations`` that have one (their documents just changed)."""
        its = [i for i in iterations if isinstance(i, int)]
        if not its:
            return
        for d in self.db.iterations.find(
            {"campaign": campaign, "iteration": {"$in": its}}, {"iteration": 1, "counts": 1}
        ):
            if d.get("counts") is not None:
                self.record_iteration_summary(campaign, int(d["iteration"]))


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config without fields that may legitimately differ between runs: the iteration target and
    the settings of the post-loop structure stage (they do not change any stored loop state). Unset
    (None) fields are dropped, so a field added later with a None default does not change old configs.
    A ``gp`` section stored before ``gp.label_noise`` existed (issue 21) fitted ``learned`` noise: it
    compares as such, so resuming it needs ``gp: {label_noise: learned}`` rather than silently
    switching the loop's noise model mid-campaign. Likewise an ``acquisition`` section stored before
    ``acquisition.hull`` existed (issue 20) never used a learned P(E_hull): it compares as
    ``hull: {enabled: false}`` (the other ``hull`` fields do not matter while it is off)."""
    out = {k: v for k, v in dict(config).items() if k not in {"iterations", "structures"} and v is not None}
    if isinstance(out.get("gp"), Mapping) and "label_noise" not in out["gp"]:
        out["gp"] = {**out["gp"], "label_noise": "learned"}
    acquisition = out.get("acquisition")
    if isinstance(acquisition, Mapping):
        hull = acquisition.get("hull", {"enabled": False})
        if isinstance(hull, Mapping) and not hull.get("enabled", True):
            hull = {"enabled": False}
        out["acquisition"] = {**acquisition, "hull": hull}
    return out


def mark_interrupted(db: Database, name: str, owner: str) -> None:
    """Set campaign ``name`` to ``interrupted`` and release its lease if ``owner`` holds it (a stage
    left ``running`` is redone by the next run). A function on a bare database handle so that a
    Ctrl-C handler can call it with a short server timeout, without building a :class:`Store`."""
    db.campaigns.update_one(
        {"name": name, "lease.owner": owner}, {"$set": {"status": CampaignStatus.INTERRUPTED, "lease": None}}
    )
