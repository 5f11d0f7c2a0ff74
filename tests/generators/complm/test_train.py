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
from generators.complm.tokens import EF_NULL, GAP_NULL, FormulaTokenizer, condition_tokens
from generators.complm.train import TrainConfig, drop_conditions, epoch_rows, lr_at, model_config, train_lm
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


def test_epoch_rows_repeat_only_the_wide_gap_rows() -> None:
    d = _data()
    tokens = torch.from_numpy(d.train)
    is_wide = tokens[:, 0] == condition_tokens(">5", None)[0]
    wide = int(is_wide.sum())
    assert wide > 0
    rows, copies = epoch_rows(tokens, 1)
    assert torch.equal(rows, torch.arange(len(tokens))) and not copies.any()
    rows, copies = epoch_rows(tokens, 3)
    assert len(rows) == len(tokens) + 2 * wide and int(copies.sum()) == 2 * wide
    counts = torch.bincount(rows, minlength=len(tokens))
    assert set(counts[is_wide].tolist()) == {3} and set(counts[~is_wide].tolist()) == {1}
    assert bool(is_wide[rows[copies]].all())  # the copies are wide-gap rows


def test_kept_gap_tokens_survive_condition_dropout() -> None:
    tokens = torch.from_numpy(_data().train[:400].copy())
    keep = torch.arange(400) % 2 == 0
    out = drop_conditions(tokens, 1.0, torch.Generator().manual_seed(0), keep)
    assert torch.equal(out[keep, 0], tokens[keep, 0])
    assert bool((out[~keep, 0] == GAP_NULL).all()) and bool((out[:, 1] == EF_NULL).all())
    assert torch.equal(out[:, 2:], tokens[:, 2:])


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(steps=1000, warmup=100, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(999, cfg) == pytest.approx(1e-4, rel=1e-2)


def test_train_complm_selects_on_the_distinct_sampler(tmp_path) -> None:
    """The v2 criterion: VNU of draws made as ``complm-distinct`` makes them (known and repeated
    formulas redrawn), written into the metadata; the '>5' validity is recorded; snapshots kept;
    with given formulas only those are excluded (no held-out formula leaks into the sampler)."""
    from generators.complm.train import _selection_text, criterion_exclusion, train_complm

    torch.set_num_threads(1)
    forms = training_formulas(valid_only=True)[::15]
    small = dict(TINY, eval_every=10, eval_samples=400, eval_check=400, eval_cond_samples=50)
    cfg = TrainConfig(steps=20, lr=3e-3, **small)
    assert cfg.eval_sampler == "distinct"
    ckpt = tmp_path / "lm.pt"
    meta = train_complm(tmp_path / "lm", cfg, checkpoint=ckpt, formulas=forms, snapshots=True)
    assert [e["step"] for e in meta["evals"]] == [10, 20]
    assert sorted(p.name for p in ckpt.with_suffix(".snapshots").iterdir()) == ["step_10.pt", "step_20.pt"]
    assert all(0.0 <= e["cond_gt5_validity"] <= 1.0 for e in meta["evals"])
    assert all(e["criterion"] == e["vnu"] for e in meta["evals"])
    # redrawing known and repeated formulas makes (almost) every draw a new distinct formula
    for e in meta["evals"]:
        assert e["distinct_novel_share"] >= 0.99 and e["uniqueness"] >= 0.99
    assert "complm-distinct sampler" in meta["selection"] and "400 unconditioned" in meta["selection"]
    assert "without redraws" in _selection_text(TrainConfig(eval_sampler="plain"))
    d = _data()
    excl = criterion_exclusion(TrainConfig(), d, all_mp=False)
    assert excl == frozenset(d.train_formulas + d.val_formulas)
    held_out = training_formulas(valid_only=True)[1]  # not in the [::15] subset
    assert held_out not in excl and held_out in criterion_exclusion(TrainConfig(), d, all_mp=True)
    assert criterion_exclusion(TrainConfig(eval_sampler="plain"), d, all_mp=True) is None
    with pytest.raises(ValueError, match="eval_sampler"):
        train_complm(tmp_path / "bad", TrainConfig(steps=1, eval_sampler="greedy"), formulas=forms)


def test_selection_criterion_puts_checkpoints_under_the_conditioned_validity_bar_last() -> None:
    from generators.complm.train import TrainConfig, selection_criterion

    early = {"vnu": 0.91, "cond_gt5_validity": 0.79}  # best VNU, conditioned draws too often invalid
    late = {"vnu": 0.90, "cond_gt5_validity": 0.89}
    plain = TrainConfig()
    assert selection_criterion(early, plain) > selection_criterion(late, plain)  # VNU alone
    barred = TrainConfig(min_cond_validity=0.88)
    assert selection_criterion(late, barred) == 0.90 and selection_criterion(early, barred) == pytest.approx(-0.09)
    # with every checkpoint under the bar, VNU still orders them
    lower = {"vnu": 0.85, "cond_gt5_validity": 0.70}
    assert selection_criterion(early, barred) > selection_criterion(lower, barred)
