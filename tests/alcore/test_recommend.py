"""The pure proposal step: no database, no Prefect, no autoencoder (decode/validate are callables)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from alcore.acquisition import AcquisitionSettings
from alcore.recommend import (
    ALREADY_LABELLED,
    NO_ATOMS,
    LatentBoxRecommender,
    NothingAcceptedError,
    PoolRecommender,
)
from alcore.surrogate import fit_gp

D = 3
BOX = np.array([[0.0] * D, [1.0] * D])
FAST = AcquisitionSettings(beta=4.0, q=2, num_restarts=1, raw_samples=8, maxiter=3, mc_samples=8)


@functools.cache
def _gp(n: int = 30, seed: int = 0):
    """A GP on a smooth toy function of 3-d points (fitted once per test session)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, D))
    y = np.sin(3 * x[:, 0]) + x[:, 1]
    return fit_gp(x, y, BOX, maxiter=20).model, x, y


def _seed(attempt: int) -> int:
    return 100 + attempt


class ScriptedDecoder:
    """Decodes attempt k's points to ``script[k]`` (a formula per point, cycled); records the calls."""

    def __init__(self, script: list[list[str | None]]) -> None:
        self.script = script
        self.calls: list[np.ndarray] = []

    def __call__(self, z: np.ndarray) -> list[str | None]:
        row = self.script[min(len(self.calls), len(self.script) - 1)]
        self.calls.append(np.array(z))
        return [row[i % len(row)] for i in range(len(z))]


def _box_recommender(decoder, labelled=frozenset(), validate=lambda f: [], **settings):
    """A latent-box recommender over a toy GP, and that GP."""
    gp, x, y = _gp()
    rec = LatentBoxRecommender(
        BOX, x, y, labelled, decoder, validate, AcquisitionSettings(**{**vars(FAST), **settings})
    )
    return rec, gp


def test_duplicate_decodes_never_replace_the_accepted_pick():
    """Issue 19 finding 1: the second decode of an accepted formula used to overwrite it."""
    decoder = ScriptedDecoder([["NaCl", "NaCl"], ["MgO", "NaCl"]])
    rec, gp = _box_recommender(decoder)
    proposal = rec.propose(gp, 2, _seed)
    assert [p.formula for p in proposal.accepted] == ["NaCl", "MgO"]
    assert len({p.formula for p in proposal.picks}) == len(proposal.picks)
    nacl = proposal.accepted[0]
    assert nacl.accepted and nacl.duplicates == 1
    assert proposal.n_decodes == 3 and proposal.n_duplicates == 1


def test_rejection_reasons_are_kept_per_pick():
    decoder = ScriptedDecoder([[None, "Xx2", "KBr"]])
    rec, gp = _box_recommender(
        decoder, labelled=frozenset({"KBr"}), validate=lambda f: ["SMACT: not charge neutral"] if f == "Xx2" else []
    )
    with pytest.raises(NothingAcceptedError) as info:
        rec.propose(gp, 3, _seed)
    reasons = {p.formula: p.reasons for p in info.value.proposal.rejected}
    assert reasons["<empty decode 0>"] == (NO_ATOMS,)
    assert reasons["Xx2"] == ("SMACT: not charge neutral",)
    assert reasons["KBr"] == (ALREADY_LABELLED,)


def test_trust_region_doubles_after_an_attempt_that_accepted_nothing():
    decoder = ScriptedDecoder([["KBr"], ["KBr"], ["KBr"], ["LiF"]])
    rec, gp = _box_recommender(decoder, labelled=frozenset({"KBr"}), max_attempts=5, trust_region=0.2)
    proposal = rec.propose(gp, 1, _seed)
    assert proposal.trust_region_sides == [0.2, 0.4, 0.8, 1.0]
    assert [p.formula for p in proposal.accepted] == ["LiF"]
    assert proposal.attempts == 4


def test_later_attempts_avoid_earlier_points_and_stop_at_q():
    decoder = ScriptedDecoder([["KBr"], ["LiF"], ["NaF"]])
    rec, gp = _box_recommender(decoder, labelled=frozenset({"KBr"}), max_attempts=6)
    proposal = rec.propose(gp, 2, _seed)
    assert len(decoder.calls) == 3  # KBr x2 rejected, LiF accepted (+1 duplicate), NaF: stop
    first, second = decoder.calls[0], decoder.calls[1]
    assert not np.allclose(first, second)  # the pending first point pushed the second attempt elsewhere
    assert [p.attempt for p in proposal.accepted] == [2, 3]


def test_nothing_accepted_raises_with_the_rejected_picks():
    rec, gp = _box_recommender(ScriptedDecoder([["KBr"]]), labelled=frozenset({"KBr"}), max_attempts=2)
    with pytest.raises(NothingAcceptedError, match="no valid formula decoded in 2 attempts") as info:
        rec.propose(gp, 1, _seed)
    assert [p.formula for p in info.value.proposal.rejected] == ["KBr"]
    assert info.value.proposal.rejected[0].duplicates == 1


def test_pool_recommender_never_proposes_a_labelled_member():
    gp, _, _ = _gp()
    rng = np.random.default_rng(1)
    formulas = [f"F{i}" for i in range(40)]
    latents = rng.uniform(size=(40, D))
    first = PoolRecommender(formulas, latents, frozenset(), FAST).propose(gp, 5, _seed)
    best = {p.formula for p in first.accepted}
    again = PoolRecommender(formulas, latents, frozenset(best), FAST).propose(gp, 5, _seed)
    assert len(best) == 5 and not best & {p.formula for p in again.accepted}
    assert [p.rank for p in again.accepted] == list(range(5))
    assert all(p.accepted for p in again.accepted) and again.rejected == []


def test_pool_recommender_is_deterministic():
    gp, _, _ = _gp()
    latents = np.random.default_rng(2).uniform(size=(25, D))
    formulas = [f"F{i}" for i in range(25)]
    a = PoolRecommender(formulas, latents, frozenset(), FAST).propose(gp, 3, _seed)
    b = PoolRecommender(formulas, latents, frozenset(), FAST).propose(gp, 3, _seed)
    assert [p.formula for p in a.accepted] == [p.formula for p in b.accepted]
