"""The store's foundation: connection, indexes, bulk upserts and exact fast top-k queries.

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

import json
import logging
import math
import os
import socket
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self

import gridfs
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, ConnectionFailure, OperationFailure, ServerSelectionTimeoutError

from alcore.errors import StoreUnavailableError
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
    "structure_recovery": ["run", "formula"],
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
        from flows.store.embedded import start_server

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


class StoreBase:
    """Repository over one MongoDB database: campaigns, iterations, labels, candidates, pools,
    structures and GridFS model weights. Create with :meth:`connect` or from a ``Database``."""

    def __init__(self, db: Database, client: MongoClient | None = None) -> None:
        self.db = db
        self.client = client
        self.fs = gridfs.GridFSBucket(db, bucket_name="models")
        self.ensure_indexes()

    @classmethod
    def connect(cls, settings: Settings | None = None) -> Self:
        """Connect to the configured server (embedded by default); returns a ready store."""
        settings = settings or get_settings()
        client = connect_client(settings)
        return cls(client[settings.database], client)

    @classmethod
    def from_uri(cls, uri: str, database: str = "alflow") -> Self:
        """A store on an explicit URI (tests, tools); no embedded server is started."""
        client: MongoClient = MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=20_000)
        return cls(client[database], client)

    @classmethod
    def open(cls, mongodb_uri: str | None = None, database: str | None = None) -> Self:
        """An explicit URI (and database) when given, else the configured store (embedded by default)."""
        if mongodb_uri:
            return cls.from_uri(mongodb_uri, database or get_settings().database)
        return cls.connect()

    @property
    def database_name(self) -> str:
        """The name of the MongoDB database this store works on."""
        return self.db.name

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
