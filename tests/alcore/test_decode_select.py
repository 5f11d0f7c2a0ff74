"""Decode-then-select (issue 20), pure: toy GP, a decoder that maps latent bins to formulas, no database."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from alcore.acquisition import AcquisitionSettings
from alcore.plausibility import ORGANIC, chemical_system
from alcore.recommend import ALREADY_LABELLED, KNOWN, DecodeSelectRecommender, NothingAcceptedError, Pick, Screening
from alcore.surrogate import fit_gp
from alcore.validity import ValidityRules, check_validity

D = 3
BOX = np.array([[0.0] * D, [1.0] * D])
#: 24 formulas, 8 chemical systems x 3 stoichiometries (so the system cap has something to cap)
SYSTEMS = [("Li", "F"), ("Na", "Cl"), ("Mg", "O"), ("Ca", "S"), ("K", "Br"), ("Sr", "O"), ("Al", "N"), ("Ba", "F")]
FORMULAS = [f"{a}{n}{b}" if n > 1 else f"{a}{b}" for a, b in SYSTEMS for n in (1, 2, 3)]
FAST = AcquisitionSettings(
    beta=4.0, q=4, num_restarts=1, raw_samples=8, maxiter=3, mc_samples=8, n_regions=3, region_draws=64
)


def decode(z: np.ndarray) -> list[str | None]:
    """Bins of the first two coordinates -> a formula (a corner decodes to nothing)."""
    out: list[str | None] = []
    for p in np.asarray(z):
        if p[0] > 0.97 and p[1] > 0.97:
            out.append(None)
            continue
        i = int(np.clip(p[0], 0, 0.999) * 6) * 4 + int(np.clip(p[1], 0, 0.999) * 4)
        out.append(FORMULAS[i % len(FORMULAS)])
    return out


def encode(formulas) -> np.ndarray:
    """The centre of a formula's first bin (inverse of :func:`decode`), third coordinate 0.5."""
    rows = []
    for f in formulas:
        i = FORMULAS.index(f)
        rows.append([(i // 4 + 0.5) / 6, (i % 4 + 0.5) / 4, 0.5])
    return np.array(rows)


@functools.cache
def _gp():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(30, D))
    y = np.sin(3 * x[:, 0]) + x[:, 1]
    formulas = [FORMULAS[3 * (i % len(SYSTEMS))] for i in range(len(x))]  # LiF, NaCl, ...: one per system
    return fit_gp(x, y, BOX, maxiter=20).model, x, y, formulas


def _seed(attempt: int) -> int:
    return 7 + attempt


def _screen(eform: dict[str, float] | None = None, std: float = 0.1, reasons=None):
    eform = eform or {}

    def screen(formulas):
        m = np.array([eform.get(f, -1.0) for f in formulas])
        return Screening(m, np.full(len(m), std), [list((reasons or {}).get(f, [])) for f in formulas])

    return screen


def _rec(validate=lambda f: [], screen=None, known=frozenset(), **settings):
    gp, x, y, formulas = _gp()
    rec = DecodeSelectRecommender(
        BOX,
        x,
        y,
        formulas,
        decode,
        validate,
        encode,
        AcquisitionSettings(**{**vars(FAST), **settings}),
        screen=screen or _screen(),
        known=known,
    )
    return rec, gp


def test_never_returns_a_known_or_labelled_formula():
    _, _, _, labelled = _gp()
    known = frozenset(FORMULAS[::2])
    rec, gp = _rec(known=known, exclude_known=True, max_share_system=1.0)
    proposal = rec.propose(gp, 4, _seed)
    chosen = {p.formula for p in proposal.accepted}
    assert chosen and not chosen & (known | set(labelled))
    reasons = {p.formula: p.reasons for p in proposal.rejected}
    assert any(KNOWN in r for r in reasons.values()) and any(ALREADY_LABELLED in r for r in reasons.values())
    assert len({p.formula for p in proposal.picks}) == len(proposal.picks)  # one record per formula
    assert proposal.n_decodes == 3 * (64 + 1) + (proposal.attempts - 1) * 3 * 64 and proposal.n_survivors >= len(chosen)


def test_rounds_repeat_and_widen_until_there_are_two_q_survivors():
    rec, gp = _rec(max_share_system=1.0, max_attempts=6)
    proposal = rec.propose(gp, 4, _seed)
    assert proposal.n_survivors >= 8 or proposal.attempts == 6
    assert proposal.attempts > 1 and proposal.trust_region_sides[1] == 0.4  # round 1 found fewer than q
    assert len(proposal.accepted) == 4


def test_known_formulas_are_allowed_unless_excluded():
    known = frozenset(FORMULAS)
    rec, gp = _rec(known=known, exclude_known=False)
    assert rec.propose(gp, 2, _seed).accepted


def test_diversity_cap_holds():
    for share, cap in ((0.25, 1), (0.5, 2)):
        rec, gp = _rec(max_share_system=share, region_draws=128)
        proposal = rec.propose(gp, 4, _seed)
        systems = [chemical_system(p.formula) for p in proposal.accepted]
        assert max(systems.count(s) for s in systems) <= cap
        assert proposal.diversity["n_systems"] == len(set(systems))


def test_anion_cap_holds_and_can_stop_a_batch_early():
    # only fluorides and oxides may survive: an anion cap of 1 in 4 leaves at most two picks
    ok = {f for f in FORMULAS if f.endswith("F") or f.endswith("O")}
    rec, gp = _rec(validate=lambda f: [] if f in ok else ["not in the toy set"], max_share_anion=0.25, trust_region=1.0)
    proposal = rec.propose(gp, 4, _seed)
    anions = [p.formula[-1] for p in proposal.accepted]
    assert proposal.n_survivors > 2 and 1 <= len(anions) <= 2 and len(set(anions)) == len(anions)


def test_feasibility_records_probability_and_steers_the_batch():
    off, gp = _rec(max_share_system=1.0, feasibility=False, trust_region=1.0)
    plain = off.propose(gp, 3, _seed)
    assert all(p.p_feasible is not None for p in plain.accepted)  # recorded even when not weighted
    unstable = {p.formula for p in plain.accepted}
    eform = {f: (1.0 if f in unstable else -2.0) for f in FORMULAS}  # the plain choice predicted unstable
    on, gp = _rec(screen=_screen(eform), max_share_system=1.0, trust_region=1.0)
    proposal = on.propose(gp, 3, _seed)
    assert len(proposal.accepted) == 3 and not {p.formula for p in proposal.accepted} & unstable
    assert all(p.p_feasible > 0.99 and p.eform_mean == -2.0 for p in proposal.accepted)
    judged = proposal.accepted[0].judged()  # what the candidate document stores
    assert set(judged) == {"p_feasible", "p_eform", "p_hull", "p_hull_note", "eform_mean", "eform_std"}
    assert judged["eform_mean"] == -2.0 and judged["p_hull"] is None


def test_p_hull_multiplies_into_p_feasible_and_steers_the_batch():
    off, gp = _rec(max_share_system=1.0, trust_region=1.0)
    plain = off.propose(gp, 3, _seed)
    assert all(p.p_hull is None and p.p_feasible == p.p_eform for p in plain.accepted)  # no hull model: factor 1
    unstable = {p.formula for p in plain.accepted}
    base = _screen()

    def screen(formulas):  # the learned P(E_hull) says the plain choice is off the hull
        judged = base(formulas)
        p_hull = np.array([0.01 if f in unstable else 0.9 for f in formulas])
        return Screening(judged.eform_mean, judged.eform_std, judged.reasons, p_hull=p_hull, hull_note=None)

    on, gp = _rec(screen=screen, max_share_system=1.0, trust_region=1.0)
    proposal = on.propose(gp, 3, _seed)
    assert len(proposal.accepted) == 3 and not {p.formula for p in proposal.accepted} & unstable
    for p in proposal.picks:
        if p.p_feasible is not None:
            assert p.p_feasible == pytest.approx(p.p_eform * p.p_hull)
            assert p.p_hull == (0.01 if p.formula in unstable else 0.9)


def test_screen_reasons_reject_with_reason():
    reasons = {f: ["outside the oracle's domain: std"] for f in FORMULAS[:12]}
    rec, gp = _rec(screen=_screen(reasons=reasons))
    proposal = rec.propose(gp, 4, _seed)
    assert not {p.formula for p in proposal.accepted} & set(FORMULAS[:12])
    assert any(p.reasons == ("outside the oracle's domain: std",) for p in proposal.rejected)


def test_organic_formula_rejected_with_reason_by_default_rules_and_accepted_when_off():
    on, off = ValidityRules(reject_organic=True), ValidityRules(reject_organic=False)
    assert ORGANIC in check_validity("H8CF6", on).reasons
    assert ORGANIC not in check_validity("H8CF6", off).reasons
    assert ORGANIC not in check_validity("LiF", on).reasons and ORGANIC not in check_validity("CaC2", on).reasons
    from flows.config import ValiditySpec

    assert ValiditySpec().reject_organic  # on by default in campaign configs

    def toy_decode(z):
        return ["CH4" if p[0] < 0.5 else "KF" for p in z]

    gp, x, y, formulas = _gp()
    rec = DecodeSelectRecommender(
        BOX,
        x,
        y,
        formulas,
        toy_decode,
        lambda f: check_validity(f, on).reasons,
        lambda fs: encode(["LiF"] * len(fs)),
        AcquisitionSettings(**{**vars(FAST), "max_share_system": 1.0}),
        screen=_screen(),
    )
    proposal = rec.propose(gp, 2, _seed)
    assert [p.formula for p in proposal.accepted] == ["KF"]
    assert dict((p.formula, p.reasons) for p in proposal.rejected)["CH4"][0] == ORGANIC


def test_is_deterministic():
    a, gp = _rec()
    b, _ = _rec()
    pa, pb = a.propose(gp, 4, _seed), b.propose(gp, 4, _seed)
    assert [p.formula for p in pa.picks] == [p.formula for p in pb.picks]
    assert np.allclose([p.acq_value for p in pa.accepted], [p.acq_value for p in pb.accepted])


def test_regions_centre_on_distinct_chemical_systems():
    rec, _ = _rec(n_regions=3)
    _, _, y, formulas = _gp()
    centres = rec.centres()
    assert len({chemical_system(formulas[i]) for i in centres}) == len(centres) == 3
    assert y[centres[0]] == y.max()


def test_nothing_survives_raises_with_the_rejected_picks():
    rec, gp = _rec(validate=lambda f: ["nope"], max_attempts=2)
    with pytest.raises(NothingAcceptedError, match="no valid formula decoded in 2 attempts") as info:
        rec.propose(gp, 2, _seed)
    assert info.value.proposal.rejected and all(p.reasons for p in info.value.proposal.rejected)
    assert info.value.proposal.trust_region_sides == [0.2, 0.4]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("strategy", "decode_everything", "unknown continuous strategy"),
        ("max_share_system", 0.0, r"max_share_system must be in \(0, 1\]"),
        ("max_share_anion", 1.5, r"max_share_anion must be in \(0, 1\]"),
        ("region_draws", 0, "region_draws must be an integer >= 1"),
        ("feasibility_threshold", float("inf"), "feasibility_threshold must be finite"),
    ],
)
def test_bad_settings_get_a_one_line_error(field, value, match):
    from alcore.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        AcquisitionSettings(**{field: value})


def test_a_pick_without_judges_stores_no_judged_fields():
    pick = Pick("MgO", np.zeros(2), acq_value=1.0, gp_mean=1.0, gp_std=0.1, rank=0)
    assert pick.judged() == {}
