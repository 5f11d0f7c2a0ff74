"""Continuous-mode candidates: a duplicate decode never overwrites an accepted candidate."""

from __future__ import annotations

from flows.campaign import unique_by_formula


def test_unique_by_formula_keeps_the_accepted_document_of_a_duplicate_decode() -> None:
    accepted = [{"formula": "LiF", "status": "acquired"}, {"formula": "MgO", "status": "acquired"}]
    rejected = [
        {"formula": "LiF", "status": "rejected", "reasons": ["duplicate within this iteration"]},
        {"formula": "NaCl2", "status": "rejected", "reasons": ["fails SMACT"]},
        {"formula": "NaCl2", "status": "rejected", "reasons": ["duplicate within this iteration"]},
    ]
    out = unique_by_formula(accepted + rejected)
    assert [(d["formula"], d["status"]) for d in out] == [
        ("LiF", "acquired"),
        ("MgO", "acquired"),
        ("NaCl2", "rejected"),
    ]
    assert out[2]["reasons"] == ["fails SMACT"]
