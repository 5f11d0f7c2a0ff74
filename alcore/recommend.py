"""The proposal step of the loop, pure: a fitted GP and the labelled data in, a :class:`Proposal` out.

One recommender per search space behind the :class:`Recommender` protocol:

* :class:`PoolRecommender` chooses ``q`` members of an encoded pool (GP-BUCB), never a labelled one;
* :class:`LatentBoxRecommender` optimises UCB inside TuRBO-style trust regions of the autoencoder's
  latent box, decodes the points and checks them; rejected decodes stay as pending points so the
  next attempt looks elsewhere, and a region that decoded nothing new is widened.

No MongoDB, no Prefect, no file I/O: decoding and validity checks come in as callables, so every
rule here is unit-tested without a database (``tests/alcore/test_recommend.py``). The campaign's
``acquire`` stage is read -> :meth:`Recommender.propose` -> write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from botorch.models.model import Model

from alcore.acquisition import AcquisitionSettings, acquire_continuous, acquire_discrete, trust_region
from alcore.errors import AcquisitionError
from alcore.surrogate import posterior

#: Rejection reasons the recommenders add themselves (validity reasons come from ``validate``).
NO_ATOMS = "decodes to no atoms"
ALREADY_LABELLED = "already labelled"

Decoder = Callable[[np.ndarray], Sequence[str | None]]
"""Latent points (n, d) -> n canonical formulas, ``None`` where a point decodes to no atoms."""

Validator = Callable[[str], Sequence[str]]
"""A canonical formula -> the reasons it is invalid (empty when valid)."""

SeedFor = Callable[[int], int]
"""Attempt number (0, 1, ...) -> the seed of that attempt's optimisation."""


class NothingAcceptedError(AcquisitionError):
    """No decode of a continuous-mode proposal was accepted; ``proposal`` holds the rejected picks
    (so the caller can still store them with their reasons)."""

    def __init__(self, message: str, proposal: Proposal) -> None:
        super().__init__(message)
        self.proposal = proposal


@dataclass(frozen=True)
class Pick:
    """One proposed (or rejected) composition.

    ``latent`` (d,) is the point in latent space, ``acq_value`` the acquisition value at pick time,
    ``gp_mean``/``gp_std`` the GP posterior there (units of the label, e.g. eV), ``rank`` the order
    of the decode within the proposal, ``attempt`` the optimisation round (1-based), ``reasons`` why
    it was rejected (empty: accepted) and ``duplicates`` how many later decodes of the same
    iteration gave the same formula (they are counted here, never stored as records of their own).
    """

    formula: str
    latent: np.ndarray
    acq_value: float
    gp_mean: float
    gp_std: float
    rank: int
    attempt: int = 1
    reasons: tuple[str, ...] = ()
    duplicates: int = 0

    @property
    def accepted(self) -> bool:
        """True when the pick passed every check."""
        return not self.reasons


@dataclass(frozen=True)
class Proposal:
    """What one acquisition proposes: ``accepted`` picks (at most ``q``), ``rejected`` ones with
    their reasons, the number of optimisation ``attempts``, the trust-region side of each attempt
    (continuous mode) and the number of latent points decoded (``n_decodes``, pool mode: 0)."""

    accepted: list[Pick]
    rejected: list[Pick] = field(default_factory=list)
    attempts: int = 1
    trust_region_sides: list[float] = field(default_factory=list)
    n_decodes: int = 0

    @property
    def picks(self) -> list[Pick]:
        """Accepted then rejected picks: one per distinct formula (the records to store)."""
        return self.accepted + self.rejected

    @property
    def n_duplicates(self) -> int:
        """Decodes that repeated a formula already decoded in this proposal."""
        return sum(p.duplicates for p in self.picks)


class Recommender(Protocol):
    """Chooses the next ``q`` compositions to label given a fitted GP."""

    def propose(self, gp: Model, q: int, seed_for: SeedFor) -> Proposal:
        """Return a :class:`Proposal` of at most ``q`` accepted picks (deterministic in ``seed_for``)."""
        ...


