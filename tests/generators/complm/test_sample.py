"""Sampling: seeded and reproducible, structural guarantees, rejection of known formulas, and
conditioning that moves the oracle-predicted gap distribution in the requested direction."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from alcore.composition import reduced_counts
from alcore.paths import WEIGHTS_DIR
from generators.complm.data import lm_data
from generators.complm.sample import SAMPLE_CHUNK, CompLMSampler, SamplingSettings
from generators.complm.tokens import FormulaTokenizer, condition_tokens
from generators.complm.train import TrainConfig, train_lm
from generators.matgan import training_formulas


@lru_cache(maxsize=1)
def _tiny_model():
    """A tiny model trained on as many metals as > 5 eV formulas (clearly separated classes)."""
    torch.set_num_threads(1)
    tok = FormulaTokenizer()
    forms = training_formulas(valid_only=True)
    d = lm_data(tok, forms, val_fraction=0.02)
    metal, wide = (d.train[d.train[:, 0] == condition_tokens(c)[0]] for c in ("metal", ">5"))
    rows = np.concatenate([metal[: len(wide)], wide])  # balanced: about 1,100 of each
    cfg = TrainConfig(
        steps=400,
        lr=3e-3,
        d=48,
        layers=2,
        heads=2,
        ff=96,
        dropout=0.0,
        batch_size=64,
        warmup=20,
        eval_every=10**6,
        cond_drop=0.2,
    )
    model, _ = train_lm(tok, rows, d.val[:50], cfg)
    return model, tok


def test_sampling_is_seeded_and_independent_of_the_part_size() -> None:
    model, tok = _tiny_model()
    s = CompLMSampler(model, tok)
    n = SAMPLE_CHUNK + 300
    a = s.sample(n, seed=5)
    assert a == s.sample(n, seed=5) and a != s.sample(n, seed=6)
    parts = [f for forms, _, _ in s.sample_sized(n, 5, part=SAMPLE_CHUNK) for f in forms]
    assert parts == a and len(a) == n
    sizes = [len(reduced_counts(f)) for f in a[:500]]
    assert min(sizes) >= 2 and max(sizes) <= 8


def test_rejection_redraws_excluded_formulas() -> None:
    model, tok = _tiny_model()
    plain = CompLMSampler(model, tok).sample(2000, seed=1)
    common = set(plain[:1000])
    rej = CompLMSampler(model, tok, SamplingSettings(reject_tries=4), exclude=frozenset(common)).sample(2000, seed=1)
    assert sum(f in common for f in rej) < 0.2 * sum(f in common for f in plain)


def test_conditioning_moves_the_predicted_gap_in_the_requested_direction() -> None:
    from oracles.registry import get_oracle

    model, tok = _tiny_model()
    oracle = get_oracle("resnet-mp-gap")

    def mean_gap(condition: str | None, guidance: float) -> float:
        g, e = condition_tokens(condition)
        s = CompLMSampler(model, tok, SamplingSettings(guidance=guidance, gap=g, eform=e))
        return float(np.mean(oracle.predict(s.sample(600, seed=2)).mean))

    wide, none, metal = mean_gap(">5", 2.0), mean_gap(None, 1.0), mean_gap("metal", 2.0)
    assert wide > none + 0.5 and metal < none - 0.3, (wide, none, metal)


def test_rejecting_seen_formulas_gives_more_distinct_draws_and_stays_reproducible() -> None:
    model, tok = _tiny_model()
    n = SAMPLE_CHUNK + 500
    plain = CompLMSampler(model, tok).sample(n, seed=4)
    s = CompLMSampler(model, tok, SamplingSettings(reject_tries=4, reject_seen=True))
    distinct = s.sample(n, seed=4)
    assert len(set(distinct)) > len(set(plain)) and len(distinct) == n
    assert [f for forms, _, _ in s.sample_sized(n, 4, part=SAMPLE_CHUNK) for f in forms] == distinct


def test_conditioned_sampling_loads_the_conditioned_weights_by_default() -> None:
    plain = CompLMSampler.pretrained(condition="any")
    cond = CompLMSampler.pretrained(condition=">5")
    eform_only = CompLMSampler.pretrained(eform="neg")
    assert plain.metadata.get("shipped_as") is None and plain.metadata["config"]["seed"] == 0
    assert cond.metadata["shipped_as"] == "complm_cond" and eform_only.metadata["shipped_as"] == "complm_cond"
    assert cond.metadata["config"]["min_cond_validity"] == 0.88
    explicit = CompLMSampler.pretrained(weights=WEIGHTS_DIR / "complm", condition=">5")
    assert explicit.metadata.get("shipped_as") is None
