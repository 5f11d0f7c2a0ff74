"""Scores of band-gap predictions: error, ranking and classification metrics (pure numpy/sklearn)."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

#: Threshold of the wide-gap class (eV) and of "non-metal" (gap > METAL_EPS eV).
WIDE_GAP_EV = 3.0
METAL_EPS = 0.0


def _auc(labels: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(labels, score)) if 0 < labels.sum() < len(labels) else float("nan")


def gap_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Metrics of finite predictions y_pred (N,) eV against DFT gaps y_true (N,) eV.

    Returns ``mae``, ``rmse`` (eV), ``spearman`` (rank correlation; NaN for a constant input),
    ``auc_metal`` (ROC-AUC of the predicted gap as a score for "non-metal", y_true > 0; ties count one
    half), ``auc_wide`` (ROC-AUC for y_true > 3 eV), ``n``.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    ok = np.isfinite(y_pred)
    t, p = y_true[ok], y_pred[ok]
    e = p - t
    return {
        "mae": float(np.abs(e).mean()),
        "rmse": float(np.sqrt((e**2).mean())),
        "spearman": float(spearmanr(t, p).statistic) if np.ptp(p) > 0 and np.ptp(t) > 0 else float("nan"),
        "auc_metal": _auc(t > METAL_EPS, p),
        "auc_wide": _auc(t > WIDE_GAP_EV, p),
        "n": int(ok.sum()),
    }
