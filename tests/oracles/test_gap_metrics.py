"""Band-gap scores on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from oracles.gap_metrics import gap_metrics


def test_perfect_and_tied_predictions() -> None:
    y = np.array([0.0, 0.0, 0.5, 2.0, 4.0, 6.0])
    m = gap_metrics(y, y.copy())
    assert m["mae"] == 0 and m["spearman"] == pytest.approx(1.0)
    assert m["auc_metal"] == 1.0 and m["auc_wide"] == 1.0 and m["n"] == 6
    flat = gap_metrics(y, np.zeros(6))  # a constant prediction ranks nothing: AUC one half
    assert flat["auc_metal"] == 0.5 and flat["auc_wide"] == 0.5
    assert flat["mae"] == pytest.approx(y.mean()) and np.isnan(flat["spearman"])


def test_auc_counts_misranked_pairs_and_skips_nan() -> None:
    y = np.array([0.0, 0.0, 1.0, 4.0])
    pred = np.array([0.2, 0.0, 0.1, 3.5])  # one metal (0.2) above one non-metal (0.1): 3 of 4 pairs right
    m = gap_metrics(y, pred)
    assert m["auc_metal"] == pytest.approx(0.75)
    m2 = gap_metrics(np.append(y, 1.0), np.append(pred, np.nan))
    assert m2["n"] == 4 and m2["auc_metal"] == pytest.approx(0.75)
