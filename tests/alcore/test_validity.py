"""Chemical validity verdicts (SMACT + size limits) with reasons."""

from __future__ import annotations

from alcore.validity import ValidityRules, check_validity, check_validity_batch


def test_known_valid_and_invalid_formulas():
    verdicts = check_validity_batch(["SrYF5", "NaCl", "Fe2O3", "LiFePO4", "NaCl3Fe7", "Na3Cl"])
    assert [v.valid for v in verdicts] == [True, True, True, True, False, False]
    assert "SMACT" in verdicts[-1].reasons[0]


def test_size_limits_and_bad_formulas_are_reasons_not_exceptions():
    rules = ValidityRules(max_elements=3, max_atoms=10)
    v = check_validity("LiNaKCl3", rules)
    assert not v.valid and any("elements > max_elements 3" in r for r in v.reasons)
    v = check_validity("Sr2Y2F10O0", rules)  # reduces to SrYF5: 7 atoms
    assert v.valid
    v = check_validity("Ba4Ti4O12", ValidityRules(max_atoms=4))
    assert not v.valid and "atoms > max_atoms" in v.reasons[0]
    bad = check_validity("Xy2")
    assert not bad.valid and "unknown element" in bad.reasons[0] and bad.canonical is None


def test_alloys_are_invalid_by_default_and_allowed_on_request():
    assert not check_validity("Cu3Au").valid
    assert check_validity("Cu3Au", ValidityRules(include_alloys=True)).valid
