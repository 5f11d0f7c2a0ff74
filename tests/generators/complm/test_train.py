"""Training: a short run learns; a resumed run equals an uninterrupted one; the schedule."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch

from alcore.validity import check_validity
from generators.complm.data import lm_data
from generators.complm.model import CompositionLM
from generators.complm.sample import CompLMSampler
from generators.complm.tokens import FormulaTokenizer
from generators.complm.train import TrainConfig, lr_at, model_config, train_lm
from generators.matgan import training_formulas

TINY = dict(d=32, layers=1, heads=2, ff=64, dropout=0.0, batch_size=64, warmup=20, eval_every=10**6)


@lru_cache(maxsize=1)
def _data():
    forms = training_formulas(valid_only=True)[::15]  # 3,003 formulas, spread over the alphabet
    return lm_data(FormulaTokenizer(), forms, val_fraction=0.05)


def _validity(model: CompositionLM, n: int = 400) -> float:
    forms = CompLMSampler(model, FormulaTokenizer()).sample(n, seed=3)
    return float(np.mean([check_validity(f).valid for f in forms]))


def test_a_short_run_learns_validity() -> None:
    torch.set_num_threads(1)
    tok, d = FormulaTokenizer(), _data()
    cfg = TrainConfig(steps=300, lr=3e-3, **TINY)
    torch.manual_seed(0)
    untrained = CompositionLM(model_config(tok, cfg)).eval()
    model, hist = train_lm(tok, d.train, d.val, cfg)
    before, after = _validity(untrained), _validity(model)
    assert hist["steps"] == 300 and hist["evals"][-1]["val_loss"] < 5.0
    assert after > before + 0.25, (before, after)


def test_resumed_training_equals_uninterrupted(tmp_path) -> None:
    torch.set_num_threads(1)
    tok, d = FormulaTokenizer(), _data()
    cfg = TrainConfig(steps=25, **{**TINY, "eval_every": 10, "dropout": 0.1})
    straight, h1 = train_lm(tok, d.train, d.val, cfg)
    ckpt = tmp_path / "lm.pt"
    runs = 0
    while True:  # one step per run (time budget 0), resumed from the checkpoint each time
        part = TrainConfig(steps=25, **{**TINY, "eval_every": 10, "dropout": 0.1}, time_budget_s=0.0)
        resumed, h2 = train_lm(tok, d.train, d.val, part, checkpoint=ckpt)
        runs += 1
        if h2["steps"] >= 25:
            break
    assert runs == 25 and h2["runs"] == 25
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert [e["val_loss"] for e in h1["evals"]] == [e["val_loss"] for e in h2["evals"]]
    with pytest.raises(ValueError, match="other settings"):
        train_lm(tok, d.train, d.val, TrainConfig(steps=25, **{**TINY, "lr": 1e-4}), checkpoint=ckpt)


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(steps=1000, warmup=100, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(999, cfg) == pytest.approx(1e-4, rel=1e-2)
