"""The proposal step of the loop, pure: a fitted GP and the labelled data in, a :class:`Proposal` out.

One recommender per search space behind the :class:`Recommender` protocol:

* :class:`PoolRecommender` chooses ``q`` members of an encoded pool (GP-BUCB), never a labelled one;
* :class:`LatentBoxRecommender` optimises UCB inside TuRBO-style trust regions of the autoencoder's
  latent box, decodes the points and checks them; rejected decodes stay as pending points so the
  next attempt looks elsewhere, and a region that decoded nothing new is widened (the old
  continuous strategy, ``optimise_decode``);
* :class:`DecodeSelectRecommender` (continuous ``decode_select``, issue 20) decodes a local candidate
  set from several trust regions around distinct good chemistries, drops what is invalid, known,
  labelled or repeated, re-encodes the survivors and chooses among them like pool mode (GP-BUCB),
  weighted by P(feasible) and capped per chemical system / anion family.

No MongoDB, no Prefect, no file I/O: decoding and validity checks come in as callables, so every
rule here is unit-tested without a database (``tests/alcore/test_recommend.py``). The campaign's
``acquire`` stage is read -> :meth:`Recommender.propose` -> write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from botorch.models.model import Model
from scipy.stats import qmc

from alcore.acquisition import AcquisitionSettings, acquire_continuous, acquire_discrete, trust_region
from alcore.errors import AcquisitionError
from alcore.plausibility import anion_family, chemical_system, count_groups, group_cap, p_feasible
from alcore.surrogate import posterior

#: Rejection reasons the recommenders add themselves (validity reasons come from ``validate``).
NO_ATOMS = "decodes to no atoms"
ALREADY_LABELLED = "already labelled"
KNOWN = "known material"

Decoder = Callable[[np.ndarray], Sequence[str | None]]
"""Latent points (n, d) -> n canonical formulas, ``None`` where a point decodes to no atoms."""

Validator = Callable[[str], Sequence[str]]
"""A canonical formula -> the reasons it is invalid (empty when valid)."""

SeedFor = Callable[[int], int]
"""Attempt number (0, 1, ...) -> the seed of that attempt's optimisation."""

Encoder = Callable[[Sequence[str]], np.ndarray]
"""n canonical formulas -> their latent vectors (n, d) (the re-encoding of decode-then-select)."""

Screen = Callable[[Sequence[str]], "Screening"]
"""n formulas -> a :class:`Screening` (formation-energy prediction and plausibility reasons)."""


@dataclass(frozen=True)
class Screening:
    """What the judges say about n decoded formulas: predicted formation energy ``eform_mean`` and
    ``eform_std`` (n,) in eV/atom (NaN where the model cannot predict), per-formula ``reasons`` a
    candidate is implausible (e.g. outside the oracle's applicability domain; empty: plausible) and
    ``p_hull`` (n,), P(E_hull <= threshold) learned from the campaign's structure verdicts
    (:mod:`alcore.hull_probability`), or None when that model is off; ``hull_note`` says why it is
    off (or that it is a fallback)."""

    eform_mean: np.ndarray
    eform_std: np.ndarray
    reasons: list[list[str]]
    p_hull: np.ndarray | None = None
    hull_note: str | None = None


class NothingAcceptedError(AcquisitionError):
    """No decode of a continuous-mode proposal was accepted; ``proposal`` holds the rejected picks
    (so the caller can still store them with their reasons)."""

    def __init__(self, message: str, proposal: Proposal) -> None:
        super().__init__(message)
        self.proposal = proposal


def _nothing_accepted(proposal: Proposal, tried: str, hint: str) -> NothingAcceptedError:
    """The error of a latent proposal step that accepted nothing: what was tried, the first rejection
    reasons and what to change."""
    first = [list(p.reasons) for p in proposal.rejected[:3]]
    return NothingAcceptedError(
        f"no valid formula decoded in {tried} ({len(proposal.rejected)} rejected; first reasons: {first}); "
        f"{hint}, or relax the validity limits",
        proposal,
    )


