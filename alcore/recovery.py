"""The AGD recovery metric: how much of an oracle's wide-gap set a screening model finds in a pool.

AGD (DESIGN.md section 6) screens a generated pool twice: with the oracle (a model trained on all
labels, standing in for DFT), whose hits above the threshold form the reference set, and with a
screening model trained on few labels. Recovery (recall) is the share of the reference set that the
screening model also puts above the threshold; precision is the share of the screening model's
hits that are in the reference set (AGD reports recall only; without precision a model that
predicts every formula above the threshold would score 100 %).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RecoveryScore:
    """``n_reference`` oracle hits, ``n_predicted`` screening hits, ``n_recovered`` in both;
    ``recall = n_recovered / n_reference``, ``precision = n_recovered / n_predicted`` (NaN if 0/0)."""

    n_reference: int
    n_predicted: int
    n_recovered: int
    recall: float
    precision: float

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return asdict(self)


def hits(values: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) bool: finite values strictly above ``threshold`` (NaN, i.e. no prediction, is never a hit)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v > threshold)


def recovery_score(reference_values: np.ndarray, screening_values: np.ndarray, threshold: float) -> RecoveryScore:
    """Score a screening model against the oracle on the same N pool formulas.

    Takes the oracle's (N,) predictions, the screening model's (N,) predictions (same order, same
    unit, e.g. eV) and the threshold; returns a :class:`RecoveryScore`. Raises ``ValueError`` if the
    arrays differ in length.
    """
    ref = hits(reference_values, threshold)
    pred = hits(screening_values, threshold)
    if ref.shape != pred.shape:
        raise ValueError(f"oracle and screening predictions differ in length: {ref.shape} vs {pred.shape}")
    n_ref, n_pred, n_both = int(ref.sum()), int(pred.sum()), int((ref & pred).sum())
    return RecoveryScore(
        n_ref,
        n_pred,
        n_both,
        recall=n_both / n_ref if n_ref else float("nan"),
        precision=n_both / n_pred if n_pred else float("nan"),
    )