@dataclass
class PoolRecommender:
    """Pool mode: GP-BUCB over the pool's latents, labelled formulas excluded.

    ``formulas`` (M,) and ``latents`` (M, d) describe the pool; ``labelled`` the formulas that already
    have a label (never proposed again).
    """

    formulas: Sequence[str]
    latents: np.ndarray
    labelled: frozenset[str]
    settings: AcquisitionSettings

    def propose(self, gp: Model, q: int, seed_for: SeedFor) -> Proposal:
        """Pick ``q`` unlabelled pool members by GP-BUCB; raises ``EmptyPoolError`` if fewer remain."""
        keep = np.array([f not in self.labelled for f in self.formulas], dtype=bool)
        pool = [f for f, k in zip(self.formulas, keep, strict=True) if k]
        z_pool = np.asarray(self.latents)[keep]
        idx, values = acquire_discrete(gp, z_pool, replace(self.settings, q=q), seed_for(0))
        mean, std = posterior(gp, z_pool[idx])
        picks = [
            Pick(pool[i], z_pool[i], float(v), float(m), float(s), rank)
            for rank, (i, v, m, s) in enumerate(zip(idx, values, mean, std, strict=True))
        ]
        return Proposal(accepted=picks)


@dataclass
class LatentBoxRecommender:
    """Continuous mode: UCB in trust regions of the latent ``box`` (2, d), decode, check.

    Attempt ``a`` optimises inside a box of side ``settings.trust_region`` (a fraction of the latent
    box) centred on the ``a``-th best labelled point (``x_labelled`` (N, d), ``y_labelled`` (N,)); an
    attempt that accepted nothing doubles the side (up to the whole box). Every decoded point is
    pending for the following attempts. A decode is rejected when it has no atoms, fails
    ``validate``, is labelled already, or repeats a formula decoded earlier in this proposal (then
    it only raises that pick's ``duplicates`` count). Stops at ``q`` accepted picks or after
    ``settings.max_attempts`` attempts.
    """

    box: np.ndarray
    x_labelled: np.ndarray
    y_labelled: np.ndarray
    labelled: frozenset[str]
    decode: Decoder
    validate: Validator
    settings: AcquisitionSettings

    def propose(self, gp: Model, q: int, seed_for: SeedFor) -> Proposal:
        """Run up to ``max_attempts`` optimise-decode-check rounds; raises :class:`AcquisitionError`
        (carrying the rejected picks in ``.proposal``) when no decode was accepted."""
        order = np.argsort(-np.asarray(self.y_labelled), kind="stable")
        side = self.settings.trust_region
        pending = np.empty((0, self.box.shape[1]))
        by_formula: dict[str, int] = {}  # formula -> index into picks
        picks: list[Pick] = []
        sides: list[float] = []
        n_accepted = n_decodes = attempts = 0
        while n_accepted < q and attempts < self.settings.max_attempts:
            local = trust_region(self.x_labelled[order[attempts % len(order)]], self.box, side)
            sides.append(side)
            settings = replace(self.settings, q=q - n_accepted)
            z, value = acquire_continuous(
                gp, local, settings, seed_for(attempts), x_pending=pending if len(pending) else None
            )
            attempts += 1
            pending = np.vstack([pending, z])
            mean, std = posterior(gp, z)
            accepted_before = n_accepted
            for zi, formula, m, s in zip(z, self.decode(z), mean, std, strict=True):
                n_decodes += 1
                if formula is not None and formula in by_formula:
                    i = by_formula[formula]
                    picks[i] = replace(picks[i], duplicates=picks[i].duplicates + 1)
                    continue
                reasons = self._reasons(formula)
                name = formula if formula is not None else f"<empty decode {n_decodes - 1}>"
                pick = Pick(name, zi, value, float(m), float(s), len(picks), attempts, reasons)
                if formula is not None:
                    by_formula[formula] = len(picks)
                picks.append(pick)
                n_accepted += pick.accepted
            if n_accepted == accepted_before:  # this region only decodes to known formulas: look wider
                side = min(1.0, 2.0 * side)
        proposal = Proposal(
            accepted=[p for p in picks if p.accepted],
            rejected=[p for p in picks if not p.accepted],
            attempts=attempts,
            trust_region_sides=sides,
            n_decodes=n_decodes,
        )
        if not proposal.accepted:
            first = [list(p.reasons) for p in proposal.rejected[:3]]
            raise NothingAcceptedError(
                f"no valid formula decoded in {attempts} attempts ({len(proposal.rejected)} rejected; "
                f"first reasons: {first}); raise acquisition.max_attempts, lower beta, or relax the validity "
                "limits",
                proposal,
            )
        return proposal

    def _reasons(self, formula: str | None) -> tuple[str, ...]:
        if formula is None:
            return (NO_ATOMS,)
        reasons = list(self.validate(formula))
        if formula in self.labelled:
            reasons.append(ALREADY_LABELLED)
        return tuple(reasons)
