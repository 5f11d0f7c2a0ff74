"""The MongoDB store against a real wire-protocol server: keys, upserts, leases, GridFS blobs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest
import torch
from pymongo.errors import DuplicateKeyError

from alcore.errors import CampaignLockedError, CampaignNotFoundError, ConfigError, CorruptModelError
from flows.settings import Settings, mask_uri
from flows.store import UNIQUE_KEYS


def test_unique_indexes_exist_and_reject_duplicates(store):
    for coll, keys in UNIQUE_KEYS.items():
        info = store.db[coll].index_information()
        uniq = [v for v in info.values() if v.get("unique")]
        assert any([k for k, _ in v["key"]] == keys for v in uniq), coll
    store.db.labels.insert_one({"campaign": "c", "formula": "NaCl", "property": "band_gap", "value": 1.0})
    with pytest.raises(DuplicateKeyError):
        store.db.labels.insert_one({"campaign": "c", "formula": "NaCl", "property": "band_gap", "value": 2.0})


def test_repeated_upserts_never_duplicate(store):
    recs = [{"formula": f"Na{i}Cl", "value": float(i), "source": "seed"} for i in range(1, 9)]
    for _ in range(3):
        store.upsert_labels("c", recs)
    assert store.db.labels.count_documents({"campaign": "c"}) == 8
    store.upsert_labels("c", [{"formula": "Na1Cl", "value": 5.0, "source": "oracle"}])
    assert store.db.labels.find_one({"formula": "Na1Cl"})["value"] == 5.0
    assert [d["value"] for d in store.top_labels("c", 2)] == [8.0, 7.0]


def test_nan_labels_are_refused(store):
    with pytest.raises(ValueError, match="finite"):
        store.upsert_labels("c", [{"formula": "NaCl", "value": float("nan"), "source": "x"}])
    assert store.db.labels.count_documents({}) == 0


def test_a_bad_label_deep_in_a_large_batch_writes_nothing(store):
    """Validation happens before the first bulk batch (5,000) is written, not lazily per batch."""
    from alcore.errors import InvalidLabelError

    records = [{"formula": f"Na{i % 7 + 1}Cl{i % 5 + 1}", "value": 1.0, "source": "x"} for i in range(6_000)]
    records[5_999]["value"] = float("inf")
    with pytest.raises(InvalidLabelError, match="nothing was written"):
        store.upsert_labels("big", records)
    assert store.db.labels.count_documents({"campaign": "big"}) == 0


def test_campaign_create_is_idempotent_and_detects_config_change(store):
    a = store.create_campaign("x", {"seed": 1, "iterations": 3})
    b = store.create_campaign("x", {"seed": 1, "iterations": 9})  # iteration target may grow
    assert a["_id"] == b["_id"]
    with pytest.raises(ConfigError, match=r"differs in \['seed'\]"):
        store.create_campaign("x", {"seed": 2, "iterations": 3})
    with pytest.raises(CampaignNotFoundError, match="known: \\['x'\\]"):
        store.get_campaign("nope")


def test_a_campaign_stored_before_label_noise_resumes_only_with_learned_noise(store):
    """Issue 21: a gp section without ``label_noise`` was fitted with learned noise; the new default
    (``auto``) would change the loop mid-campaign, so it is refused and ``learned`` resumes."""
    old_gp = {"maxiter": 75, "warm_maxiter": 25, "warm_start": True, "threads": 1}
    first = store.create_campaign("old", {"seed": 1, "gp": old_gp})
    with pytest.raises(ConfigError, match=r"differs in \['gp'\]"):
        store.create_campaign("old", {"seed": 1, "gp": {**old_gp, "label_noise": "auto"}})
    assert store.create_campaign("old", {"seed": 1, "gp": {**old_gp, "label_noise": "learned"}})["_id"] == first["_id"]


def test_a_campaign_stored_before_the_hull_term_resumes_only_with_it_off(store):
    """Issue 20: an acquisition section without ``hull`` never used a learned P(E_hull); the new
    default (on) would change the loop mid-campaign, so it is refused and ``enabled: false`` resumes."""
    old = {"q": 4, "feasibility": True}
    first = store.create_campaign("old-acq", {"seed": 1, "acquisition": old})
    on = {"enabled": True, "threshold": None, "min_verdicts": 8}
    with pytest.raises(ConfigError, match=r"differs in \['acquisition'\]"):
        store.create_campaign("old-acq", {"seed": 1, "acquisition": {**old, "hull": on}})
    off = {**on, "enabled": False, "min_verdicts": 5}
    assert store.create_campaign("old-acq", {"seed": 1, "acquisition": {**old, "hull": off}})["_id"] == first["_id"]
    store.create_campaign("new-acq", {"seed": 1, "acquisition": {**old, "hull": on}})
    with pytest.raises(ConfigError, match=r"differs in \['acquisition'\]"):
        store.create_campaign("new-acq", {"seed": 1, "acquisition": {**old, "hull": {**on, "min_verdicts": 4}}})


def test_lease_of_a_dead_local_process_is_taken_over_at_once(store):
    """A crashed runner on this host (its pid no longer exists) does not block a restart for the
    lease's lifetime; a live process, another host or a custom owner name still does."""
    import socket

    from flows.store import owner_is_dead_local_process

    host = socket.gethostname()
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead = f"{host}:{int(finished.stdout)}"
    assert owner_is_dead_local_process(dead)
    for alive in (f"{host}:{os.getpid()}", f"other-host:{int(finished.stdout)}", "nightly-runner"):
        assert not owner_is_dead_local_process(alive)

    store.create_campaign("crashed", {"x": 1})
    store.acquire_lease("crashed", dead, ttl_s=600)
    lease = store.acquire_lease("crashed", "restarted", ttl_s=600)
    assert lease["owner"] == "restarted"
    store.create_campaign("busy", {"x": 1})
    store.acquire_lease("busy", f"{host}:{os.getpid()}", ttl_s=600)
    with pytest.raises(CampaignLockedError, match="is being run by"):
        store.acquire_lease("busy", "second", ttl_s=600)


