"""Spine benchmark: encoding 100k formulas, validity of 10k, 100k label upserts and a top-100 query.

Run: ``python benchmarks/bench_spine.py`` (uses an in-memory SecantusDB over the wire).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import median_time, report  # noqa: E402
from secantus import SecantusDBServer  # noqa: E402

from alcore import composition, validity  # noqa: E402
from alcore.composition import CompositionEncoder  # noqa: E402
from flows.datasets import band_gap_table  # noqa: E402
from flows.store import Store  # noqa: E402


def _row(task: str, n: int, seconds: float, note: str | None = None) -> dict[str, Any]:
    """One table row: ``n`` items handled in ``seconds`` (median), throughput per second, optional note."""
    row: dict[str, Any] = {"task": task, "n": n, "median_s": seconds, "per_s": n / seconds}
    if note is not None:
        row["note"] = note
    return row


def main() -> None:
    formulas = list(band_gap_table("matbench_mp_gap")["formula"]) + list(band_gap_table("agd_exp1_42k")["formula"])
    formulas = (formulas * 2)[:100_000]
    rows = []
    enc = CompositionEncoder("z103", max_count=8)

    def encode_cold():
        composition.reduced_counts.cache_clear()
        return enc.encode_batch(formulas, errors="mask")

    t, res = median_time(encode_cold, 3)
    note = f"{res.valid.mean():.1%} representable (z103, max 8)"
    rows.append(_row("encode 100k formulas (cold cache)", len(formulas), t, note))
    t, _ = median_time(lambda: enc.encode_batch(formulas, errors="mask"), 3)
    rows.append(_row("encode 100k formulas (warm cache)", len(formulas), t))
    sample = list(dict.fromkeys(formulas))[:10_000]

    def validity_cold():
        validity._smact_ok.cache_clear()
        return validity.check_validity_batch(sample)

    t, verdicts = median_time(validity_cold, 3)
    note = f"{np.mean([v.valid for v in verdicts]):.1%} valid"
    rows.append(_row("SMACT validity 10k unique formulas", len(sample), t, note))
    server = SecantusDBServer(storage_path=":memory:")
    server.start()
    try:
        store = Store.from_uri(server.uri, "bench")
        rng = np.random.default_rng(0)
        recs = [{"formula": f"X{i}", "value": float(v), "source": "bench"} for i, v in enumerate(rng.random(100_000))]
        t, _ = median_time(lambda: store.upsert_labels("bench", recs), 1)  # one pass: ~minutes on SecantusDB
        rows.append(_row("upsert 100k labels (bulk, 5k/batch, 1 run)", 100_000, t, "embedded SecantusDB, in memory"))
        t, top = median_time(lambda: store.top_labels("bench", 100), 5)
        rows.append(_row("top 100 labels by value (indexed)", 100, t, f"best {top[0]['value']:.4f}"))
    finally:
        server.stop()
    report("spine", rows)


if __name__ == "__main__":
    main()