@dataclass(frozen=True)
class Pick:
    """One proposed (or rejected) composition.

    ``latent`` (d,) is the point in latent space, ``acq_value`` the acquisition value at pick time,
    ``gp_mean``/``gp_std`` the GP posterior there (units of the label, e.g. eV), ``rank`` the order
    of the decode within the proposal, ``attempt`` the optimisation round (1-based), ``reasons`` why
    it was rejected (empty: accepted) and ``duplicates`` how many later decodes of the same
    iteration gave the same formula (they are counted here, never stored as records of their own).
    Decode-then-select also records ``p_eform`` and ``p_hull`` (:attr:`p_feasible` is their product; ``p_eform``:
    P(E_form < threshold); ``p_hull``: P(E_hull <= threshold) from the campaign's structure
    verdicts, None when that model is off, with the reason in ``p_hull_note``; then P(feasible) is
    ``p_eform``), the predicted ``eform_mean``/``eform_std`` (eV/atom) and the trust ``region``
    (0-based) the decode came from.
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
    eform_mean: float | None = None
    eform_std: float | None = None
    region: int | None = None
    p_eform: float | None = None
    p_hull: float | None = None
    p_hull_note: str | None = None

    @property
    def accepted(self) -> bool:
        """True when the pick passed every check."""
        return not self.reasons

    @property
    def p_feasible(self) -> float | None:
        """P(feasible) = ``p_eform`` * ``p_hull`` (``p_eform`` alone while the hull model is off);
        None for a pick the judges did not see."""
        if self.p_eform is None:
            return None
        return self.p_eform * (1.0 if self.p_hull is None else self.p_hull)

    def judged(self) -> dict[str, float | str | None]:
        """The judges' view of the formula (decode-then-select; empty for the other strategies):
        ``p_feasible``, ``p_eform``, ``p_hull``, ``p_hull_note`` and ``eform_mean``/``eform_std`` (eV/atom)."""
        if self.p_feasible is None:
            return {}
        names = ("p_feasible", "p_eform", "p_hull", "p_hull_note", "eform_mean", "eform_std")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class Proposal:
    """What one acquisition proposes: ``accepted`` picks (at most ``q``), ``rejected`` ones with
    their reasons, the number of optimisation ``attempts``, the trust-region side of each attempt
    (continuous mode), the number of latent points decoded (``n_decodes``, pool mode: 0), the
    decodes that passed every check before the batch choice (``n_survivors``, decode-then-select)
    and wall ``timings`` (s) of its steps."""

    accepted: list[Pick]
    rejected: list[Pick] = field(default_factory=list)
    attempts: int = 1
    trust_region_sides: list[float] = field(default_factory=list)
    n_decodes: int = 0
    n_survivors: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def picks(self) -> list[Pick]:
        """Accepted then rejected picks: one per distinct formula (the records to store)."""
        return self.accepted + self.rejected

    @property
    def n_duplicates(self) -> int:
        """Decodes that repeated a formula already decoded in this proposal."""
        return sum(p.duplicates for p in self.picks)

    @property
    def diversity(self) -> dict[str, int]:
        """Distinct chemical systems and anion families among the accepted picks."""
        return count_groups([p.formula for p in self.accepted])


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
            raise _nothing_accepted(proposal, f"{attempts} attempts", "raise acquisition.max_attempts, lower beta")
        return proposal

    def _reasons(self, formula: str | None) -> tuple[str, ...]:
        if formula is None:
            return (NO_ATOMS,)
        reasons = list(self.validate(formula))
        if formula in self.labelled:
            reasons.append(ALREADY_LABELLED)
        return tuple(reasons)


@dataclass
class DecodeSelectRecommender:
    """Continuous mode, decode-then-select (issue 20): generate, decode, filter, re-encode, select.

    1. Regions: up to ``settings.n_regions`` trust regions (side ``settings.trust_region`` of the
       latent ``box`` (2, d)) centred on the best labelled point of distinct chemical systems
       (``x_labelled`` (N, d), ``y_labelled`` (N,), ``labelled_formulas`` (N,), best first; TuRBO-m
       style, one region per good chemistry instead of one around the best label).
    2. Candidates: ``settings.region_draws`` scrambled Sobol points per region, plus (first round)
       the UCB optimiser's point per region when ``settings.optimiser_points``.
    3. Decode all; reject (reasons kept) no atoms, ``validate`` failures, labelled formulas, known
       ones (``known``, only when ``settings.exclude_known``) and ``screen`` plausibility reasons;
       a repeat only raises the first pick's ``duplicates``.
    4. Re-encode the survivors with ``encode`` (the GP scores the formula it would label, not the
       latent point that decoded to it) and choose ``q`` by GP-BUCB, weighted by P(feasible) =
       P(E_form < ``settings.feasibility_threshold``) * P(E_hull <= t) from ``screen`` (the second
       factor 1 while the screen has no hull model) when ``settings.feasibility``, with at most
       ``max_share_system`` / ``max_share_anion`` of ``q`` per chemical system / anion family.

    Survivors not chosen are not returned (they stay candidates for later iterations). Rounds
    repeat (new Sobol seeds, up to ``settings.max_attempts``) until there are ``2 q`` survivors; a
    round that added fewer than ``q`` doubles the side (a neighbourhood that only decodes to labelled
    formulas is exhausted).
    """

    box: np.ndarray
    x_labelled: np.ndarray
    y_labelled: np.ndarray
    labelled_formulas: Sequence[str]
    decode: Decoder
    validate: Validator
    encode: Encoder
    settings: AcquisitionSettings
    screen: Screen | None = None
    known: frozenset[str] = frozenset()

    def centres(self) -> list[int]:
        """Indices into the labelled data of the region centres: the best label of each of the top
        ``n_regions`` chemical systems (by best label, ties by formula)."""
        order = np.lexsort((np.asarray(self.labelled_formulas, dtype=object), -np.asarray(self.y_labelled)))
        seen: set[str] = set()
        out: list[int] = []
        for i in order:
            system = chemical_system(self.labelled_formulas[i])
            if system in seen:
                continue
            seen.add(system)
            out.append(int(i))
            if len(out) == self.settings.n_regions:
                break
        return out

    def propose(self, gp: Model, q: int, seed_for: SeedFor) -> Proposal:
        """Decode-then-select ``q`` picks; raises :class:`NothingAcceptedError` (carrying the rejected
        picks) when no decode survived in ``settings.max_attempts`` rounds."""
        if len(self.labelled_formulas) != len(self.x_labelled) or len(self.x_labelled) != len(self.y_labelled):
            raise AcquisitionError(
                f"decode-then-select needs one formula per labelled point: {len(self.labelled_formulas)} formulas, "
                f"{len(self.x_labelled)} latents, {len(self.y_labelled)} labels"
            )
        s = self.settings
        timings = {"generate_s": 0.0, "decode_s": 0.0, "screen_s": 0.0, "encode_s": 0.0, "select_s": 0.0}
        labelled = frozenset(self.labelled_formulas)
        by_formula: dict[str, int] = {}
        picks: list[Pick] = []
        survivors: list[int] = []  # indices into picks
        sides: list[float] = []
        side = s.trust_region
        n_decodes = attempts = 0
        centres = self.centres()
        enough = 2 * q  # room for the diversity caps; a round that adds fewer than q survivors widens
        while len(survivors) < enough and attempts < s.max_attempts:
            t0 = time.perf_counter()
            z, regions = self._candidates(gp, centres, side, seed_for(attempts), optimise=attempts == 0)
            sides.append(side)
            attempts += 1
            timings["generate_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            decoded = self.decode(z)
            timings["decode_s"] += time.perf_counter() - t0
            fresh: list[int] = []
            for zi, formula, region in zip(z, decoded, regions, strict=True):
                n_decodes += 1
                if formula is not None and formula in by_formula:
                    i = by_formula[formula]
                    picks[i] = replace(picks[i], duplicates=picks[i].duplicates + 1)
                    continue
                reasons = self._reasons(formula, labelled)
                name = formula if formula is not None else f"<empty decode {n_decodes - 1}>"
                pick = Pick(name, zi, float("nan"), float("nan"), float("nan"), len(picks), attempts, reasons)
                pick = replace(pick, region=int(region))
                if formula is not None:
                    by_formula[formula] = len(picks)
                if not reasons:
                    fresh.append(len(picks))
                picks.append(pick)
            if fresh and self.screen is not None:
                t0 = time.perf_counter()
                judged = self.screen([picks[i].formula for i in fresh])
                p_eform = p_feasible(judged.eform_mean, judged.eform_std, s.feasibility_threshold)
                for k, i in enumerate(fresh):
                    picks[i] = replace(
                        picks[i],
                        reasons=tuple(judged.reasons[k]),
                        p_eform=float(p_eform[k]),
                        p_hull=None if judged.p_hull is None else float(judged.p_hull[k]),
                        p_hull_note=judged.hull_note,
                        eform_mean=float(judged.eform_mean[k]),
                        eform_std=float(judged.eform_std[k]),
                    )
                timings["screen_s"] += time.perf_counter() - t0
            added = [i for i in fresh if not picks[i].reasons]
            survivors += added
            if len(added) < q:  # this neighbourhood is nearly exhausted: look wider next round
                side = min(1.0, 2.0 * side)
        chosen = self._select(gp, picks, survivors, q, seed_for(0), timings) if survivors else []
        rejected = [p for p in picks if p.reasons]
        if rejected:  # the GP's view of each rejected decode (at its decoded latent point), for the record
            mean, std = posterior(gp, np.array([p.latent for p in rejected]))
            ucb = mean + np.sqrt(s.beta) * std
            rejected = [
                replace(p, acq_value=float(u), gp_mean=float(m), gp_std=float(sd))
                for p, u, m, sd in zip(rejected, ucb, mean, std, strict=True)
            ]
        accepted = [picks[i] for i in chosen]
        proposal = Proposal(
            accepted=accepted,
            rejected=rejected,
            attempts=attempts,
            trust_region_sides=sides,
            n_decodes=n_decodes,
            n_survivors=len(survivors),
            timings={k: round(v, 4) for k, v in timings.items()},
        )
        if not accepted:
            raise _nothing_accepted(
                proposal, f"{attempts} attempts ({n_decodes} decodes)", "raise acquisition.max_attempts or region_draws"
            )
        return proposal

    def _candidates(
        self, gp: Model, centres: list[int], side: float, seed: int, optimise: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Latent candidates (n, d) and their region index (n,): Sobol draws per region, plus (with
        ``optimise``: the first round) the UCB optimiser's point per region."""
        d = self.box.shape[1]
        points, regions = [], []
        for r, c in enumerate(centres):
            local = trust_region(self.x_labelled[c], self.box, side)
            sobol = qmc.Sobol(d, scramble=True, seed=seed + r).random(self.settings.region_draws)
            points.append(local[0] + sobol * (local[1] - local[0]))
            regions.append(np.full(len(sobol), r))
            if optimise and self.settings.optimiser_points:
                z, _ = acquire_continuous(gp, local, replace(self.settings, q=1), seed + r)
                points.append(z)
                regions.append(np.full(len(z), r))
        return np.vstack(points), np.concatenate(regions)

    def _select(
        self, gp: Model, picks: list[Pick], survivors: list[int], q: int, seed: int, timings: dict[str, float]
    ) -> list[int]:
        """GP-BUCB over the re-encoded survivors (weighted by P(feasible), capped per group); returns
        indices into ``picks`` (which are updated in place with latent, acquisition value and GP)."""
        s = self.settings
        formulas = [picks[i].formula for i in survivors]
        t0 = time.perf_counter()
        z = np.asarray(self.encode(formulas), dtype=np.float64)
        timings["encode_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        weights = None
        if s.feasibility and self.screen is not None:
            weights = np.array([picks[i].p_feasible for i in survivors], dtype=np.float64)
        groups = []
        if s.max_share_system < 1:
            groups.append((np.array([chemical_system(f) for f in formulas]), group_cap(s.max_share_system, q)))
        if s.max_share_anion < 1:
            groups.append((np.array([anion_family(f) for f in formulas]), group_cap(s.max_share_anion, q)))
        idx, values = acquire_discrete(gp, z, replace(s, q=min(q, len(z))), seed, weights=weights, groups=groups)
        mean, std = posterior(gp, z[idx]) if len(idx) else (np.empty(0), np.empty(0))
        out = []
        for rank, (k, v, m, sd) in enumerate(zip(idx, values, mean, std, strict=True)):
            i = survivors[int(k)]
            picks[i] = replace(picks[i], latent=z[k], acq_value=float(v), gp_mean=float(m), gp_std=float(sd), rank=rank)
            out.append(i)
        timings["select_s"] += time.perf_counter() - t0
        return out

    def _reasons(self, formula: str | None, labelled: frozenset[str]) -> tuple[str, ...]:
        if formula is None:
            return (NO_ATOMS,)
        reasons = list(self.validate(formula))
        if formula in labelled:
            reasons.append(ALREADY_LABELLED)
        if self.settings.exclude_known and formula in self.known:
            reasons.append(KNOWN)
        return tuple(reasons)