def test_lease_is_exclusive_and_expires(store):
    store.create_campaign("c", {})
    store.acquire_lease("c", "runner-a", ttl_s=0.5)
    with pytest.raises(CampaignLockedError, match="runner-a"):
        store.acquire_lease("c", "runner-b", ttl_s=10)
    store.acquire_lease("c", "runner-a", ttl_s=0.5)  # re-entrant for the holder
    time.sleep(0.8)
    store.acquire_lease("c", "runner-b", ttl_s=10)  # takeover after expiry
    with pytest.raises(CampaignLockedError, match="lost the lease"):
        store.renew_lease("c", "runner-a")
    store.release_lease("c", "runner-b")
    assert store.get_campaign("c")["lease"] is None


LEASE_SCRIPT = """
import sys, time
from flows.store import Store
from alcore.errors import CampaignLockedError
s = Store.from_uri(sys.argv[1], sys.argv[2])
try:
    s.acquire_lease("c", sys.argv[3], ttl_s=float(sys.argv[4]))
    print("acquired", flush=True)
    time.sleep(float(sys.argv[5]))
except CampaignLockedError as e:
    print("refused:", e, flush=True)
"""


def test_lease_exclusive_across_two_processes(store, mongo_uri):
    store.create_campaign("c", {})
    cmd = [sys.executable, "-c", LEASE_SCRIPT, mongo_uri, store.db.name]
    first = subprocess.Popen([*cmd, "proc-1", "300", "600"], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "acquired"
        second = subprocess.run([*cmd, "proc-2", "300", "0"], capture_output=True, text=True, timeout=300)
        assert "refused" in second.stdout and "proc-1" in second.stdout
    finally:
        first.kill()  # the holder crashes without releasing
        first.wait()
    # a runner that crashed holding a short lease: the next one takes over once it expires
    store.db.campaigns.update_one(
        {"name": "c"}, {"$set": {"lease.expires_at": store.get_campaign("c")["lease"]["acquired_at"]}}
    )
    third = subprocess.run([*cmd, "proc-3", "300", "0"], capture_output=True, text=True, timeout=300)
    assert third.stdout.startswith("acquired")
    assert store.get_campaign("c")["lease"]["owner"] == "proc-3"


def test_gridfs_round_trip_of_50mb_blob_with_checksum(store):
    big = {"w": torch.arange(50 * 1024 * 1024 // 4, dtype=torch.float32)}
    sha = store.save_model("test-big", big, {"note": "50 MB"})
    state, meta = store.load_model(sha, kind="test-big")
    assert torch.equal(state["w"], big["w"])
    assert meta["bytes"] > 50 * 1024 * 1024 and meta["sha256"] == sha
    assert store.save_model("test-big", big, {}) == sha  # same bytes stored once
    assert store.db["models.files"].count_documents({"metadata.sha256": sha}) == 1


def test_identical_weights_saved_under_new_settings_are_found_under_both(store):
    weights = {"w": torch.ones(10)}
    sha = store.save_model("rd-ae", weights, {"holdout_key": "s0", "settings": "old"})
    assert store.save_model("rd-ae", weights, {"holdout_key": "s0", "settings": "new"}) == sha
    assert store.save_model("rd-ae", weights, {"holdout_key": "s0", "settings": "new"}) == sha  # alias once
    assert store.db["models.files"].count_documents({"metadata.sha256": sha}) == 1
    assert store.latest_model("rd-ae", holdout_key="s0", settings="old") == sha
    assert store.latest_model("rd-ae", holdout_key="s0", settings="new") == sha
    assert store.latest_model("rd-ae", holdout_key="s1", settings="new") is None  # both fields must match one entry
    assert store.latest_model("rd-ae", holdout_key="s0", settings="other") is None
    assert store.latest_model("rd-ae") == sha
    _, meta = store.load_model(sha, kind="rd-ae")
    assert meta["settings"] == "old" and meta["aliases"] == [{"holdout_key": "s0", "settings": "new"}]


def test_corrupt_and_wrong_kind_blobs_are_detected(store):
    sha = store.save_model("ae", {"w": torch.ones(1000)}, {})
    with pytest.raises(CorruptModelError, match="'ae' blob, expected 'gp'"):
        store.load_model(sha, kind="gp")
    file_id = store.db["models.files"].find_one({"metadata.sha256": sha})["_id"]
    chunk = store.db["models.chunks"].find_one({"files_id": file_id})
    data = bytearray(chunk["data"])
    data[-1] ^= 0xFF
    store.db["models.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})
    with pytest.raises(CorruptModelError, match="corrupt: sha256"):
        store.load_model(sha, kind="ae")
    with pytest.raises(CorruptModelError, match="no model blob"):
        store.load_model(hashlib.sha256(b"x").hexdigest())


def test_uri_is_masked_everywhere():
    uri = "mongodb://alice:s3cret@db.example.org:27017/?authSource=admin"
    assert mask_uri(uri) == "mongodb://alice:***@db.example.org:27017/?authSource=admin"
    s = Settings(mongodb_uri=uri)
    assert "s3cret" not in s.uri_masked() and "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())
