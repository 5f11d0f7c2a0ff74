"""The MongoDB store: a repository layer over pymongo for the collections of the data model.

Every write is an upsert on the collection's unique key, so repeating a stage rewrites instead of
duplicating. Model weights live in GridFS as safetensors bytes (no pickle anywhere) with their
sha256, verified on every load. A campaign is driven by one runner at a time through a lease taken
with ``find_one_and_update``.

Status and top-k answers stay fast at 1 M pool / 100k labels / 100k candidates without depending on
the server walking an index in sort order (docs/reliability.md, "Load"):

* **top-k** (:meth:`Store.top_k`): a small *threshold hint* per query scope (the best ~200
  ``(value, formula)`` pairs written there, kept in ``summaries`` by the write paths) turns the
  query into an index range query ``value >= t`` whose cost follows the few matches. The hint only
  picks ``t``; the answer is always read live, and if fewer than ``k`` documents reach ``t`` (a
  deleted or lowered value) a lower threshold and finally the full query are used. Exact by
  construction.
* **status counts** (:meth:`Store.campaign_counts`): per-iteration counts snapshotted once an
  iteration's documents are final (:meth:`Store.record_iteration_summary`, set, never
  incremented, so a re-run cannot double count), plus live indexed counts for every iteration
  without a snapshot.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import gridfs
import torch
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from alcore.errors import (
    CampaignLockedError,
    CampaignNotFoundError,
    ConfigError,
    CorruptModelError,
    InvalidLabelError,
    StoreUnavailableError,
)
from flows.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: Unique keys of every collection (the data model of docs/architecture.md).
UNIQUE_KEYS: dict[str, list[str]] = {
    "campaigns": ["name"],
    "iterations": ["campaign", "iteration"],
    "labels": ["campaign", "formula", "property"],
    "candidates": ["campaign", "iteration", "formula"],
    "pools": ["pool", "formula"],
    "screenings": ["pool", "key", "formula"],
    "structures": ["campaign", "formula", "template_id"],
    "pool_batches": ["pool", "batch"],
}

#: Secondary indexes for the common queries (top-k, status, per-pool screening).
SECONDARY_INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    "labels": [
        [("campaign", ASCENDING), ("property", ASCENDING), ("value", DESCENDING)],
        [("campaign", ASCENDING), ("iteration", ASCENDING)],
    ],
    "candidates": [
        [("campaign", ASCENDING), ("status", ASCENDING)],
    ],
    "pools": [[("pool", ASCENDING), ("batch", ASCENDING)]],
    "screenings": [
        [("pool", ASCENDING), ("key", ASCENDING), ("verdict", ASCENDING), ("pred_mean", DESCENDING)],
        [("pool", ASCENDING), ("key", ASCENDING), ("batch", ASCENDING)],
    ],
    "structures": [[("campaign", ASCENDING), ("verdict", ASCENDING), ("e_hull", ASCENDING)]],
    "summaries": [[("kind", ASCENDING), ("pool", ASCENDING)]],
}

BULK_BATCH = 5_000

#: Small derived documents (top-k threshold hints, per-batch screening counts), keyed by a string ``_id``.
SUMMARIES = "summaries"
#: How many ``(value, formula)`` pairs a top-k hint keeps (top-k queries with ``k`` up to this are served
#: by an index range query).
HINT_SIZE = 200


def utcnow() -> datetime:
    """Timezone-aware UTC now (the store keeps all times in UTC)."""
    return datetime.now(UTC)


def default_owner() -> str:
    """A lease owner id that names this host and process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead_local_process(owner: str) -> bool:
    """True if ``owner`` is a :func:`default_owner` id (``host:pid``) of this host whose process no
    longer exists (a crashed runner: its lease can be taken over at once instead of after expiry).
    Any other owner (another host, a custom ``--owner`` name, a live process) gives False."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return False
    return False


def connect_client(settings: Settings | None = None) -> MongoClient:
    """A pymongo client for the configured server, starting the embedded one if needed.

    Raises :class:`StoreUnavailableError` (with the URI masked) when the server does not answer
    within ``settings.server_timeout_s``.
    """
    settings = settings or get_settings()
    if settings.embedded:
        from flows.embedded import start_server

        uri = start_server(settings.data_dir, settings.embedded_port).uri
    else:
        uri = settings.mongodb_uri.get_secret_value()
    timeout_ms = int(settings.server_timeout_s * 1000)
    client: MongoClient = MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, retryWrites=True, appname="alflow"
    )
    try:
        client.admin.command("ping")
    except (ServerSelectionTimeoutError, ConnectionFailure) as exc:
        client.close()
        raise StoreUnavailableError(
            f"cannot reach MongoDB at {settings.uri_masked()} within {settings.server_timeout_s:.0f} s "
            f"({type(exc).__name__}); check the server or ALFLOW_MONGODB_URI"
        ) from None
    return client


class Store:
    """Repository over one MongoDB database: campaigns, iterations, labels, candidates, pools,
    structures and GridFS model weights. Create with :meth:`connect` or from a ``Database``."""

    def __init__(self, db: Database, client: MongoClient | None = None) -> None:
        self.db = db
        self.client = client
        self.fs = gridfs.GridFSBucket(db, bucket_name="models")
        self.ensure_indexes()

    @classmethod
    def connect(cls, settings: Settings | None = None) -> Store:
        """Connect to the configured server (embedded by default); returns a ready store."""
        settings = settings or get_settings()
        client = connect_client(settings)
        return cls(client[settings.database], client)

    @classmethod
    def from_uri(cls, uri: str, database: str = "alflow") -> Store:
        """A store on an explicit URI (tests, tools); no embedded server is started."""
        client: MongoClient = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=20_000)
        return cls(client[database], client)

    @classmethod
    def open(cls, mongodb_uri: str | None = None, database: str | None = None) -> Store:
        """An explicit URI (and database) when given, else the configured store (embedded by default)."""
        if mongodb_uri:
            return cls.from_uri(mongodb_uri, database or get_settings().database)
        return cls.connect()

    def close(self) -> None:
        """Close the underlying client (if this store owns one)."""
        if self.client is not None:
            self.client.close()

    # ------------------------------------------------------------------ indexes
    def ensure_indexes(self) -> None:
        """Create the unique and secondary indexes (idempotent)."""
        for coll, keys in UNIQUE_KEYS.items():
            spec = [(k, ASCENDING) for k in keys]
            try:
                self.db[coll].create_index(spec, unique=True)
            except OperationFailure as exc:  # same keys already indexed under another name
                existing = [v for v in self.db[coll].index_information().values() if v["key"] == spec]
                if exc.code not in (85, 86) or not existing or not existing[0].get("unique"):
                    raise
        for coll, indexes in SECONDARY_INDEXES.items():
            for spec in indexes:
                self.db[coll].create_index(spec)
        self.db["models.files"].create_index([("metadata.sha256", ASCENDING)])
        self.db["models.files"].create_index([("metadata.kind", ASCENDING), ("uploadDate", DESCENDING)])

    # ------------------------------------------------------------------ generic upserts
    def bulk_upsert(self, collection: str, docs: Iterable[Mapping[str, Any]], batch: int = BULK_BATCH) -> int:
        """Upsert documents keyed by the collection's unique key, in unordered bulk batches.

        Fields present in a document are ``$set``; the document's ``created_at`` is set once.
        Returns the number of documents written.
        """
        keys = UNIQUE_KEYS[collection]
        coll = self.db[collection]
        ops: list[UpdateOne] = []
        n = 0
        now = utcnow()
        for doc in docs:
            missing = [k for k in keys if k not in doc]
            if missing:
                raise ValueError(f"{collection} document lacks key field(s) {missing}: {dict(doc)!r:.200}")
            body = {k: v for k, v in doc.items() if k != "_id"}
            body["updated_at"] = now
            ops.append(
                UpdateOne({k: doc[k] for k in keys}, {"$set": body, "$setOnInsert": {"created_at": now}}, upsert=True)
            )
            if len(ops) >= batch:
                n += self._flush(coll, ops)
                ops = []
        if ops:
            n += self._flush(coll, ops)
        return n

    @staticmethod
    def _flush(coll, ops: list) -> int:
        result = coll.bulk_write(ops, ordered=False)
        return result.upserted_count + result.matched_count

    def bulk_insert_new(self, collection: str, docs: Iterable[Mapping[str, Any]], batch: int = BULK_BATCH) -> int:
        """Insert documents whose unique key is not stored yet, in unordered batches; returns how many were new.

        Documents whose key already exists are left as they are (duplicate-key errors are skipped), so
        repeating the call is a no-op. About 2.5x the rate of :meth:`bulk_upsert` on SecantusDB
        (docs/reliability.md); use it where new documents are written once (pool generation, bulk fills).
        """
        coll = self.db[collection]
        n = 0
        chunk: list[dict[str, Any]] = []
        now = utcnow()

        def flush() -> int:
            try:
                return len(coll.insert_many(chunk, ordered=False).inserted_ids)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
                return int(exc.details.get("nInserted", 0))

        for doc in docs:
            chunk.append({"created_at": now, "updated_at": now, **{k: v for k, v in doc.items() if k != "_id"}})
            if len(chunk) >= batch:
                n += flush()
                chunk = []
        if chunk:
            n += flush()
        return n

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

    # ------------------------------------------------------------------ top-k with threshold hints
    def top_k(
        self, collection: str, match: Mapping[str, Any], field: str, k: int, projection: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The ``k`` documents matching ``match`` with the highest numeric ``field`` (ties by formula).

        Exactly ``find({**match, field: {"$gte": -inf}}).sort([(field, -1), ("formula", 1)]).limit(k)``
        (documents whose ``field`` is missing, null, NaN or not a number never rank),
        but answered by an index range query
        ``field >= t`` with ``t`` from the scope's hint (:meth:`note_top`), so its cost follows the
        documents above ``t`` rather than all of ``match`` (an index on ``(*match, field)`` is needed).
        When fewer than ``k`` documents reach ``t`` (values deleted or lowered since the hint was
        written) it tries the hint's lowest value and then the full query, and rewrites the hint from
        what it read (if ``projection`` keeps ``field`` and ``formula``). Returns the documents with
        ``projection`` (default: all fields but ``_id``).
        """
        if k <= 0:
            return []
        coll = self.db[collection]
        proj = {"_id": 0} if projection is None else dict(projection)
        order = [(field, DESCENDING), ("formula", ASCENDING)]
        hint = self.db[SUMMARIES].find_one({"_id": _hint_id(collection, match, field)}) or {}
        values = [e[0] for e in hint.get("entries", [])]
        if k <= len(values):  # the usual case: documents above the hint's k-th value
            docs = list(coll.find({**match, field: {"$gte": float(values[k - 1])}}, proj).sort(order).limit(k))
            if len(docs) >= k:
                return docs
        # a stale hint (values deleted or lowered) or k beyond it: above the hint's lowest value, else
        # the full query; what is read (the live best max(k, HINT_SIZE)) becomes the new hint
        limit = max(k, HINT_SIZE)
        docs = []
        if values and values[-1] != (values[k - 1] if k <= len(values) else None):
            docs = list(coll.find({**match, field: {"$gte": float(values[-1])}}, proj).sort(order).limit(limit))
        if len(docs) < k:
            docs = list(coll.find({**match, field: {"$gte": -math.inf}}, proj).sort(order).limit(limit))
        if all(field in d and "formula" in d for d in docs):  # (a projection without them cannot rebuild it)
            self._write_hint(collection, match, field, [(d[field], d["formula"]) for d in docs], None)
        return docs[:k]

    def note_top(
        self, collection: str, match: Mapping[str, Any], field: str, entries: Iterable[tuple[float, str]]
    ) -> None:
        """Merge ``(value, formula)`` pairs just written under ``match`` into the scope's top-k hint.

        Called by the write paths (labels, screening). A formula written again replaces its earlier
        value. The hint is advisory: :meth:`top_k` checks it against the live documents.
        """
        best = sorted(
            ((float(v), str(f)) for v, f in entries if v is not None and math.isfinite(v)), key=lambda e: (-e[0], e[1])
        )[:HINT_SIZE]
        if not best:
            return
        for _ in range(5):  # optimistic concurrency on the hint's version
            hint = self.db[SUMMARIES].find_one({"_id": _hint_id(collection, match, field)}) or {}
            merged = {f: v for v, f in hint.get("entries", [])}
            merged.update({f: v for v, f in best})
            if self._write_hint(collection, match, field, [(v, f) for f, v in merged.items()], hint.get("version")):
                return
        self.forget_top(collection, match, field)  # contended: drop it (top_k then rebuilds it)

    def forget_top(
        self, collection: str, match: Mapping[str, Any] | None = None, field: str | None = None, **where: Any
    ) -> None:
        """Delete top-k hints: one scope (``match`` and ``field``), or all of ``collection`` whose scope has
        the fields ``where`` (e.g. ``pool="p"`` when a pool is re-screened)."""
        if match is not None and field is not None:
            self.db[SUMMARIES].delete_one({"_id": _hint_id(collection, match, field)})
            return
        self.db[SUMMARIES].delete_many(
            {"kind": "top", "collection": collection, **{f"match.{k}": v for k, v in where.items()}}
        )

    def _write_hint(
        self,
        collection: str,
        match: Mapping[str, Any],
        field: str,
        entries: list[tuple[float, str]],
        version: int | None,
    ) -> bool:
        """Store a hint (best :data:`HINT_SIZE` entries); with ``version``, only if it is still that one."""
        hint_id = _hint_id(collection, match, field)
        entries = sorted(entries, key=lambda e: (-e[0], e[1]))[:HINT_SIZE]
        body = {
            "kind": "top",
            "collection": collection,
            "match": dict(match),
            "field": field,
            "entries": [[v, f] for v, f in entries],
            "updated_at": utcnow(),
        }
        if version is None:
            self.db[SUMMARIES].update_one({"_id": hint_id}, {"$set": body, "$inc": {"version": 1}}, upsert=True)
            return True
        res = self.db[SUMMARIES].update_one(
            {"_id": hint_id, "version": version}, {"$set": body, "$inc": {"version": 1}}
        )
        return res.matched_count == 1

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

    # ------------------------------------------------------------------ candidates, pools, structures
    def upsert_candidates(self, campaign: str, iteration: int, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert candidate documents of one iteration (keyed by formula); returns the count."""
        n = self.bulk_upsert("candidates", ({**d, "campaign": campaign, "iteration": iteration} for d in docs))
        self._refresh_iteration_summaries(campaign, {iteration})
        return n

    def candidates(
        self,
        campaign: str,
        iteration: int | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Candidates of a campaign, optionally of one iteration and/or status, in a stable order."""
        query: dict[str, Any] = {"campaign": campaign}
        if iteration is not None:
            query["iteration"] = iteration
        if status is not None:
            query["status"] = status
        return list(self.db.candidates.find(query, {"_id": 0}).sort([("iteration", 1), ("rank", 1), ("formula", 1)]))

    def upsert_pool(self, pool: str, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert pool members ``{formula, generator, seed, ...}`` into pool ``pool``; returns the count.

        Drops the screening counts of the batches written to, under every screening key (all of the
        pool's if a document names no batch), so the next ``screen-pool`` run screens the new members
        and :func:`flows.screen_flow.screen_counts` counts those batches live until then.
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

    def upsert_structures(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert structure documents keyed by ``(campaign, formula, template_id)``; returns the count.

        Generators that are not part of a campaign use a descriptive ``campaign`` such as
        ``"crystalgan:PdNiH"``.
        """
        return self.bulk_upsert("structures", docs)

    # ------------------------------------------------------------------ model weights (GridFS)
    def save_model(self, kind: str, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> str:
        """Store weights as safetensors bytes in GridFS; returns their sha256 (hex).

        ``kind`` names the model family (e.g. ``"autoencoder"``); ``metadata`` (JSON-like) holds
        params, training metrics, campaign/iteration. Saving identical bytes twice stores them once.
        """
        blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in state_dict.items()})
        sha = hashlib.sha256(blob).hexdigest()
        if self.db["models.files"].find_one({"metadata.sha256": sha, "metadata.kind": kind}) is None:
            self.fs.upload_from_stream(
                f"{kind}-{sha[:12]}.safetensors",
                blob,
                metadata={**dict(metadata), "kind": kind, "sha256": sha, "format": "safetensors", "bytes": len(blob)},
            )
        return sha

    def load_model(self, sha256: str, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load weights by sha256; returns ``(state_dict, metadata)``.

        Raises :class:`CorruptModelError` if the blob is missing, of another ``kind``, its bytes do
        not hash to ``sha256``, or it is not a safetensors file. Nothing executable is ever loaded.
        """
        meta = self.db["models.files"].find_one({"metadata.sha256": sha256})
        if meta is None:
            raise CorruptModelError(f"no model blob with sha256 {sha256[:12]}...; retrain or re-import it")
        info = meta["metadata"]
        if kind is not None and info.get("kind") != kind:
            raise CorruptModelError(
                f"model {sha256[:12]} is a {info.get('kind')!r} blob, expected {kind!r}; check the model reference"
            )
        blob = self.fs.open_download_stream(meta["_id"]).read()
        actual = hashlib.sha256(blob).hexdigest()
        if actual != sha256:
            raise CorruptModelError(
                f"model blob {meta['filename']} is corrupt: sha256 {actual[:12]} != recorded {sha256[:12]}; "
                "delete it and retrain"
            )
        try:
            state = load_safetensors(blob)
        except Exception as exc:
            raise CorruptModelError(f"model blob {meta['filename']} is not valid safetensors: {exc}") from None
        return state, dict(info)

    def latest_model(self, kind: str, **where: Any) -> str | None:
        """sha256 of the newest model of ``kind`` matching metadata fields ``where``, or None."""
        query = {"metadata.kind": kind, **{f"metadata.{k}": v for k, v in where.items()}}
        doc = self.db["models.files"].find_one(query, sort=[("uploadDate", DESCENDING)])
        return doc["metadata"]["sha256"] if doc else None


#: What the status counts group: collection -> field.
COUNTED: dict[str, str] = {"candidates": "status", "labels": "source"}


def _hint_id(collection: str, match: Mapping[str, Any], field: str) -> str:
    """The ``summaries`` ``_id`` of the top-k hint of one query scope."""
    return "top:" + json.dumps([collection, dict(match), field], sort_keys=True, default=str)


def group_rows(coll, match: Mapping[str, Any], group: Sequence[str]) -> list[dict[str, Any]]:
    """``[{"k": [values of group...], "n": count}, ...]`` for the documents matching ``match``."""
    rows = coll.aggregate([{"$match": dict(match)}, {"$group": {"_id": [f"${g}" for g in group], "n": {"$sum": 1}}}])
    return sorted(({"k": list(r["_id"]), "n": int(r["n"])} for r in rows), key=lambda r: str(r["k"]))


def partitioned_counts(
    coll,
    scope: Mapping[str, Any],
    part: str,
    group: Sequence[str],
    snapshots: Mapping[int, Sequence[Mapping[str, Any]]],
) -> Counter:
    """Counts of the documents matching ``scope`` grouped by ``group`` (a Counter keyed by value tuples).

    ``part`` is an integer field that splits ``scope`` into partitions (iteration, pool batch);
    ``snapshots`` maps partition values to stored :func:`group_rows` results, which are summed as
    they are. Everything else is counted live with indexed range queries on ``(*scope, part)``:
    values below the first and above the last snapshot, each gap between, and documents whose
    ``part`` is missing or null. With no snapshot it is one grouping of the whole scope.
    """
    totals: Counter = Counter()
    for rows in snapshots.values():
        for r in rows:
            totals[tuple(r["k"])] += int(r["n"])
    parts = sorted(snapshots)
    if parts and parts[-1] - parts[0] + 1 > 2 * len(parts):  # sparse snapshots: one live count is cheaper
        totals.clear()
        parts = []
    if not parts:
        live: list[dict[str, Any]] = [dict(scope)]
    else:
        live = [{**scope, part: {"$lt": parts[0]}}, {**scope, part: {"$gt": parts[-1]}}, {**scope, part: None}]
        live += [{**scope, part: p} for p in range(parts[0] + 1, parts[-1]) if p not in snapshots]
    for q in live:
        for r in group_rows(coll, q, group):
            totals[tuple(r["k"])] += r["n"]
    return totals


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config without fields that may legitimately differ between runs: the iteration target and
    the settings of the post-loop structure stage (they do not change any stored loop state). Unset
    (None) fields are dropped, so a field added later with a None default does not change old configs."""
    return {k: v for k, v in dict(config).items() if k not in {"iterations", "structures"} and v is not None}
