"""The store is the one gateway to MongoDB: product code outside ``flows/store/`` never touches a
collection directly (``store.db.<collection>`` / ``store.db[...]``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("alcore", "oracles", "generators", "flows")
DIRECT_ACCESS = re.compile(r"\.db(\.[A-Za-z_]|\[)")


def test_no_direct_collection_access_outside_the_store() -> None:
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "flows" / "store"):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if DIRECT_ACCESS.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "query through flows.store.Store instead:\n" + "\n".join(offenders)


def test_the_check_catches_direct_access() -> None:
    assert DIRECT_ACCESS.search("docs = store.db.labels.find({})")
    assert DIRECT_ACCESS.search('store.db["pools"].count_documents({})')
    assert not DIRECT_ACCESS.search("store.labels(name)")
