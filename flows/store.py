"""The MongoDB store: a repository layer over pymongo for the collections of the data model.

Every write is an upsert on the collection's unique key, so repeating a stage rewrites instead of
duplicating. Model weights live in GridFS as safetensors bytes (no pickle anywhere) with their
sha256, verified on every load. A campaign is driven by one runner at a time through a lease taken
with ``find_one_and_update``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import gridfs
import torch
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError
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
    "structures": ["campaign", "formula", "template_id"],
    "pool_batches": ["pool", "batch"],
}

#: Secondary indexes for the common queries (top-k, status, per-pool screening).
SECONDARY_INDEXES: dict[str, list[list[tuple[str, int]]]] = {
    "labels": [[("campaign", ASCENDING), ("property", ASCENDING), ("value", DESCENDING)]],
    "candidates": [[("campaign", ASCENDING), ("status", ASCENDING)],
                   [("campaign", ASCENDING), ("pred_mean", DESCENDING)]],
    "pools": [[("pool", ASCENDING), ("verdict", ASCENDING), ("pred_mean", DESCENDING)],
              [("pool", ASCENDING), ("batch", ASCENDING)]],
    "structures": [[("campaign", ASCENDING), ("verdict", ASCENDING), ("e_hull", ASCENDING)]],
}

BULK_BATCH = 5_000


def utcnow() -> datetime:
    """Timezone-aware UTC now (the store keeps all times in UTC)."""
    return datetime.now(UTC)


def default_owner() -> str:
    """A lease owner id that names this host and process: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
            ops.append(UpdateOne({k: doc[k] for k in keys}, {"$set": body, "$setOnInsert": {"created_at": now}},
                                 upsert=True))
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
                    k for k in set(existing["config"]) | set(config)
                    if existing["config"].get(k) != config.get(k)
                )
                raise ConfigError(
                    f"campaign {name!r} exists with a different config (differs in {diff}); "
                    "use a new campaign name or the stored config"
                )
            return existing
        doc = {"name": name, "config": dict(config), "status": "created", "iteration": 0,
               "created_at": utcnow(), "lease": None}
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
            {"name": campaign, "$or": [{"lease": None}, {"lease.expires_at": {"$lt": now}},
                                       {"lease.owner": owner}]},
            {"$set": {"lease": {"owner": owner, "acquired_at": now,
                                "expires_at": now + timedelta(seconds=ttl_s)}}},
            return_document=True,
        )
        if doc is None:
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
        doc = self.db.iterations.find_one(
            {"campaign": campaign, "iteration": iteration}, {f"stages.{stage}": 1}
        )
        state = (doc or {}).get("stages", {}).get(stage)
        if state and state.get("status") == "done":
            return state.get("result", {})
        return None

    def mark_stage(self, campaign: str, iteration: int, stage: str, status: str,
                   result: Mapping[str, Any] | None = None, error: str | None = None) -> None:
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

    # ------------------------------------------------------------------ labels
    def upsert_labels(self, campaign: str, records: Iterable[Mapping[str, Any]], prop: str = "band_gap") -> int:
        """Upsert labels ``{formula, value, source, iteration?, std?}``; returns how many were written.

        Refuses (:class:`InvalidLabelError`) NaN or infinite values before writing anything.
        """
        docs: list[dict[str, Any]] = []
        for r in records:
            value = float(r["value"])
            if not math.isfinite(value):
                raise InvalidLabelError(f"label for {r['formula']!r} is {value}; labels must be finite numbers "
                                        "(nothing was written)")
            docs.append({**r, "campaign": campaign, "property": prop, "value": value})
        return self.bulk_upsert("labels", docs)

    def labels(self, campaign: str, prop: str = "band_gap") -> list[dict[str, Any]]:
        """All labels of a campaign for one property, sorted by formula (deterministic order)."""
        return list(self.db.labels.find({"campaign": campaign, "property": prop}, {"_id": 0})
                    .sort("formula", ASCENDING))

    def top_labels(self, campaign: str, k: int = 10, prop: str = "band_gap") -> list[dict[str, Any]]:
        """The ``k`` highest labels of a campaign (uses the (campaign, property, value) index)."""
        return list(self.db.labels.find({"campaign": campaign, "property": prop}, {"_id": 0})
                    .sort("value", DESCENDING).limit(k))

    # ------------------------------------------------------------------ candidates, pools, structures
    def upsert_candidates(self, campaign: str, iteration: int, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert candidate documents of one iteration (keyed by formula); returns the count."""
        return self.bulk_upsert("candidates", ({**d, "campaign": campaign, "iteration": iteration} for d in docs))

    def candidates(self, campaign: str, iteration: int | None = None, status: str | None = None,
                   ) -> list[dict[str, Any]]:
        """Candidates of a campaign, optionally of one iteration and/or status, in a stable order."""
        query: dict[str, Any] = {"campaign": campaign}
        if iteration is not None:
            query["iteration"] = iteration
        if status is not None:
            query["status"] = status
        return list(self.db.candidates.find(query, {"_id": 0}).sort([("iteration", 1), ("rank", 1), ("formula", 1)]))

    def upsert_pool(self, pool: str, docs: Iterable[Mapping[str, Any]]) -> int:
        """Upsert pool members ``{formula, generator, seed, ...}`` into pool ``pool``; returns the count."""
        return self.bulk_upsert("pools", ({**d, "pool": pool} for d in docs))

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
                f"{kind}-{sha[:12]}.safetensors", blob,
                metadata={**dict(metadata), "kind": kind, "sha256": sha, "format": "safetensors",
                          "bytes": len(blob)},
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


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config without fields that may legitimately differ between runs: the iteration target and
    the settings of the post-loop structure stage (they do not change any stored loop state)."""
    return {k: v for k, v in dict(config).items() if k not in {"iterations", "structures"}}
