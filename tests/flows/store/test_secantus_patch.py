"""Issue 19, finding 3: SecantusDB 0.7.0b3 drops the boundary of an inclusive range on a non-last field of
a compound index. The embedded server and the test server run with :mod:`flows.store.secantus_patch`; these
tests compare every range shape with the answer of a collection scan (no index)."""

from __future__ import annotations

import itertools
import socket
import uuid

import pytest
from pymongo import ASCENDING, DESCENDING, MongoClient

from flows.store import secantus_patch

RANGES = [
    {"$lte": 2},
    {"$lt": 3},
    {"$gte": 2},
    {"$gt": 1},
    {"$gt": 1, "$lte": 2},
    {"$gte": 1, "$lt": 3},
    {"$gte": 2, "$lte": 2},
    {"$lte": 0},
    {"$gte": 9},
    {"$lte": 2.5},
    {"$gt": -1.5, "$lte": 3},
    {"$in": [1, 3]},
]
INDEXES = [
    [("a", ASCENDING), ("b", ASCENDING), ("c", ASCENDING)],
    [("a", ASCENDING), ("b", DESCENDING), ("c", ASCENDING)],
    [("a", ASCENDING), ("b", ASCENDING)],
    [("a", ASCENDING), ("b", DESCENDING)],
]


def _docs() -> list[dict]:
    docs = [{"a": "k", "b": b, "c": c} for b, c in itertools.product([1, 2, 3], [1, 2, 3])]
    docs += [{"a": "k", "b": b, "c": 0} for b in (-1, 2.5, 0)]
    docs += [{"a": "j", "b": 2, "c": 1}, {"a": "l", "b": 1, "c": 5}]  # other prefixes must not leak in
    return docs


def _answers(coll, query: dict) -> tuple[int, list]:
    found = sorted((d["b"], d["c"]) for d in coll.find(query, {"_id": 0}))
    return coll.count_documents(query), found


@pytest.fixture
def db(mongo_uri):
    client: MongoClient = MongoClient(mongo_uri)
    name = f"sp_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def _mismatches(db) -> list[tuple]:
    """(index, query, indexed answer, scan answer) for every range shape that differs from a scan."""
    db.scan.insert_many(_docs())
    bad = []
    for spec in INDEXES:
        coll = db[f"ix_{uuid.uuid4().hex[:6]}"]
        coll.create_index(spec)
        coll.insert_many(_docs())
        for rng in RANGES:
            query = {"a": "k", "b": rng}
            got, want = _answers(coll, query), _answers(db.scan, query)
            if got != want:
                bad.append((spec, rng, got[0], want[0]))
    return bad


def test_compound_range_queries_agree_with_a_collection_scan(db):
    assert secantus_patch.is_applied()
    assert _mismatches(db) == []


def test_deletes_and_updates_with_a_compound_range_reach_every_document(db):
    coll = db.w
    coll.create_index([("a", ASCENDING), ("b", ASCENDING), ("c", ASCENDING)])
    coll.insert_many(_docs())
    assert coll.update_many({"a": "k", "b": {"$lte": 2}}, {"$set": {"seen": True}}).modified_count == 8
    assert coll.delete_many({"a": "k", "b": {"$lte": 2}}).deleted_count == 8


def test_the_issue_query_on_the_store_candidates_index(store):
    """The issue's shape on alflow's own index: candidates of iterations <= 2 of a campaign."""
    for it in (1, 2, 3):
        store.upsert_candidates("c", it, [{"formula": f"Na{i}Cl", "status": "rejected"} for i in range(1, 4)])
    assert store.db.candidates.count_documents({"campaign": "c", "iteration": {"$lte": 2}}) == 6
    assert store.db.candidates.count_documents({"campaign": "c", "iteration": {"$gt": 1, "$lte": 2}}) == 3


def test_the_unpatched_server_still_has_the_bug(db):
    """The canary: when this fails, the installed SecantusDB is fixed; drop flows/store/secantus_patch.py
    (see its docstring) and keep the tests above."""
    secantus_patch.remove()
    try:
        bad = _mismatches(db)
    finally:
        assert secantus_patch.apply()
    # the issue's case: the documents with b == 2 are missing (5 of the 8 with b <= 2)
    assert (INDEXES[0], {"$lte": 2}, 5, 8) in bad, bad


def test_the_embedded_server_runs_patched(tmp_path):
    """``flows.store.embedded.start_server`` (the default database) starts the patched server."""
    from flows.store.embedded import running_server, start_server, stop_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(tmp_path, port)
    try:
        assert running_server(tmp_path).patched
        client: MongoClient = MongoClient(server.uri)
        coll = client.t.x
        coll.create_index([("a", ASCENDING), ("b", ASCENDING), ("c", ASCENDING)])
        coll.insert_many(_docs())
        assert coll.count_documents({"a": "k", "b": {"$lte": 2}}) == 8
        client.close()
    finally:
        stop_server(tmp_path)
