"""The recovery metric on a hand-made example."""

from __future__ import annotations

import numpy as np
import pytest

from alcore.recovery import hits, recovery_score


def test_hand_made_example() -> None:
    # pool of 8: the oracle calls 4 wide-gap (indices 0-3); the screening model calls 0, 1, 4 and
    # has no prediction for 3 (NaN); index 2 sits exactly on the threshold for the model (not a hit)
    oracle = np.array([6.5, 7.0, 6.1, 8.0, 5.0, 1.0, 6.0, np.nan])
    model = np.array([6.2, 6.9, 6.0, np.nan, 6.4, 0.5, 5.9, 9.0])
    s = recovery_score(oracle, model, threshold=6.0)
    assert (s.n_reference, s.n_predicted, s.n_recovered) == (4, 4, 2)
    assert s.recall == pytest.approx(0.5)
    assert s.precision == pytest.approx(0.5)


def test_perfect_and_empty_cases() -> None:
    y = np.array([7.0, 2.0, 6.5])
    assert recovery_score(y, y, 6.0).recall == 1.0 == recovery_score(y, y, 6.0).precision
    none = recovery_score(y, np.zeros(3), 6.0)
    assert none.recall == 0.0 and np.isnan(none.precision)
    assert np.isnan(recovery_score(np.zeros(3), y, 6.0).recall)


def test_hits_ignore_nan_and_length_mismatch_is_an_error() -> None:
    assert hits(np.array([np.nan, 7.0, -np.inf]), 6.0).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="differ in length"):
        recovery_score(np.ones(3), np.ones(4), 0.5)
