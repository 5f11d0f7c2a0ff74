"""Issue 19, finding 11: the discovery curve and tables show the best *acquired* label beside the best
overall (which includes the seeds, so the demo's curve was a flat line at a seed's 7.72 eV)."""

from __future__ import annotations

import numpy as np

from flows.config import parse_config


def _campaign(store) -> None:
    cfg = parse_config({"name": "d", "mode": "pool", "oracle": "lookup", "seeds": {"n": 10}, "pool_size": 50})
    store.create_campaign("d", cfg.resolved())
    store.upsert_labels("d", [{"formula": "BH3NF3", "value": 7.719, "source": "seed", "iteration": 0}])
    for i, (best_acq, hits) in enumerate([(5.9, 1), (5.9, 1), (6.985, 3)], start=1):
        store.set_iteration_fields(
            "d",
            i,
            metrics={
                "n_labels": 300 + 4 * i,
                "best_value": 7.719,
                "best_formula": "BH3NF3",
                "best_acquired": best_acq,
                "count_above_threshold": 48 + hits,
                "acquired_above_threshold": hits,
            },
        )


def test_discovery_series_has_the_best_acquired_label(store):
    from flows.reporting import discovery_series

    _campaign(store)
    s = discovery_series(store, "d")
    assert list(s["iteration"]) == [0, 1, 2, 3]
    assert np.isnan(s["best_acquired"][0])  # the seed point has no acquisition
    assert list(s["best_acquired"][1:]) == [5.9, 5.9, 6.985]
    assert list(s["best_value"][1:]) == [7.719] * 3


def test_discovery_plot_draws_both_curves(store, tmp_path):
    from flows.reporting import plot_discovery

    _campaign(store)
    path = plot_discovery(store, "d", tmp_path / "discovery.png")
    assert path.exists() and path.stat().st_size > 10_000


def test_campaign_summary_rows_carry_best_acquired(store):
    from flows.campaign import campaign_summary
    from flows.cli.campaign import iteration_rows

    _campaign(store)
    rows = iteration_rows(campaign_summary(store, "d"))
    assert [r[4] for r in rows] == [5.9, 5.9, 6.985] and [r[2] for r in rows] == [7.719] * 3
